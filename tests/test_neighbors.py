import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from layerscope.data.manifolds import affine_subspace, curved_manifold, hypersphere
from layerscope.estimators import DuplicatePointsWarning, nearest_neighbors
from layerscope.estimators.neighbors import neighbors_without_duplicates


def reference(X, k):
    """k nearest neighbours by scipy's KD-tree (an independent exact method)."""
    dist, idx = cKDTree(X).query(X, k=k + 1)
    return dist[:, 1:], idx[:, 1:]


@pytest.mark.parametrize("n,dim,ambient", [(500, 3, 3), (2000, 5, 40), (1200, 30, 300), (50, 2, 4)])
@pytest.mark.parametrize("k", [1, 2, 12])
def test_matchesreference(n, dim, ambient, k):
    X = affine_subspace(n, dim, ambient, seed=n + k)
    nb = nearest_neighbors(X, k)
    dist, idx = reference(X, k)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12)
    np.testing.assert_array_equal(nb.indices, idx)


def test_blocks_and_triangle_cover_every_pair(monkeypatch):
    # force many small blocks so that the row-wise and column-wise passes both matter
    import layerscope.estimators.neighbors as nbm

    monkeypatch.setattr(nbm, "_BLOCK_BYTES", 64 * 4 * 1000)
    X = hypersphere(1000, 4, 10, seed=0)
    nb = nearest_neighbors(X, 5)
    dist, idx = reference(X, 5)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12)


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("budget_rows", [97, 250, 1000])
def test_superblocks_of_the_search_copy_cover_every_pair(monkeypatch, precision, budget_rows):
    # a search copy larger than its memory budget is made a superblock at a time: 1000 points in
    # superblocks of about 97 (11 parts), 250 (4 parts) or one block; uneven sizes, small row blocks
    import layerscope.estimators.neighbors as nbm

    X = hypersphere(1000, 4, 10, seed=1)
    itemsize = torch.finfo(getattr(torch, precision)).bits // 8
    monkeypatch.setattr(nbm, "_SEARCH_BYTES", 2 * budget_rows * 10 * itemsize)
    monkeypatch.setattr(nbm, "_BLOCK_BYTES", 64 * 4 * 100)
    parts = nbm._superblocks(1000, 10, getattr(torch, precision))
    assert [a for a, _ in parts][0] == 0 and parts[-1][1] == 1000
    assert all(b == c for (_, b), (c, _) in zip(parts[:-1], parts[1:], strict=True))
    assert len(parts) == {97: 11, 250: 4, 1000: 1}[budget_rows]
    nb = nearest_neighbors(X, 5, precision=precision)
    dist, idx = reference(X, 5)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-12)


def test_precision_low_dimensional_subspace_far_from_origin():
    # The case: float32 |x|^2+|y|^2-2xy on a 2-D subspace gave zero distances.
    rng = np.random.default_rng(0)
    n, D = 10_000, 1000
    X = (rng.standard_normal((n, 2)) @ rng.standard_normal((2, D))).astype(np.float64)
    for shift in (0.0, 1e4):
        Y = X + shift
        nb = nearest_neighbors(Y, 2)
        assert nb.distances.min() > 0
        rows = rng.choice(n, 200, replace=False)
        for i in rows[:50]:
            d = np.linalg.norm(Y - Y[i], axis=1)
            d[i] = np.inf
            order = np.argsort(d)[:2]
            np.testing.assert_array_equal(nb.indices[i], order)
            np.testing.assert_allclose(nb.distances[i], d[order], rtol=1e-9)


@pytest.mark.parametrize("superblock_rows", [None, 700])
def test_certificate_triggers_exact_fallback(monkeypatch, superblock_rows):
    # with a single extra candidate, some rows cannot be certified and are scanned in float64
    # (whole, or 700 rows of the points at a time); the answer must be exact all the same
    import layerscope.estimators.neighbors as nbm

    if superblock_rows:
        monkeypatch.setattr(nbm, "_SEARCH_BYTES", 2 * superblock_rows * 50 * 8)
    X = affine_subspace(3000, 2, 50, seed=3) + 1e3
    nb = nearest_neighbors(X, 2, margin=1)
    assert 0 < nb.n_fallback < len(X)
    dist, idx = reference(X - X.mean(0), 2)
    np.testing.assert_array_equal(nb.indices, idx)
    np.testing.assert_allclose(nb.distances, dist, rtol=1e-9)


def test_float64_precision_and_torch_input():
    X = hypersphere(800, 3, 6, seed=1)
    a = nearest_neighbors(X, 3, precision="float64")
    X32 = torch.from_numpy(X).float()
    b = nearest_neighbors(X32, 3)
    dist, idx = reference(X, 3)
    np.testing.assert_array_equal(a.indices, idx)
    np.testing.assert_allclose(a.distances, dist, rtol=1e-12)
    dist32, idx32 = reference(X32.double().numpy(), 3)  # exact for the float32 points themselves
    np.testing.assert_array_equal(b.indices, idx32)
    np.testing.assert_allclose(b.distances, dist32, rtol=1e-7)


def test_faiss_backend_matches():
    pytest.importorskip("faiss")
    X = affine_subspace(1500, 6, 64, seed=2)
    a = nearest_neighbors(X, 4, backend="faiss")
    dist, idx = reference(X, 4)
    np.testing.assert_array_equal(a.indices, idx)
    np.testing.assert_allclose(a.distances, dist, rtol=1e-12)


def test_bad_arguments():
    X = hypersphere(20, 2, 3)
    with pytest.raises(ValueError, match="k=20 neighbours need at least 21 points"):
        nearest_neighbors(X, 20)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        nearest_neighbors(X, 0)
    with pytest.raises(ValueError, match="backend must be"):
        nearest_neighbors(X, 2, backend="annoy")
    with pytest.raises(ValueError, match="precision must be"):
        nearest_neighbors(X, 2, precision="float16")


def test_duplicates_dropped_counted_and_warned():
    X = hypersphere(500, 2, 5, seed=4)
    copies = np.vstack([X, X[:30], X[:5] + 1e-14])  # exact copies and near copies
    with pytest.warns(DuplicatePointsWarning, match="dropped 35 duplicate points of 535"):
        nb, kept, n_dup = neighbors_without_duplicates(copies, 2)
    assert n_dup == 35
    np.testing.assert_array_equal(kept, np.arange(500))
    ref = nearest_neighbors(X, 2)
    np.testing.assert_array_equal(nb.indices, ref.indices)


def test_too_few_distinct_points():
    X = np.repeat(np.eye(3), 10, axis=0)
    with pytest.raises(ValueError, match="only 3 distinct points remain after dropping 27 duplicates"):
        neighbors_without_duplicates(X, 3)


def test_many_copies_of_one_point_and_float32():
    # e.g. a layer where many inputs give the all-zero activation
    X = np.vstack([np.zeros((300, 6)), hypersphere(400, 3, 6, seed=5), np.zeros((5, 6))]).astype(np.float32)
    with pytest.warns(DuplicatePointsWarning, match="dropped 304 duplicate points of 705"):
        nb, kept, n_dup = neighbors_without_duplicates(torch.from_numpy(X), 2)
    assert kept[0] == 0 and len(kept) == 401
    assert nb.distances.min() > 0


@pytest.mark.parametrize("dim", [0, 1])
def test_provisional_threshold_lets_every_line_s_k_best_through(dim):
    # the threshold of a list still filling must not exceed the line's K-th largest score, whatever
    # the line's length (shorter than 4K groups, not a multiple of the group size, -inf entries, ties)
    from layerscope.estimators.neighbors import _provisional

    g = torch.Generator().manual_seed(0)
    for length in (18, 19, 71, 72, 73, 500, 1031):
        S = torch.randn(40, length, generator=g) if dim == 1 else torch.randn(length, 40, generator=g)
        S[S > 1.5] = 1.5  # ties at the top
        S.diagonal()[:] = -math.inf  # a point and itself
        tau = _provisional(S, 18, dim)
        kth = S.topk(18, dim=dim).values.select(dim, 17)
        assert torch.all(tau <= kth)
        passing = (S >= (tau[:, None] if dim == 1 else tau[None, :])).sum(dim)
        assert torch.all(passing >= 18)
    assert torch.isneginf(_provisional(torch.randn(5, 10), 18, 1)).all()  # fewer than K entries: all pass


def test_exact_copies_in_wide_data_found_by_the_short_hash_and_the_full_one():
    # more than 64 features: copies are first looked for on 64 random columns, then in full only among
    # the rows that agree there. Three cases: copies; rows that share every sampled column (half the
    # columns are zero, as in dead ReLU units) without being copies; rows that differ in one column only.
    from layerscope.estimators.neighbors import _first_copies

    X = np.random.default_rng(3).standard_normal((300, 200))
    got = _first_copies(torch.from_numpy(np.vstack([X, X[:20], X[7:8]])))
    np.testing.assert_array_equal(got, np.arange(300))
    Z = X.copy()
    Z[:, ::2] = 0
    for column in range(200):  # whichever columns are sampled, a row differing in one column is kept
        W = Z.copy()
        W[:, column] += 1.0
        got = _first_copies(torch.from_numpy(np.vstack([Z, W, Z[:10]]).astype(np.float32)))
        np.testing.assert_array_equal(got, np.arange(600))


@pytest.mark.parametrize("k", [2, 20])
def test_bfloat16_candidates_give_the_exact_neighbours(k):
    """bf16 products are coarse: on high-dimensional Gaussian data with 20 neighbours the certificate
    fails often, and the answer must still be exact (by the float32 retry and the fallback)."""
    g = np.random.default_rng(0)
    for X in (curved_manifold(1500, 5, 64, seed=2), g.standard_normal((1500, 100))):
        got = nearest_neighbors(X, k, precision="bfloat16")
        d, i = reference(X, k)
        np.testing.assert_allclose(got.distances, d, rtol=1e-12)
        assert (got.indices == i).mean() > 0.999  # the rest are exact ties


def test_auto_precision_uses_bf16_for_wide_points_and_retries_in_float32(monkeypatch):
    import layerscope.estimators.neighbors as nb

    seen = []
    original = nb._certified_candidates

    def spy(source, n_cand, k, dtype, dev, backend):
        seen.append((dtype, n_cand))
        return original(source, n_cand, k, dtype, dev, backend)

    monkeypatch.setattr(nb, "_certified_candidates", spy)
    monkeypatch.setattr(nb, "bf16_units", lambda device: "amx_bf16")
    # seconds per multiply-add of bf16 and float32 products, as measured with AMX (a 5x speed-up)
    monkeypatch.setattr(nb, "_product_seconds", lambda device_type="cpu": (1e-12, 5e-12))
    assert nb.bf16_speedup() == 5.0
    g = np.random.default_rng(1)
    narrow = g.standard_normal((300, 100))
    nearest_neighbors(narrow, 2)
    assert seen == [(torch.float32, 10)]  # narrow points, and bf16 would keep 18 candidates, not 10: float32
    seen.clear()
    nb._search(torch.from_numpy(narrow), 18, exact=2)  # TwoNN()'s search: 18 candidates either way
    assert seen == [(torch.bfloat16, 18)]
    seen.clear()
    wide = g.standard_normal((400, 4096)) * 0.1 + np.repeat(
        g.standard_normal((40, 4096)), 10, axis=0
    )  # 40 tight clusters
    got = nearest_neighbors(wide, 20)
    d, i = reference(wide, 20)
    np.testing.assert_allclose(got.distances, d, rtol=1e-12)
    assert seen[0] == (torch.bfloat16, 36)
    if len(seen) > 1:  # bf16 left too many rows uncertain: searched again in float32
        assert seen[1] == (torch.float32, 28)
    monkeypatch.setattr(nb, "_product_seconds", lambda device_type="cpu": (1e-12, 1.1e-12))  # too slow to pay
    seen.clear()
    nearest_neighbors(wide, 2)
    assert seen == [(torch.float32, 10)]
    monkeypatch.setenv("LAYERSCOPE_BF16", "1")  # the choice fixed by the user, whatever was measured
    seen.clear()
    nearest_neighbors(wide, 2)
    assert seen[0][0] == torch.bfloat16
    monkeypatch.delenv("LAYERSCOPE_BF16")
    monkeypatch.setattr(nb, "bf16_units", lambda device: None)
    seen.clear()
    nearest_neighbors(wide, 2)
    assert seen == [(torch.float32, 10)]


def test_bf16_starts_at_fewer_features_where_its_products_are_faster(monkeypatch):
    import layerscope.estimators.neighbors as nb

    monkeypatch.delenv("LAYERSCOPE_BF16", raising=False)
    monkeypatch.setattr(nb, "_product_seconds", lambda device_type="cpu": (1e-12, 3e-12))  # measured: 3x
    starts = {}
    for kind in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(nb, "bf16_units", lambda device, kind=kind: kind)
        starts[kind] = (nb.bf16_from(8), nb.bf16_from(0))
        for extra, start in zip((8, 0), starts[kind], strict=True):  # bf16 from there on, not before
            assert nb._bf16_pays(torch.device("cpu"), start, extra)
            assert not nb._bf16_pays(torch.device("cpu"), start - 1, extra)
            assert nb._bf16_pays(torch.device("cpu"), 4 * start, extra)
    assert starts["amx_bf16"][0] < starts["avx512_bf16"][0] and starts["amx_bf16"][1] < starts["avx512_bf16"][1]
    assert starts["avx512_bf16"][1] < starts["avx512_bf16"][0]  # a wider list costs: bf16 starts later
    # the choice does not move with the process's measurement, only with its floor
    monkeypatch.setattr(nb, "_product_seconds", lambda device_type="cpu": (1e-12, 1.6e-12))
    assert (nb.bf16_from(8), nb.bf16_from(0)) == starts["amx_bf16"]
    monkeypatch.setattr(nb, "_product_seconds", lambda device_type="cpu": (1e-12, 1.2e-12))
    assert nb.bf16_from(0) is None  # a speed-up under 1.3: never
    monkeypatch.setattr(nb, "bf16_units", lambda device: None)
    monkeypatch.setattr(nb, "_product_seconds", lambda device_type="cpu": (1e-12, 6e-12))
    assert nb.bf16_from(0) is None  # no bf16 units on this CPU


def test_bf16_speedup_is_measured_once_and_leaves_the_random_state():
    import layerscope.estimators.neighbors as nb

    state = torch.get_rng_state()
    first = nb.bf16_speedup("cpu")
    assert torch.equal(torch.get_rng_state(), state)
    assert first > 0 and nb.bf16_speedup("cpu") == first  # cached: the same number for the process
    assert nb.bf16_speedup("cuda") == 0.0  # GPUs keep float32


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_neighbours_equal_a_float64_kd_tree_on_hard_data(precision):
    # each precision path on any CPU (bf16 is emulated where the CPU lacks it): manifold,
    # Gaussian, near-duplicate and far-shifted data, against scipy's KD-tree in float64
    g = np.random.default_rng(7)
    manifold = curved_manifold(1200, 6, 700, seed=3)
    gaussian = g.standard_normal((1200, 600))
    near = np.vstack([manifold[:600], manifold[:600] + 1e-9 * g.standard_normal((600, 700))])
    shifted = manifold + 1e3
    for X in (manifold, gaussian, near, shifted):
        for k in (2, 18):
            got = nearest_neighbors(X, k, precision=precision)
            d, i = reference(X, k)
            np.testing.assert_allclose(got.distances, d, rtol=1e-9, atol=1e-12 * np.sqrt((X**2).sum(1).max()))
            assert (got.indices == i).mean() > 0.999  # the rest are exact ties


def test_bf16_too_coarse_for_the_data_is_searched_again_in_float32(monkeypatch):
    import layerscope.estimators.neighbors as nb

    seen = []
    original = nb._certified_candidates

    def spy(*args):
        result = original(*args)
        seen.append((args[3], int(result[2].sum())))
        return result

    monkeypatch.setattr(nb, "_certified_candidates", spy)
    X = np.random.default_rng(0).standard_normal((1500, 100))  # 20 neighbours in 100 dimensions: distances within 1%
    got = nearest_neighbors(X, 20, precision="bfloat16")
    assert seen[0][0] == torch.bfloat16 and seen[0][1] > 32  # bf16 could not vouch for many rows (over 1%: 15 of 1,500)
    # then the candidates are searched again in float32, and only the rows float32 cannot vouch
    # for either (how many depends on the CPU's GEMM kernels: 0 on one, 20 on another) are scanned
    # exactly in float64
    assert [dtype for dtype, _ in seen] == [torch.bfloat16, torch.float32]
    assert seen[1][1] < seen[0][1] and got.n_fallback == seen[1][1]
    np.testing.assert_allclose(got.distances, reference(X, 20)[0], rtol=1e-12)
