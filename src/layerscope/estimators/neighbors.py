"""Exact k-nearest-neighbour search for small k, fast and in bounded memory.

The estimators need the first few neighbours of every point (two for TwoNN, a few
dozen for MLE and GRIDE). Doing that with a full N x N distance matrix, every row
fully sorted (as the reference code and the peer libraries do), costs O(N^2) memory
and a sort per row. Here:

1. **Candidate search.** The data are centred (in float64) and rounded to the
   search precision. Scores ``x.y - |x|^2/2 - |y|^2/2 = -|x - y|^2/2`` come in row
   blocks, one matrix multiply per block, and only the upper triangle of the block
   grid is computed: each block of rows is multiplied with itself and the rows
   after it, and the product serves both the block's rows (row-wise top-K) and the
   later rows (their lists take the entries above their worst kept score). That
   halves the multiply work. ``K = k + margin`` candidates are kept per row; nothing
   of size N x N is held. On CPU the float32 product runs with
   ``torch.set_float32_matmul_precision("medium")`` (oneDNN's split-bf16 kernels:
   about twice as fast as plain float32, errors of the same order). On a CPU whose
   bfloat16 products are measured faster (AVX512-BF16, AMX: :func:`bf16_speedup`,
   once per process) points wide enough for bf16 to save more product time than it
   costs elsewhere (:func:`_bf16_pays`; :func:`bf16_from` says from how many features)
   are searched in bfloat16, with the norms inside the product (see :func:`_candidates_torch`) so that its one
   rounding, to bf16, is relative to the distance (at most 2^-8) and not to ``|x|^2``.
   Where bf16 is still too coarse for the data (more than 1% of the rows uncertain)
   the candidates are searched again in float32 before any row falls back.
2. **Exact re-rank.** The distances of the candidates that can be among the k
   nearest (by the error bounds of step 3) are recomputed in float64 from coordinate
   differences of the original data, which does not cancel, and the k best are kept.
3. **Certificate.** The candidates show how far the fast distances were from the
   exact ones; from the largest errors seen (times a safety factor), relative to the
   distance and to the norms, each row gets a lower bound on the true distance of
   every non-candidate. A row whose bound does not clear its k-th exact distance is
   searched again exhaustively (float32, certified, then float64). So the answer is
   exact, not approximate, and ``n_fallback`` says how often the fast path was not
   enough.

faiss (``backend="faiss"``, when installed) can replace step 1; steps 2 and 3 are
the same.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ._validation import Array, as_tensor, check_device, check_int, check_points, default_duplicate_tol, unit_factor

# Memory for one block of the distance matrix (bytes); blocks are sized to it.
_BLOCK_BYTES = 40 * 2**20
# Memory for the rounded copy of the data that the candidate search multiplies: past it the
# copy is made a superblock of rows at a time (two held at once).
_SEARCH_BYTES = 96 * 2**20
# Memory for the row chunks of the streaming passes (centring, hashing).
_CHUNK_BYTES = 16 * 2**20
# Memory for the coordinate differences of one re-rank chunk (bytes): small, to stay in cache.
_RERANK_BYTES = 4 * 2**20
_SAFETY = 4.0  # factor on the largest relative error seen among candidates
_TINY = torch.finfo(torch.float64).tiny
_PRECISIONS = ("auto", "bfloat16", "float32", "float64")
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
# With "auto", a bf16 search that leaves more uncertain rows than this is redone in float32.
_RETRY_FRACTION = 0.01
# With "auto", bf16 only where the CPU's bf16 products are measured at least this much faster than
# its float32 ones (split-bf16): below, the saving is within the measurement's noise.
_BF16_MIN_SPEEDUP = 1.3
# With "auto", bf16 also has to save more product time than it costs elsewhere (see _bf16_pays):
# its augmented columns (norms and padding), about _SCORE_SECONDS per score whatever the list (bf16
# scores converted, the rows' form copied, the rare float32 retry), and, where it keeps a wider
# candidate list (a wider margin for its coarser distances), _CANDIDATE_SECONDS per score and per
# extra candidate. Measured on an AMD EPYC with AVX512-BF16 (2 cores, N = 10,000 on a 10-manifold,
# min of 4-5 fits, each precision forced): TwoNN() lists 18 neighbours in both precisions, and bf16
# took 1.06x float32's time at D = 16, 0.99-1.02x at 24-48, 0.98-1.04x at 100, 1.01x at 150, 0.97x
# at 200 and 0.94x at 300 (a crossover near 150-170); nearest_neighbors(X, 2) keeps 18 candidates
# in bf16 and 10 in float32, and crosses over at D = 350-384. Seconds from one CPU (noisy to +-5%
# near a crossover, where either choice costs about the same): on a faster one bf16 starts a
# little later than it could.
_SCORE_SECONDS = 0.35e-9
_CANDIDATE_SECONDS = 0.07e-9
# Seconds per multiply-add of bf16 and split-bf16 float32 products, by the kind of bf16 units: what the
# rule weighs against the costs above. Nominal figures of each kind, not this process's measurement,
# so that the choice is the same in every process on a machine (the measured speed-up varied
# 1.72-2.03 between processes here, which would move TwoNN()'s crossover from 10 to 100 features,
# and a layer of 128 units would be searched in bf16 in one run and float32 in its resumption).
# avx512_bf16: an AMD EPYC (_product_seconds: 2.1-2.8 and 4.3-5.1 ps); amx_bf16: an Intel Xeon,
# from issue 23's full 10,000 x 10,000 x 10,000 products (1.09 s in bf16, 6.08 s in float32).
_NOMINAL_PRODUCT_SECONDS = {"avx512_bf16": (2.5e-12, 5.0e-12), "amx_bf16": (1.09e-12, 6.08e-12)}
# torch's top-K along the columns of a row-major block is fast up to K = 16 and 2.2x slower from
# 17 on (1024 x 2500 float32 or bf16: 4.5 ms at K = 16, 9.7 ms at 17): past it, lists that are still
# filling get a provisional threshold (:func:`_provisional`, 4.8 ms at K = 18) instead.
_COLUMN_TOPK_MAX = 16


def bf16_units(device: torch.device) -> str | None:
    """Which bf16 matrix units ``device`` has: ``"amx_bf16"`` (Intel AMX), ``"avx512_bf16"``, or None
    (read from /proc/cpuinfo once per process; elsewhere assumed none). GPUs keep float32 (exact
    products, no TF32)."""
    return _cpu_bf16_units() if device.type == "cpu" else None


@functools.cache
def _cpu_bf16_units() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return None
    return next((kind for kind in ("amx_bf16", "avx512_bf16") if kind in flags), None)


@functools.cache
def _product_seconds(device_type: str = "cpu") -> tuple[float, float]:
    """Seconds per multiply-add of this CPU's bfloat16 and float32 (split-bf16, as the search does)
    products, measured once per process on a product of the search's shape (512 x 1024 by
    1024 x 2048, best of 3 after a warm-up)."""
    g = torch.Generator().manual_seed(0)  # the caller's random state is not touched
    a, b = torch.randn(512, 1024, generator=g), torch.randn(2048, 1024, generator=g)
    times = []
    with _matmul_precision(torch.device(device_type)):
        for dtype in (torch.bfloat16, torch.float32):
            x, y = a.to(dtype), b.to(dtype)
            x @ y.T  # warm the kernel
            best = math.inf
            for _ in range(3):
                t = time.perf_counter()
                x @ y.T
                best = min(best, time.perf_counter() - t)
            times.append(best / (512 * 1024 * 2048))
    return times[0], times[1]


def bf16_speedup(device_type: str = "cpu") -> float:
    """How much faster this CPU multiplies in bfloat16 than in float32 (split-bf16, as the search
    does), measured once per process (:func:`_product_seconds`): about 2 with AVX512-BF16, 5 or
    more with AMX, 1 or less without either. 0 on GPUs (they keep float32)."""
    if device_type != "cpu":
        return 0.0
    bf16, fp32 = _product_seconds(device_type)
    return fp32 / bf16


def _augmented_width(d: int) -> int:
    """Columns of a bf16 search row: the d features, 6 for the norms, padding to 32 bytes."""
    return d + (-(d + 6) % 16) + 6


def _bf16_pays(device: torch.device, d: int, extra_candidates: int = 0) -> bool:
    """Whether ``precision="auto"`` searches points of ``d`` features in bfloat16 on ``device``, where
    bf16 keeps ``extra_candidates`` more candidates per point than float32 would.

    bf16 where the product time it saves per score, ``(t_float32 - t_bf16) * d`` for the CPU's
    kind of bf16 units (``_NOMINAL_PRODUCT_SECONDS``), exceeds what it costs per score elsewhere:
    its extra columns (``t_bf16`` each), a fixed ``_SCORE_SECONDS`` and a wider list's bookkeeping
    (``_CANDIDATE_SECONDS`` per extra candidate); and only where this CPU's bf16 products are
    measured at least ``_BF16_MIN_SPEEDUP`` faster than its float32 ones (:func:`bf16_speedup`, once
    per process: about 2 with AVX512-BF16, 5 or more with AMX). So AMX starts bf16 at fewer
    features than AVX512-BF16, and a CPU without bf16 products never (:func:`bf16_from` says
    where it starts here).

    The neighbours and the estimates' own distances are exact either way; the longer
    lists of the half-split error bars carry the search's fast distances, so their
    last digits depend on the precision chosen. The choice depends on the measurement only
    through the speed-up's floor, far from what either kind of units measures; where a CPU sits
    near it, the environment variable ``LAYERSCOPE_BF16`` (``0`` never, ``1`` wherever the CPU has
    bf16 products) fixes the choice.
    """
    units = bf16_units(device)
    if units is None:
        return False
    forced = os.environ.get("LAYERSCOPE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if bf16_speedup(device.type) < _BF16_MIN_SPEEDUP:
        return False
    t_bf16, t_float32 = _NOMINAL_PRODUCT_SECONDS[units]
    saved = (t_float32 - t_bf16) * d
    return saved > t_bf16 * (_augmented_width(d) - d) + _SCORE_SECONDS + _CANDIDATE_SECONDS * extra_candidates


def bf16_from(extra_candidates: int = 0, device: str = "cpu") -> int | None:
    """The fewest features from which ``precision="auto"`` searches in bf16 here (for a search that
    keeps ``extra_candidates`` more candidates in bf16: 8 for ``nearest_neighbors(X, k)``, 0 for
    TwoNN's default fit), or None where it never does (up to 100,000 features)."""
    dev = torch.device(device)
    return next((d for d in range(1, 100_001) if _bf16_pays(dev, d, extra_candidates)), None)


@dataclass(frozen=True)
class Neighbors:
    """The k nearest neighbours of every point.

    Attributes
    ----------
    distances : numpy.ndarray of shape (n_points, k)
        Euclidean distances in float64, ascending along each row, exact (from
        coordinate differences of the input, not from dot products).
    indices : numpy.ndarray of shape (n_points, k)
        Row numbers (into the searched array) of the neighbours; a point is never
        its own neighbour.
    n_fallback : int
        Rows whose fast candidate set could not be certified and were searched
        exhaustively in float64.
    scale : float
        Root mean square distance of the points to their centroid.
    """

    distances: np.ndarray
    indices: np.ndarray
    n_fallback: int
    scale: float


def nearest_neighbors(
    X: Array,
    k: int,
    *,
    device: str | torch.device | None = None,
    backend: str = "torch",
    precision: str = "auto",
    margin: int = 8,
) -> Neighbors:
    """Exact k nearest neighbours of every row of ``X`` among the other rows.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_points, n_features)
    k : int
        Number of neighbours, ``1 <= k < n_points``.
    device : str or torch.device, optional
        Where the candidate search runs ("cpu", "cuda", "cuda:1"). Default: the
        device of ``X`` if it is a tensor, else the CPU.
    backend : {"torch", "faiss"}
        Candidate search by blocked matrix products in torch, or by faiss's exact
        flat index (CPU, needs ``faiss-cpu``).
    precision : {"auto", "bfloat16", "float32", "float64"}
        Arithmetic of the candidate search. The returned distances are float64 and
        exact whichever is chosen; it only changes the speed and how often rows need
        the exhaustive fallback. ``"auto"``: bfloat16 on a CPU whose bf16 products are
        measured at least 1.3x faster than its float32 ones (:func:`bf16_speedup`), for
        points with enough features that the product time saved exceeds bf16's other
        costs (:func:`bf16_from`: with AVX512-BF16 from 375 features here and 151 for
        TwoNN's default search; with AMX from 185 and 72); a float32
        search again if bf16 leaves more than 1% of the rows uncertain; float32 otherwise.
    margin : int
        Extra candidates per row beyond ``k`` kept for the exact re-rank.

    Returns
    -------
    Neighbors

    Notes
    -----
    Duplicate points are not treated specially here: they are each other's
    neighbours at distance 0. The estimators drop them first (see
    :func:`neighbors_without_duplicates`).
    """
    X = check_points(X, min_points=2)
    n = X.shape[0]
    k = check_int(k, "k", minimum=1)
    if k >= n:
        raise ValueError(f"k={k} neighbours need at least {k + 1} points, got {n}")
    if backend not in ("torch", "faiss"):
        raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
    margin = check_int(margin, "margin", minimum=0)
    return _search(as_tensor(X), k, device=device, backend=backend, precision=precision, margin=margin)


def _search(
    source: torch.Tensor,
    k: int,
    *,
    device: str | torch.device | None = None,
    backend: str = "torch",
    precision: str = "auto",
    margin: int = 8,
    exact: int | None = None,
) -> Neighbors:
    """:func:`nearest_neighbors` on a tensor that has been checked already.

    Data far from unit scale are first multiplied by a power of two (exact), so
    that no float32 square overflows or underflows; distances are scaled back.

    ``exact`` (default ``k``): how many leading neighbours of each row must be the
    exact ones with exact distances. The half-split error bars list more neighbours
    than the estimate uses (a half must keep its k); past the first ``exact`` the list
    holds the search's next-nearest candidates with their certified fast distances
    (within ``rho_r`` of the distance, 0.4% at most in bf16: see :func:`_rerank`), which
    spares re-computing the distances of 18-60 neighbours per point from coordinates, the
    largest cost of a default fit once the products are fast. Their effect on a standard
    error is far below its own uncertainty (``tests/test_error_bars.py``).
    """
    source, factor = _unit_scaled(source, unit_factor(source))
    n = source.shape[0]
    dev = check_device(device) if device is not None else source.device
    if backend == "faiss" and dev.type != "cpu":
        raise ValueError(f"backend='faiss' runs on the CPU; use backend='torch' for device={dev}")
    exact = k if exact is None else min(check_int(exact, "exact", minimum=1), k)
    n_cand = min(max(k, exact + margin), n - 1)
    # bf16's coarser fast distances: a wider margin keeps the certificate clear of them
    n_cand_bf16 = min(max(k, exact + 2 * margin), n - 1)
    if precision == "auto":  # bf16 where it saves more product time than it costs (see _bf16_pays)
        pays = backend == "torch" and _bf16_pays(dev, source.shape[1], n_cand_bf16 - n_cand)
        precision = "bfloat16" if pays else "float32"
    if precision == "bfloat16":
        n_cand = n_cand_bf16
    found = _certified_candidates(source, n_cand, (exact, k), _DTYPES[precision], dev, backend)
    if precision == "bfloat16" and int(found[2].sum()) > max(32, _RETRY_FRACTION * n):
        n_cand = min(max(k, exact + margin), n - 1)
        # too coarse for these data: a float32 search costs less than many exhaustive rows
        found = _certified_candidates(source, n_cand, (exact, k), torch.float32, dev, backend)
    distances, indices, uncertain, sq64 = found
    rows = uncertain.nonzero().flatten()
    if len(rows):
        d_f, i_f = _exhaustive(source, rows, k, dev)
        distances[rows], indices[rows] = d_f, i_f
    distances = distances.numpy() / factor
    if not np.all(np.isfinite(distances)):
        raise ValueError("the distances between these points exceed float64's range (about 1e308); rescale the data")
    return Neighbors(distances, indices.numpy(), int(len(rows)), math.sqrt(float(sq64.mean())) / factor)


def _unit_scaled(t: torch.Tensor, factor: float) -> tuple[torch.Tensor, float]:
    """``t`` times the power of two ``factor`` (exact) and the factor applied: 1 (and no copy) where
    ``t`` is within 2^16 of unit scale already, where float32's squares neither overflow nor underflow."""
    if 2.0**-16 <= factor <= 2.0**16:
        return t, 1.0
    return t * factor, factor


def _certified_candidates(
    source: torch.Tensor,
    n_cand: int,
    k: int | tuple[int, int],
    dtype: torch.dtype,
    dev: torch.device,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k nearest among ``n_cand`` candidates searched in ``dtype``, and the rows the
    certificate cannot vouch for. ``k`` may be ``(exact, listed)``: the first ``exact``
    certified and exact, the list continued to ``listed`` by fast distances.

    Returns the distances of the listed candidates (ascending, float64), their indices,
    the uncertain rows' mask, and the squared norms (float64) of the centred data.
    """
    n = source.shape[0]
    if backend == "faiss":
        Xc, sq = _centred(source, dtype, dev)
        approx, cand = _candidates_faiss(Xc, n_cand)
        del Xc
    else:
        approx, cand, sq = _candidates_torch(source, dtype, dev, n_cand)
    sq64 = sq.to(device="cpu", dtype=torch.float64)
    # bf16 products are returned rounded to bf16: an error relative to the distance itself
    # (the norms are inside the product, see _candidates_torch); float32 and float64 outputs round
    # at their own precision, and their cancellation error scales with the norms.
    u_out = 2.0**-8 if dtype == torch.bfloat16 else torch.finfo(dtype).eps / 2
    u_in = torch.finfo(torch.promote_types(dtype, torch.float32)).eps / 2
    n_exact, listed = (k, k) if isinstance(k, int) else k
    approx64 = approx.cpu().double()
    found = _rerank(
        source, approx64, cand.cpu(), sq64, n_exact, dev, u_out, u_in, listed=listed, all_points=n_cand == n - 1
    )
    return (*found, sq64)


def _rerank(
    source: torch.Tensor,
    approx: torch.Tensor,
    cand: torch.Tensor,
    sq64: torch.Tensor,
    k: int,
    dev: torch.device,
    u_out: float,
    u_in: float,
    *,
    listed: int | None = None,
    all_points: bool,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact re-rank of the candidates that can be among the k nearest, and the certificate.

    Error model of the fast squared distances ``A`` against the exact ``d^2``:
    ``|A - d^2| <= rho_r d^2 + rho_s (|x|^2 + |y|^2)``, the first term for rounding of
    the result (bf16 outputs), the second for cancellation in ``|x|^2 + |y|^2 - 2 x.y``
    and the accumulation. Both start at ``_SAFETY`` times the formats' unit roundoffs and
    grow to ``_SAFETY`` times the largest errors seen on the candidates whose exact
    distances are computed. A candidate's exact distance is computed only where its
    lower bound does not exceed the k-th smallest upper bound of the row (else it cannot
    be among the k nearest); the set grows until the bounds stop growing. A row is
    certain when the lower bound of every non-candidate (whose fast distance is at least
    the last candidate's) exceeds its k-th exact distance. With ``listed > k`` the list
    goes on with the other candidates by their exact distance where computed, else their
    fast one (no lower than the k-th exact distance). ``rows``: the data rows the candidate
    lists belong to (default: all, in order). Returns the distances, indices, uncertain mask.
    """
    n, K = approx.shape
    rows = torch.arange(n) if rows is None else rows
    approx, order = approx.sort(dim=1)
    cand = cand.gather(1, order)
    scale = sq64[rows][:, None] + sq64[cand]
    far_scale = sq64[rows] + sq64.max()
    rho_r, rho_s = _SAFETY * u_out, _SAFETY * u_in
    exact = torch.full((n, K), math.inf, dtype=torch.float64)  # squared; inf where not computed
    have = torch.zeros((n, K), dtype=torch.bool)
    while rho_r < 0.5:
        upper = (approx + rho_s * scale) / (1 - rho_r)
        lower = (approx - rho_s * scale) / (1 + rho_r)
        need = lower <= upper.kthvalue(k, dim=1).values[:, None]
        need[:, :k] = True
        need &= cand >= 0  # a list short of real candidates (scores that overflowed): its row stays uncertain
        todo = need & ~have
        if todo.any():
            r, c = todo.nonzero(as_tuple=True)
            exact[r, c] = _pair_distances(source, rows[r], cand[r, c], dev).square()
            have |= todo
        err = (approx - exact).abs()
        far = have & (exact > 0) & (exact >= scale * 2.0**-10)  # not near-copies: their error is cancellation's
        q_r = float((err[far] / exact[far]).max()) if far.any() else 0.0
        new_r = max(rho_r, _SAFETY * q_r)
        q_s = float(((err[have] - new_r * exact[have]).clamp_min(0) / scale[have].clamp_min(_TINY)).max())
        new_s = max(rho_s, _SAFETY * q_s)
        if new_r <= rho_r and new_s <= rho_s:
            break
        rho_r, rho_s = new_r, new_s
    best, pos = exact.topk(k, dim=1, largest=False)
    indices = cand.gather(1, pos)
    if all_points:
        uncertain = torch.zeros(n, dtype=torch.bool)
    elif rho_r >= 0.5:  # the fast distances tell nothing: every row is searched again
        uncertain = torch.ones(n, dtype=torch.bool)
    else:
        lower = (approx[:, -1] - rho_s * far_scale) / (1 + rho_r)
        uncertain = lower <= best[:, -1]
    if listed is not None and listed > k:
        rest = torch.where(have, exact, approx).clamp_min(best[:, -1:])
        rest.scatter_(1, pos, math.inf)
        more, more_pos = rest.topk(listed - k, dim=1, largest=False)
        best, indices = torch.cat([best, more], 1), torch.cat([indices, cand.gather(1, more_pos)], 1)
    return best.sqrt(), indices, uncertain


@contextlib.contextmanager
def _matmul_precision(device: torch.device) -> Iterator[None]:
    """Fast float32 products on CPU (split-bf16); full float32 (no TF32) on GPUs."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium" if device.type == "cpu" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _centred(source: torch.Tensor, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The data minus its mean, as ``dtype`` on ``device``, and the squared norms of the rounded rows."""
    return _centred_rows(source, source.mean(0), 0, source.shape[0], dtype, device)


def _centred_rows(
    source: torch.Tensor,
    mean: torch.Tensor,
    a: int,
    b: int,
    dtype: torch.dtype,
    device: torch.device,
    extra: int = 0,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``a:b`` of the data minus ``mean``, as ``dtype`` on ``device``, and their squared norms.

    Centring removes the cancellation that data far from the origin would cause in
    ``|x|^2 + |y|^2 - 2 x.y``. The subtraction is done at the source's precision
    before rounding (data far from 0 keep their digits), a chunk at a time, so no
    temporary of the source's size is made; the norms are those of the rounded
    points, so that the fast distances are the rounded points' own and only the
    products' rounding is left. ``extra`` columns are left for the caller (uninitialised);
    ``out``: a buffer of ``b - a`` rows to write into (its columns past ``d`` are the extra ones).
    """
    work = torch.promote_types(dtype, torch.float32)  # norms at least in float32
    d = source.shape[1]
    if out is None:
        out = torch.empty((b - a, d + extra), dtype=dtype, device=device)
    sq = torch.empty(b - a, dtype=work, device=device)
    # Chunks of about 4 MB, whose temporaries stay in cache. The difference is taken at the
    # source's precision into a temporary and then rounded as it is copied: torch.sub with an
    # output of another dtype makes and copies a temporary of its own, and vector_norm reads
    # bf16 without vector code: 2500 x 10,000 float64 rows to bf16 took 15 ms that way, 9 ms so.
    step = max(1, _RERANK_BYTES // (source.element_size() * d))
    same = source.device == device
    direct = same and source.dtype == dtype
    temp = None if direct or not same else torch.empty((min(step, b - a), d), dtype=source.dtype, device=device)
    wide = torch.empty((min(step, b - a), d), dtype=work, device=device) if dtype != work else None
    for c in range(a, b, step):
        e = min(c + step, b)
        dst = out[c - a : e - a, :d]
        if direct:
            torch.sub(source[c:e], mean, out=dst)
        elif same:
            dst.copy_(torch.sub(source[c:e], mean, out=temp[: e - c]))  # rounded once as it is stored
        else:
            dst.copy_(source[c:e] - mean)
        rounded = dst if wide is None else wide[: e - c].copy_(dst)
        sq[c - a : e - a] = torch.linalg.vector_norm(rounded, dim=1).square_()
    return out, sq


def _superblocks(n: int, d: int, dtype: torch.dtype, forms: int = 1) -> list[tuple[int, int]]:
    """Row ranges of the search copy: all rows at once when ``forms`` copies of it (the columns' and,
    in bf16, the rows' form) fit in ``_SEARCH_BYTES``, else equal ranges of which two fit."""
    itemsize = torch.finfo(dtype).bits // 8
    if n * d * itemsize * forms <= _SEARCH_BYTES:
        return [(0, n)]
    rows = max(1, _SEARCH_BYTES // (2 * d * itemsize))
    parts = math.ceil(n / rows)
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _merge(
    best_v: torch.Tensor, best_i: torch.Tensor, v: torch.Tensor, i: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the K largest scores of two candidate lists of the same rows (sorted, largest first)."""
    all_v = torch.cat([best_v, v], dim=1)
    all_i = torch.cat([best_i, i], dim=1)
    keep_v, pos = all_v.topk(best_v.shape[1], dim=1)
    return keep_v, all_i.gather(1, pos)


def _merge_block(best_v: torch.Tensor, best_i: torch.Tensor, S: torch.Tensor, r0: int, c0: int, skip: int) -> None:
    """Scores ``S`` (rows = points ``r0..``, columns = points ``c0..``) into the rows' candidate lists and
    (from column ``skip`` on) into the columns' lists.

    Once a list is full only the scores at or above its worst kept one are offered to it, and
    after the first blocks those are few: one mask for both sides (a comparison each, one nonzero:
    1.9 ms for a 1024 x 2500 block at K = 18, where a row top-K took 2.6 ms, a column top-K 10 ms,
    and the columns' comparison and nonzero 1.4 ms more). Lists still filling (the first blocks
    only) take a row top-K, a column top-K up to ``_COLUMN_TOPK_MAX``, or else a provisional
    threshold (:func:`_provisional`) that lets their K best scores of the block through.
    """
    K = best_v.shape[1]
    rows, cols = slice(r0, r0 + S.shape[0]), slice(c0 + skip, c0 + S.shape[1])
    tau_r, tau_c = best_v[rows, K - 1], best_v[cols, K - 1]
    if torch.isneginf(tau_r).any():  # the first block of a search: a row top-K is cheap
        _merge_top(best_v, best_i, S, rows, c0)
        tau_r = None
    if len(tau_c) and torch.isneginf(tau_c).any():
        if K <= _COLUMN_TOPK_MAX:
            _merge_top(best_v, best_i, S[:, skip:].T, cols, r0)
            tau_c = tau_c[:0]
        else:
            tau_c = torch.where(torch.isneginf(tau_c), _provisional(S[:, skip:], K, 0), tau_c)
    if tau_r is not None:
        mask = torch.ge(S, tau_r[:, None])
        if len(tau_c):
            mask[:, skip:] |= torch.ge(S[:, skip:], tau_c[None, :])
        r, c = mask.nonzero(as_tuple=True)  # row-major: sorted by row
    elif len(tau_c):
        r, c = torch.ge(S[:, skip:], tau_c[None, :]).nonzero(as_tuple=True)
        c += skip
    else:
        return
    values = S[r, c].to(best_v.dtype)
    if tau_r is not None:
        mine = (values >= tau_r[r]) & (values > -math.inf)  # -inf: a point and itself, or a threshold left open
        _merge_entries(best_v, best_i, r[mine] + r0, c[mine] + c0, values[mine])
    if len(tau_c):
        theirs = (c >= skip) & (values >= tau_c[(c - skip).clamp_min(0)]) & (values > -math.inf)
        by_column, order = c[theirs].sort(stable=True)
        _merge_entries(best_v, best_i, by_column + c0, r[theirs][order] + r0, values[theirs][order])


def _merge_top(best_v: torch.Tensor, best_i: torch.Tensor, T: torch.Tensor, lists: slice, offset: int) -> None:
    """The K best scores of each row of ``T`` (whose columns are points ``offset..``) into the lists ``lists``."""
    K = best_v.shape[1]
    v, i = T.topk(min(K, T.shape[1]), dim=1)
    v, i = _pad(v.to(best_v.dtype), i + offset, K)
    best_v[lists], best_i[lists] = _merge(best_v[lists], best_i[lists], v, i)


def _provisional(S: torch.Tensor, K: int, dim: int) -> torch.Tensor:
    """A threshold per row (``dim=1``) or column (``dim=0``) of ``S`` at or below its K-th largest entry.

    The entries along ``dim`` are cut into about 4K groups and the K-th largest of the groups' maxima
    is taken: those maxima are K distinct entries, so the K-th largest entry is at least as large.
    About K entries and a few more pass it, as with a top-K, at a fraction of a column top-K's cost
    (a group maximum and a kthvalue of 4K numbers per line). -inf where a line has fewer than K entries.
    """
    m = S.shape[dim]
    lines = S.shape[1 - dim]
    if m < K:
        return torch.full((lines,), -math.inf, dtype=torch.float32, device=S.device)
    g = max(1, m // (4 * K))
    groups = m // g
    if dim == 1:
        maxima = S[:, : groups * g].reshape(lines, groups, g).amax(2)
    else:
        maxima = S[: groups * g].reshape(groups, g, lines).amax(1).T
    return maxima.float().kthvalue(groups - K + 1, dim=1).values


def _merge_entries(
    best_v: torch.Tensor, best_i: torch.Tensor, target: torch.Tensor, source: torch.Tensor, values: torch.Tensor
) -> None:
    """Merge scores into the candidate lists: ``values[p]`` (of point ``source[p]``) is offered to the list
    of point ``target[p]``; ``target`` is sorted (each list's entries together). Each list gets one merge
    of its own entries (a padded row per list), not one per entry."""
    if not len(target):
        return
    lists, counts = torch.unique_consecutive(target, return_counts=True)
    slot = torch.repeat_interleave(torch.arange(len(lists), device=target.device), counts)
    pos = torch.arange(len(target), device=target.device) - (torch.cumsum(counts, 0) - counts)[slot]
    width = int(counts.max())
    V = torch.full((len(lists), width), -math.inf, dtype=best_v.dtype, device=best_v.device)
    Ii = torch.full((len(lists), width), -1, dtype=torch.int64, device=best_v.device)
    V[slot, pos], Ii[slot, pos] = values, source
    best_v[lists], best_i[lists] = _merge(best_v[lists], best_i[lists], V, Ii)


def _candidates_torch(
    source: torch.Tensor, dtype: torch.dtype, device: torch.device, K: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K smallest fast squared distances per row (upper-triangle blocks only), their
    indices, and the squared norms of the centred, rounded rows.

    The blocks hold scores ``x.y - |x|^2/2 - |y|^2/2 = -|x - y|^2 / 2`` (larger is
    nearer). In float32 and float64 the norms are added after the product. In bfloat16
    the product's output is rounded to bf16, which would cost a relative error of 2^-8
    of ``x.y`` (of order ``|x|^2``, far more than a neighbour's distance): so the norms go
    inside the product, as three extra columns each (``-|x|^2/2`` split into three bf16
    parts, exact to float32) against columns of ones, and the product, accumulated in
    float32, is the score itself, rounded once at 2^-8 of the distance.

    The rounded copy of the data is made a superblock of rows at a time (see
    :func:`_superblocks`), so that at most two superblocks are held. Superblock ``i`` is
    paired with the later ones from the last back to ``i + 1``, which then serves as the
    next ``i``: each superblock but the first is rounded about ``(parts - 1) / 2`` times
    more, which is cheap beside the products (N D parts / 2 conversions against N^2 D / 2
    products) but not free where the products are fast (AMX): two buffers, not three, so
    that the superblocks are as large as the memory allows. In bf16 the rows' form of
    superblock ``i`` is written over the buffer of the previous ``i``'s rows form, which is
    free by then, and its columns' form is needed only for its own triangle, after which
    that buffer receives the later superblocks.
    """
    n, d = source.shape
    mean = source.mean(0)
    work = torch.promote_types(dtype, torch.float32)  # scores are kept in float32 at least
    augmented = dtype == torch.bfloat16
    width_cols = _augmented_width(d) if augmented else d  # 6 extension columns, rows of 32 bytes
    best_v = torch.full((n, K), -math.inf, dtype=work, device=device)
    best_i = torch.full((n, K), -1, dtype=torch.int64, device=device)
    sq = torch.empty(n, dtype=work, device=device)
    bounds = _superblocks(n, width_cols, dtype, forms=2 if augmented else 1)
    width = max(b - a for a, b in bounds)
    # Small row blocks keep the triangle close to half the square (N^2/2 + N*block/2).
    block = int(min(width, 1024, max(64, _BLOCK_BYTES // (4 * width))))

    def rows_vs(Ai: torch.Tensor, a: int, Bj: torch.Tensor, c: int, same: bool) -> None:
        """Scores of superblock rows ``a..`` (``Ai``) against columns ``c..`` (``Bj``)."""
        for start in range(0, Ai.shape[0], block):
            stop = min(start + block, Ai.shape[0])
            r0, r1 = a + start, a + stop
            cols = Bj[start:] if same else Bj  # within a superblock: the triangle only
            c0 = r0 if same else c
            S = Ai[start:stop] @ cols.T
            if not augmented:
                S = S.to(work).sub_(sq[c0 : c0 + cols.shape[0]], alpha=0.5).sub_(sq[r0:r1, None], alpha=0.5)
            if same:
                S.diagonal()[:] = -math.inf  # a point is not its own neighbour
            skip = stop - start if same else 0  # the same products, seen from the columns' rows
            _merge_block(best_v, best_i, S, r0, c0, skip)

    # The superblocks are written into two buffers made once: no allocation per superblock, so
    # the process's memory stays at what the buffers need.
    buffers = [torch.empty((width, width_cols), dtype=dtype, device=device) for _ in range(2)]

    def load(j: int, buffer: torch.Tensor) -> torch.Tensor:
        """Superblock j, rounded, in the columns' form ([x, 1, 1, 1, q1, q2, q3, 0...] in bf16)."""
        a, b = bounds[j]
        X, sq[a:b] = _centred_rows(source, mean, a, b, dtype, device, out=buffer[: b - a])
        if augmented:
            X[:, d:] = 0
            X[:, d : d + 3] = 1
            X[:, d + 3 : d + 6] = _bf16_parts(-0.5 * sq[a:b].double())
        return X

    def rows_form(B: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        """The rows' form of a superblock ([x, q1, q2, q3, 1, 1, 1, 0...] in bf16), written into ``buffer``."""
        A = buffer[: B.shape[0]].copy_(B)
        A[:, d : d + 3] = B[:, d + 3 : d + 6]
        A[:, d + 3 : d + 6] = 1
        return A

    with _matmul_precision(device):
        Bi = load(0, buffers[0])
        for i, (a, _) in enumerate(bounds):
            # bf16: the columns' form of i always sits in buffers[0] and its rows' form in buffers[1]
            # (the previous i's rows form is no longer needed); after i's own triangle buffers[0] takes
            # the later superblocks. float32: one form; superblock i stays, the later ones alternate.
            Ai = rows_form(Bi, buffers[1]) if augmented else Bi
            rows_vs(Ai, a, Bi, a, same=True)
            if i == len(bounds) - 1:
                break
            spare = buffers[0] if augmented or Bi.data_ptr() != buffers[0].data_ptr() else buffers[1]
            for j in range(len(bounds) - 1, i, -1):  # ends with j = i + 1, the next i: already loaded
                Bj = load(j, spare)
                rows_vs(Ai, a, Bj, bounds[j][0], same=False)
            Bi = Bj
    return -2 * best_v, best_i, sq


def _bf16_parts(v: torch.Tensor) -> torch.Tensor:
    """``v`` (float64) as three bfloat16 numbers whose sum is ``v`` to float32's precision."""
    parts = []
    for _ in range(3):
        h = v.to(torch.bfloat16)
        parts.append(h)
        v = v - h.double()
    return torch.stack(parts, dim=1)


def _pad(v: torch.Tensor, i: torch.Tensor, K: int, fill: float = -math.inf) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad candidate lists to K columns with (``fill``, -1): -inf for scores (larger is nearer), inf for
    squared distances."""
    if v.shape[1] == K:
        return v, i
    extra = K - v.shape[1]
    v = torch.cat([v, v.new_full((v.shape[0], extra), fill)], dim=1)
    i = torch.cat([i, i.new_full((i.shape[0], extra), -1)], dim=1)
    return v, i


def _candidates_faiss(Xc: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import faiss
    except ImportError:
        raise ImportError("backend='faiss' needs faiss: pip install faiss-cpu") from None
    data = np.ascontiguousarray(Xc.cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    v, i = index.search(data, K + 1)
    # drop each point itself (usually, not always, in the first column)
    is_self = i == np.arange(len(data))[:, None]
    is_self[~is_self.any(1), -1] = True
    keep = ~is_self
    v = v[keep].reshape(len(data), K)
    i = i[keep].reshape(len(data), K)
    return torch.from_numpy(v), torch.from_numpy(i.astype(np.int64))


def _pair_distances(source: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, device: torch.device) -> torch.Tensor:
    """float64 distances ``|x_rows[p] - x_cols[p]|`` of pairs, from coordinate differences.

    A difference of two numbers in their own floating-point format is correctly
    rounded (no cancellation), and the squares are summed in float64: the result is
    as exact as the input allows. The rows are gathered into buffers made once, a
    small chunk at a time (in cache), and the differences taken in place: at memory speed
    (the gather of the candidates' rows is the cost). A pair listed both ways (mutual
    neighbours: about 30% of the pairs on a 10-manifold) is computed once: ``y - x`` is
    ``-(x - y)`` exactly, so the two distances are the same number.
    """
    m, d = len(rows), source.shape[1]
    if m == 0:
        return torch.empty(0, dtype=torch.float64)
    n = source.shape[0]
    key, inverse = torch.unique(torch.minimum(rows, cols) * n + torch.maximum(rows, cols), return_inverse=True)
    if len(key) < m:
        return _pair_distances(source, key // n, key % n, device)[inverse]
    out = torch.empty(m, dtype=torch.float64)
    step = max(1, min(m, _RERANK_BYTES // (source.element_size() * d)))
    on = source.device
    x_buf = torch.empty((step, d), dtype=source.dtype, device=on)
    y_buf = torch.empty((step, d), dtype=source.dtype, device=on)
    wide = None if source.dtype == torch.float64 else torch.empty((step, d), dtype=torch.float64, device=device)
    rows, cols = rows.to(on), cols.to(on)
    for a in range(0, m, step):
        e = min(a + step, m)
        x = torch.index_select(source, 0, rows[a:e], out=x_buf[: e - a])
        y = torch.index_select(source, 0, cols[a:e], out=y_buf[: e - a])
        diff = y.sub_(x).to(device)
        if wide is not None:
            diff = wide[: e - a].copy_(diff)
        out[a:e] = torch.linalg.vector_norm(diff, dim=1).cpu()
    return out


def _exhaustive(
    source: torch.Tensor, rows: torch.Tensor, k: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of ``rows`` by a scan of every point.

    The scan runs in ``dtype`` (float32 first: for a few rows it costs one read of the
    data), its candidates are re-ranked exactly and certified as in the main search
    (:func:`_rerank`), and the rows it cannot vouch for are scanned again in float64.
    The points are centred and rounded a chunk of about 4 MB at a time, each chunk
    multiplied while it is in cache: for a few rows the scan costs one read of the data
    (a superblock written to memory and read back cost 0.13 s at N = D = 10,000, the
    chunks 0.07 s).
    """
    n, d = source.shape
    n_cand = min(k + 8, n - 1)
    # The centre only has to be near the centroid (it removes cancellation; the distances are
    # certified whatever it is): the mean of about 1,000 rows spared is a pass over all of them.
    mean = source[:: max(1, n // 1024)].mean(0)
    Xq, sq_q = _centred_rows(source[rows.to(source.device)], mean, 0, len(rows), dtype, device)
    q = rows.to(device)
    work = torch.promote_types(dtype, torch.float32)
    sq_all = torch.empty(n, dtype=work, device=device)
    best_v = torch.full((len(rows), n_cand), math.inf, dtype=work, device=device)
    best_i = torch.full((len(rows), n_cand), -1, dtype=torch.int64, device=device)
    with _matmul_precision(device):
        chunk = max(64, _RERANK_BYTES // (torch.finfo(dtype).bits // 8 * d))
        buffer = torch.empty((min(chunk, n), d), dtype=dtype, device=device)
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            Xb, sq_all[a:b] = _centred_rows(source, mean, a, b, dtype, device, out=buffer[: b - a])
            step = max(1, _BLOCK_BYTES // (8 * (b - a)))
            for s in range(0, len(rows), step):
                d2 = (Xq[s : s + step] @ Xb.T).to(work).mul_(-2).add_(sq_all[a:b]).add_(sq_q[s : s + step, None])
                own = (q[s : s + step] >= a) & (q[s : s + step] < b)
                d2[own.nonzero().flatten(), q[s : s + step][own] - a] = math.inf
                v, i = d2.topk(min(n_cand, b - a), dim=1, largest=False)
                v, i = _pad(v, i + a, n_cand, math.inf)
                all_v, all_i = torch.cat([best_v[s : s + step], v], 1), torch.cat([best_i[s : s + step], i], 1)
                keep, pos = all_v.topk(n_cand, dim=1, largest=False)
                best_v[s : s + step], best_i[s : s + step] = keep, all_i.gather(1, pos)
            del Xb
    sq64 = sq_all.to(device="cpu", dtype=torch.float64)
    approx, cand = best_v.cpu().double(), best_i.cpu()
    u = torch.finfo(dtype).eps / 2
    exact, idx, uncertain = _rerank(
        source, approx, cand, sq64, k, device, u, u, all_points=n_cand == n - 1, rows=rows.cpu()
    )
    if uncertain.any() and dtype != torch.float64:
        again = uncertain.nonzero().flatten()
        exact[again], idx[again] = _exhaustive(source, rows.cpu()[again], k, device, torch.float64)
    return exact, idx


class DuplicatePointsWarning(UserWarning):
    """Some points coincided (within the tolerance) and were dropped."""


def neighbors_without_duplicates(
    X: Array, k: int, *, duplicate_tol: float | None = None, **search: object
) -> tuple[Neighbors, np.ndarray, int]:
    """Drop duplicate points, then find the k nearest neighbours of the rest.

    Two points are duplicates when their distance is at most ``duplicate_tol``
    times the data's scale (the root mean square distance to the centroid). One
    point of each group is kept. Duplicates would give zero distances, and so
    infinite or undefined distance ratios; they are dropped and counted, with a
    :class:`DuplicatePointsWarning`.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_points, n_features)
    k : int
    duplicate_tol : float, optional
        Relative tolerance; 0 drops exact copies only. Default: from the input's
        precision (:func:`~layerscope.estimators._validation.default_duplicate_tol`:
        7.6e-6 for float32, 1e-9 for float64), since a format cannot resolve
        distances below a few units in the last place of the data's scale.
    **search
        Passed to :func:`nearest_neighbors`.

    Returns
    -------
    neighbors : Neighbors
        Indices refer to rows of ``X[kept]``.
    kept : numpy.ndarray of int64
        Rows of ``X`` that were kept, ascending.
    n_duplicates : int
        ``n_points - len(kept)``.
    """
    X = check_points(X, min_points=2)
    return _neighbors_without_duplicates(as_tensor(X), k, duplicate_tol=duplicate_tol, **search)


def _neighbors_without_duplicates(
    t: torch.Tensor, k: int, *, duplicate_tol: float | None = None, **search: object
) -> tuple[Neighbors, np.ndarray, int]:
    """:func:`neighbors_without_duplicates` on a tensor already checked by ``check_points``
    (the estimators validate their input once, then call this)."""
    if duplicate_tol is None:
        duplicate_tol = default_duplicate_tol(t.dtype)
    if not duplicate_tol >= 0:
        raise ValueError(f"duplicate_tol must be >= 0, got {duplicate_tol!r}")
    n = t.shape[0]
    kept = _first_copies(t)  # exact copies: cheap to find, and the common case
    while True:
        if len(kept) <= k:
            raise ValueError(
                f"only {len(kept)} distinct points remain after dropping {n - len(kept)} duplicates; "
                f"need at least {k + 1}"
            )
        nb = _search(t if len(kept) == n else t[torch.from_numpy(kept).to(t.device)], k, **search)
        # near copies: a point is dropped if it lies within atol of a kept point listed before it
        atol = duplicate_tol * nb.scale
        near = (nb.distances[:, 0] <= atol) & (nb.indices[:, 0] < np.arange(len(kept)))
        if not near.any():
            break
        kept = kept[~near]
    n_dup = n - len(kept)
    if n_dup:
        warnings.warn(
            f"dropped {n_dup} duplicate points of {n} (distance <= {atol:.3g})",
            DuplicatePointsWarning,
            stacklevel=3,
        )
    return nb, kept, n_dup


def _first_copies(t: torch.Tensor) -> np.ndarray:
    """Rows of ``t`` that are not bit-for-bit copies of an earlier row, ascending.

    Each row's bits are hashed as a random linear form in integers modulo 2^64
    (exact and order-independent, unlike a floating-point sum); rows with equal hashes
    are then compared exactly. The form is first taken over 64 random columns only
    (numpy's integer products are not BLAS: hashing every entry of a 10,000 x 10,000
    array took 0.09 s, a tenth of a whole fit where products are fast): copies agree
    there too, so only the rows whose short hash is shared (none, in data without
    copies; all, where those columns hold one value, as dead ReLU units do) are hashed
    in full, in row chunks, so no n x d temporary is made.
    """
    n, d = t.shape
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[t.element_size()]
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1)
    sampled = np.sort(rng.choice(d, 64, replace=False)) if d > 64 else np.arange(d)
    on_device = torch.from_numpy(sampled).to(t.device)

    def hashed(rows: slice | torch.Tensor, short: bool = False) -> np.ndarray:
        chunk = t[rows][:, on_device] if short else t[rows]  # the columns gathered before leaving the device
        w = weights[sampled] if short else weights
        return chunk.cpu().contiguous().numpy().view(bits).astype(np.uint64, copy=False) @ w  # wraps mod 2^64

    step = max(1, _CHUNK_BYTES // (8 * d))
    short = np.concatenate([hashed(slice(a, a + step), short=True) for a in range(0, n, step)])
    rows = np.flatnonzero(_shared(short))
    hashes = short[rows]
    if d > 64 and len(rows):  # the full hash of the rows whose short hash is shared
        hashes = np.concatenate(
            [hashed(torch.from_numpy(rows[a : a + step]).to(t.device)) for a in range(0, len(rows), step)]
        )
        shared = _shared(hashes)
        rows, hashes = rows[shared], hashes[shared]
    if not len(rows):
        return np.arange(n)
    keep = np.ones(n, dtype=bool)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    for i, f in zip(rows, rows[first[inverse.ravel()]], strict=True):
        if f != i:
            keep[i] = not torch.equal(t[i], t[f])  # a hash collision keeps the row
    return np.flatnonzero(keep)


def _shared(hashes: np.ndarray) -> np.ndarray:
    """Which entries of ``hashes`` occur more than once."""
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] > 1
