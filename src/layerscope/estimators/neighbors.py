"""Exact k-nearest-neighbour search for small k, fast and in bounded memory.

The estimators need the first few neighbours of every point (two for TwoNN, a few
dozen for MLE and GRIDE). Doing that with a full N x N distance matrix, every row
fully sorted (as the reference code and the peer libraries do), costs O(N^2) memory
and a sort per row. Here:

1. **Candidate search.** The data are centred (in float64) and rounded to the
   search precision. Squared distances come from ``|x|^2 + |y|^2 - 2 x.y`` in row
   blocks, one matrix multiply per block, and only the upper triangle of the block
   grid is computed: each block of rows is multiplied with itself and the rows
   after it, and the product serves both the block's rows (row-wise top-K) and the
   later rows (column-wise top-K). That halves the multiply work. A partial top-K
   keeps the ``K = k + margin`` best candidates of each row; nothing of size N x N
   is held. On CPU the float32 product runs with
   ``torch.set_float32_matmul_precision("medium")`` (oneDNN's split-bf16 kernels:
   about twice as fast as plain float32, errors of the same order). For wide points
   (4096 features or more) on a CPU with native bfloat16 products (AVX512-BF16 or
   AMX) the search runs in bfloat16: one bf16 product per block instead of three,
   twice as fast and half the memory for the products, with twice the margin of
   candidates (bf16 distances are coarser); 0.82x the float32 search's time at
   N = D = 10,000 here. Where bf16 is too coarse for the data (more than 1% of the
   rows uncertain) the candidates are searched again in float32 before any row
   falls back.
2. **Exact re-rank.** The distances of the K candidates are recomputed in float64
   from coordinate differences of the original data, which does not cancel, and
   the k best are kept.
3. **Certificate.** The candidates show how far the fast distances were from the
   exact ones; from the largest relative error seen (times a safety factor) each
   row gets a lower bound on the true distance of every non-candidate. A row whose
   bound does not clear its k-th exact distance is searched again exhaustively in
   float64. So the answer is exact, not approximate, and ``n_fallback`` says how
   often the fast path was not enough.

faiss (``backend="faiss"``, when installed) can replace step 1; steps 2 and 3 are
the same.
"""

from __future__ import annotations

import contextlib
import math
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
_PRECISIONS = ("auto", "bfloat16", "float32", "float64")
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
# With "auto", a bf16 search that leaves more uncertain rows than this is redone in float32.
_RETRY_FRACTION = 0.01
# With "auto", bf16 only from this many features: below it the re-rank of the wider candidate
# lists costs more than the faster products save (N = 10,000 here: D = 1024 1.22x the float32
# time, 2048 1.00x, 4096 0.93x, 10,000 0.82x).
_BF16_MIN_FEATURES = 4096


def native_bfloat16(device: torch.device) -> bool:
    """Whether bf16 matrix products run in hardware on ``device``: a CPU with AVX512-BF16 or AMX
    (read from /proc/cpuinfo; elsewhere assumed not). GPUs keep float32 (exact products, no TF32)."""
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
        the exhaustive fallback. ``"auto"``: bfloat16 for points of 4096 features or
        more on a CPU with native bfloat16 products (a float32 search again if bf16
        leaves more than 1% of the rows uncertain); float32 otherwise.
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
) -> Neighbors:
    """:func:`nearest_neighbors` on a tensor that has been checked already.

    Data far from unit scale are first multiplied by a power of two (exact), so
    that no float32 square overflows or underflows; distances are scaled back.
    """
    factor = unit_factor(source)
    if 2.0**-16 <= factor <= 2.0**16:
        factor = 1.0  # near unit scale already: no copy needed
    else:
        source = source * factor
    n = source.shape[0]
    dev = check_device(device) if device is not None else source.device
    if backend == "faiss" and dev.type != "cpu":
        raise ValueError(f"backend='faiss' runs on the CPU; use backend='torch' for device={dev}")
    n_cand = min(k + margin, n - 1)
    if precision == "auto":  # bf16 where the products dominate: wide points (measured in the notes above)
        precision = (
            "bfloat16"
            if backend == "torch" and source.shape[1] >= _BF16_MIN_FEATURES and native_bfloat16(dev)
            else "float32"
        )
    if precision == "bfloat16":  # coarser fast distances: a wider margin keeps the certificate clear of them
        n_cand = min(k + 2 * margin, n - 1)
    exact, cand, uncertain, sq64 = _certified_candidates(source, n_cand, k, _DTYPES[precision], dev, backend)
    if precision == "bfloat16" and int(uncertain.sum()) > max(32, _RETRY_FRACTION * n):
        n_cand = min(k + margin, n - 1)
        # too coarse for these data: a float32 search costs less than many exhaustive rows
        exact, cand, uncertain, sq64 = _certified_candidates(source, n_cand, k, torch.float32, dev, backend)
    rows = uncertain.nonzero().flatten()
    distances, indices = exact[:, :k].clone(), cand[:, :k].clone()
    if len(rows):
        d_f, i_f = _exhaustive(source, rows, k, dev)
        distances[rows], indices[rows] = d_f, i_f
    distances = distances.numpy() / factor
    if not np.all(np.isfinite(distances)):
        raise ValueError("the distances between these points exceed float64's range (about 1e308); rescale the data")
    return Neighbors(distances, indices.numpy(), int(len(rows)), math.sqrt(float(sq64.mean())) / factor)


def _certified_candidates(
    source: torch.Tensor, n_cand: int, k: int, dtype: torch.dtype, dev: torch.device, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates searched in ``dtype``, re-ranked exactly, and the rows the certificate cannot vouch for.

    Returns the exact candidate distances (ascending), their indices, the uncertain
    rows' mask, and the squared norms (float64) of the centred data.
    """
    n = source.shape[0]
    if backend == "faiss":
        Xc, sq = _centred(source, dtype, dev)
        approx, cand = _candidates_faiss(Xc, n_cand)
        del Xc
    else:
        approx, cand, sq = _candidates_torch(source, dtype, dev, n_cand)
    exact = _exact_distances(source, torch.arange(n), cand.cpu(), dev)  # (n, n_cand), float64
    exact, order = exact.sort(dim=1)
    cand = cand.cpu().gather(1, order)

    # Certificate: every non-candidate's fast squared distance is >= the largest
    # candidate's; with the error bound that makes a lower bound on its true one.
    sq64 = sq.to(device="cpu", dtype=torch.float64)
    scale = sq64[:, None] + sq64[cand]
    approx64 = approx.cpu().double().gather(1, order)
    rel_err = ((approx64 - exact**2).abs() / scale.clamp_min(torch.finfo(torch.float64).tiny)).max().item()
    rho = _SAFETY * max(rel_err, torch.finfo(dtype).eps / 2)
    if n_cand == n - 1:
        uncertain = torch.zeros(n, dtype=torch.bool)
    else:
        lower = approx64.max(1).values - rho * (sq64 + sq64.max())
        uncertain = lower <= exact[:, k - 1] ** 2
    return exact, cand, uncertain, sq64


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
    source: torch.Tensor, mean: torch.Tensor, a: int, b: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``a:b`` of the data minus ``mean``, as ``dtype`` on ``device``, and their squared norms.

    Centring removes the cancellation that data far from the origin would cause in
    ``|x|^2 + |y|^2 - 2 x.y``. The subtraction is done at the source's precision
    before rounding (data far from 0 keep their digits), a chunk at a time, so no
    temporary of the source's size is made; the norms are those of the rounded
    points, so that the fast distances are the rounded points' own and only the
    products' rounding is left.
    """
    work = torch.promote_types(dtype, torch.float32)  # norms at least in float32
    out = torch.empty((b - a, source.shape[1]), dtype=dtype, device=device)
    sq = torch.empty(b - a, dtype=work, device=device)
    step = max(1, _CHUNK_BYTES // (source.element_size() * source.shape[1]))
    for c in range(a, b, step):
        e = min(c + step, b)
        chunk = (source[c:e] - mean).to(device=device, dtype=dtype)
        out[c - a : e - a] = chunk
        sq[c - a : e - a] = torch.linalg.vector_norm(chunk, dim=1, dtype=work).square_()
    return out, sq


def _superblocks(n: int, d: int, dtype: torch.dtype) -> list[tuple[int, int]]:
    """Row ranges of the search copy: all rows at once when the copy fits in ``_SEARCH_BYTES``,
    else equal ranges of which two at a time fit."""
    itemsize = torch.finfo(dtype).bits // 8
    if n * d * itemsize <= _SEARCH_BYTES:
        return [(0, n)]
    rows = max(1, _SEARCH_BYTES // (2 * d * itemsize))
    parts = math.ceil(n / rows)
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _merge(
    best_v: torch.Tensor, best_i: torch.Tensor, v: torch.Tensor, i: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the K smallest of two candidate lists of the same rows."""
    all_v = torch.cat([best_v, v], dim=1)
    all_i = torch.cat([best_i, i], dim=1)
    keep_v, pos = all_v.topk(best_v.shape[1], dim=1, largest=False)
    return keep_v, all_i.gather(1, pos)


def _candidates_torch(
    source: torch.Tensor, dtype: torch.dtype, device: torch.device, K: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K smallest fast squared distances per row (upper-triangle blocks only), their
    indices, and the squared norms of the centred, rounded rows.

    The rounded copy of the data is made a superblock of rows at a time (see
    :func:`_superblocks`), so that at most two superblocks are held: at N = D = 10,000
    in bf16 the whole copy would be 191 MiB. Superblock ``i`` is paired with the later
    ones from the last back to ``i + 1``, which then serves as the next ``i``: each
    superblock but the first is rounded about ``(parts - 1) / 2`` times more, which is
    cheap beside the products (N D parts / 2 conversions against N^2 D / 2 products).
    """
    n, d = source.shape
    mean = source.mean(0)
    work = torch.promote_types(dtype, torch.float32)  # bf16 products are ranked in float32
    best_v = torch.full((n, K), math.inf, dtype=work, device=device)
    best_i = torch.full((n, K), -1, dtype=torch.int64, device=device)
    sq = torch.empty(n, dtype=work, device=device)
    bounds = _superblocks(n, d, dtype)
    width = max(b - a for a, b in bounds)
    # Small row blocks keep the triangle close to half the square (N^2/2 + N*block/2).
    block = int(min(width, 1024, max(64, _BLOCK_BYTES // (4 * width))))

    def rows_vs(Xi: torch.Tensor, a: int, Xj: torch.Tensor, c: int, same: bool) -> None:
        """Products of superblock rows ``a..`` (``Xi``) with columns ``c..`` (``Xj``)."""
        for start in range(0, Xi.shape[0], block):
            stop = min(start + block, Xi.shape[0])
            r0, r1 = a + start, a + stop
            cols = Xj[start:] if same else Xj  # within a superblock: the triangle only
            c0 = r0 if same else c
            d2 = (Xi[start:stop] @ cols.T).to(work)
            d2.mul_(-2).add_(sq[c0 : c0 + cols.shape[0]]).add_(sq[r0:r1, None])
            if same:
                d2.diagonal()[:] = math.inf  # a point is not its own neighbour
            v, i = d2.topk(min(K, d2.shape[1]), dim=1, largest=False)
            v, i = _pad(v, i + c0, K)
            best_v[r0:r1], best_i[r0:r1] = _merge(best_v[r0:r1], best_i[r0:r1], v, i)
            skip = stop - start if same else 0  # the same products, seen from the columns' rows
            if cols.shape[0] > skip:
                tail = d2[:, skip:].T
                v, i = tail.topk(min(K, stop - start), dim=1, largest=False)
                v, i = _pad(v, i + r0, K)
                t0 = c0 + skip
                t1 = c0 + cols.shape[0]
                best_v[t0:t1], best_i[t0:t1] = _merge(best_v[t0:t1], best_i[t0:t1], v, i)

    def load(j: int) -> torch.Tensor:
        a, b = bounds[j]
        X, sq[a:b] = _centred_rows(source, mean, a, b, dtype, device)
        return X

    with _matmul_precision(device):
        Xi = load(0)
        for i, (a, _) in enumerate(bounds):
            rows_vs(Xi, a, Xi, a, same=True)
            Xj = None
            for j in range(len(bounds) - 1, i, -1):
                Xj = None  # free the previous one first: two superblocks at most
                Xj = load(j)
                rows_vs(Xi, a, Xj, bounds[j][0], same=False)
            Xi = Xj
    return best_v, best_i, sq


def _pad(v: torch.Tensor, i: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad candidate lists to K columns with (inf, -1)."""
    if v.shape[1] == K:
        return v, i
    extra = K - v.shape[1]
    v = torch.cat([v, v.new_full((v.shape[0], extra), math.inf)], dim=1)
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


def _exact_distances(
    source: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """float64 distances ``|x_rows[r] - x_cols[r, c]|`` from coordinate differences.

    A difference of two numbers in their own floating-point format is correctly
    rounded (no cancellation), and the squares are summed in float64: the result is
    as exact as the input allows. Small chunks keep the gathered rows in cache,
    which made this 10x faster than large chunks here.
    """
    n_rows, m = cols.shape
    d = source.shape[1]
    out = torch.empty((n_rows, m), dtype=torch.float64)
    step = max(1, _RERANK_BYTES // (source.element_size() * d * m))
    for a in range(0, n_rows, step):
        r = rows[a : a + step].to(source.device)
        c = cols[a : a + step].to(source.device)
        x = source[r].to(device)
        y = source[c.flatten()].to(device).view(len(r), m, d)
        out[a : a + step] = torch.linalg.vector_norm(y - x[:, None, :], dim=-1, dtype=torch.float64).cpu()
    return out


def _exhaustive(
    source: torch.Tensor, rows: torch.Tensor, k: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of ``rows`` by a float64 scan of every point, then exact re-rank.

    The points are scanned a superblock at a time (as in the candidate search), so the
    float64 copy is never whole."""
    n, d = source.shape
    n_cand = min(k + 8, n - 1)
    mean = source.mean(0)
    Xq, sq_q = _centred_rows(source[rows.to(source.device)], mean, 0, len(rows), torch.float64, device)
    q = rows.to(device)
    best_v = torch.full((len(rows), n_cand), math.inf, dtype=torch.float64, device=device)
    best_i = torch.full((len(rows), n_cand), -1, dtype=torch.int64, device=device)
    for a, b in _superblocks(n, d, torch.float64):
        Xb, sq_b = _centred_rows(source, mean, a, b, torch.float64, device)
        step = max(1, _BLOCK_BYTES // (8 * (b - a)))
        for s in range(0, len(rows), step):
            d2 = sq_q[s : s + step, None] + sq_b[None, :] - 2 * (Xq[s : s + step] @ Xb.T)
            own = (q[s : s + step] >= a) & (q[s : s + step] < b)
            d2[own.nonzero().flatten(), q[s : s + step][own] - a] = math.inf
            v, i = d2.topk(min(n_cand, b - a), dim=1, largest=False)
            v, i = _pad(v, i + a, n_cand)
            best_v[s : s + step], best_i[s : s + step] = _merge(best_v[s : s + step], best_i[s : s + step], v, i)
        del Xb
    cand = best_i.cpu()
    exact = _exact_distances(source, rows, cand, device)
    exact, order = exact.sort(dim=1)
    return exact[:, :k], cand.gather(1, order)[:, :k]


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
    (exact and order-independent, unlike a floating-point sum), in row chunks, so no
    n x d temporary is made; rows with equal hashes are then compared exactly.
    """
    n, d = t.shape
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[t.element_size()]
    weights = np.random.default_rng(0).integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1)
    hashes = np.empty(n, dtype=np.uint64)
    step = max(1, _CHUNK_BYTES // (8 * d))
    for a in range(0, n, step):
        chunk = t[a : a + step].cpu().contiguous().numpy().view(bits).astype(np.uint64)
        hashes[a : a + step] = chunk @ weights  # integer products wrap modulo 2^64
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    if len(first) == n:
        return np.arange(n)
    keep = np.ones(n, dtype=bool)
    for i in np.flatnonzero(first[inverse] != np.arange(n)):
        keep[i] = not torch.equal(t[i], t[first[inverse[i]]])  # a hash collision keeps the row
    return np.flatnonzero(keep)
