import warnings

import numpy as np
import pytest
import torch

from layerscope.data.manifolds import MANIFOLDS, affine_subspace, flat_torus, hypercube, hypersphere
from layerscope.estimators import DuplicatePointsWarning, TwoNN, twonn, twonn_scale
from layerscope.estimators.twonn import dimension_from_ratios


def mean_estimate(generator, d, seeds=(0, 1, 2), n=5000, **params):
    return np.mean(
        [TwoNN(error="closed-form", **params).fit(generator(n, d, 2 * d + 6, seed=s)).dimension_ for s in seeds]
    )


@pytest.mark.parametrize("d", [1, 2, 4, 7, 10])
def test_known_dimension_flat(d):
    # Gaussian points in an affine subspace: no curvature, no boundary; mean of three samples
    assert mean_estimate(affine_subspace, d) == pytest.approx(d, rel=0.05)


@pytest.mark.parametrize("generator", [hypersphere, flat_torus])
@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_known_dimension_curved(generator, d):
    assert mean_estimate(generator, d) == pytest.approx(d, rel=0.05)


def test_known_limits_at_high_dimension():
    # A property of TwoNN, recorded so that a change in it is noticed: at N = 5000 the
    # cube's boundary pulls the estimate down at d = 10 (Facco et al. report the same).
    est = mean_estimate(hypercube, 10)
    assert 7.5 < est < 9.5


@pytest.mark.peers
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_dadapy_and_skdim(seed):
    dadapy = pytest.importorskip("dadapy")
    skdim = pytest.importorskip("skdim")
    X = MANIFOLDS["curved_manifold"](3000, 6, 40, seed=seed)
    ours = TwoNN(error="closed-form").fit(X).dimension_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_dadapy = dadapy.Data(X).compute_id_2NN()[0]
        theirs_skdim = skdim.id.TwoNN().fit(X).dimension_
    assert ours == pytest.approx(theirs_dadapy, rel=1e-3)
    assert ours == pytest.approx(theirs_skdim, rel=1e-3)


@pytest.mark.peers
def test_precision_case_equals_float64_dadapy():
    # The failure case: 10,000 points on a 2-D subspace of R^1000, and the same shifted far away.
    dadapy = pytest.importorskip("dadapy")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10_000, 2)) @ rng.standard_normal((2, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = dadapy.Data(X).compute_id_2NN()[0]
    for shift in (0.0, 1e3):
        assert TwoNN(error="closed-form").fit(X + shift).dimension_ == pytest.approx(reference, rel=1e-6)
    assert reference == pytest.approx(2, rel=0.05)


def test_mle_is_closed_form():
    X = hypersphere(3000, 3, 8, seed=5)
    est = TwoNN(method="mle", error="closed-form").fit(X)
    assert est.dimension_ == pytest.approx((len(est.mu_) - 1) / np.log(est.mu_).sum(), rel=1e-12)
    assert est.dimension_ == pytest.approx(3, rel=0.05)
    assert est.fit_quality_ is None
    assert est.dimension_err_ == pytest.approx(est.dimension_ / np.sqrt(len(est.mu_) - 2))


def test_regression_on_exact_pareto_quantiles():
    # mu at the exact quantiles of a Pareto(d) law: the fit must return d (up to the
    # discreteness of F_i = i/N) with a correlation of ~1
    d, n = 3.7, 20000
    F = (np.arange(n) + 0.5) / n
    mu = (1 - F) ** (-1 / d)
    dim, r = dimension_from_ratios(mu, discard_fraction=0.1, method="regression")
    assert dim == pytest.approx(d, rel=1e-3)
    assert r > 0.9999


def test_subsets_use_exact_neighbours():
    # the cheap subset ratios must equal a fresh TwoNN on the same subset
    from layerscope.estimators.neighbors import neighbors_without_duplicates
    from layerscope.estimators.twonn import _subset_ratios

    X = affine_subspace(1500, 3, 10, seed=7)
    est = TwoNN(error="subsets", n_resamples=2, random_state=3).fit(X)
    rng = np.random.default_rng(3)
    members = np.sort(rng.choice(1500, size=int(round(1500 * 0.9)), replace=False))
    fresh = TwoNN(error="closed-form").fit(X[members]).mu_
    nb = neighbors_without_duplicates(X, 8)[0]
    cheap = _subset_ratios(
        torch.from_numpy(X), np.arange(len(X)), nb.indices, nb.distances, np.random.default_rng(3), 0.9
    )
    np.testing.assert_allclose(cheap, fresh, rtol=1e-12)
    # and a point whose listed neighbours all fall out of the subset is searched exactly
    cheap_short = _subset_ratios(
        torch.from_numpy(X), np.arange(len(X)), nb.indices[:, :2], nb.distances[:, :2], np.random.default_rng(3), 0.9
    )
    np.testing.assert_allclose(cheap_short, fresh, rtol=1e-12)
    assert est.dimension_err_ > 0


def test_duplicates_are_dropped_and_do_not_change_the_estimate():
    X = hypersphere(2000, 3, 6, seed=8)
    with_dups = np.vstack([X, X[:100]])
    with pytest.warns(DuplicatePointsWarning):
        est = TwoNN(error="closed-form").fit(with_dups)
    assert est.n_duplicates_ == 100
    assert np.isfinite(est.dimension_)
    assert est.dimension_ == pytest.approx(TwoNN(error="closed-form").fit(X).dimension_, rel=1e-12)


def test_deterministic():
    X = hypersphere(1500, 5, 12, seed=9)
    a, b = twonn(X), twonn(X)
    assert a == b


def test_torch_tensor_input():
    X = hypersphere(1500, 5, 12, seed=9)
    assert twonn(torch.from_numpy(X)).value == pytest.approx(twonn(X).value, rel=1e-12)


@pytest.mark.parametrize(
    "X,params,message",
    [
        (np.full((50, 3), np.nan), {}, "contains NaN values in 50 of 50 rows"),
        (np.vstack([np.ones((3, 2)), [[np.inf, 0]]]), {}, "contains inf values in 1 of 4 rows .first at row 3."),
        (np.ones(10), {}, "must be a 2-D array"),
        (np.zeros((2, 4)), {}, r"has 2 points \(n_samples = 2\); this method needs at least 3"),
        (np.ones((10, 3)), {}, "all 10 points of X are identical"),
        (
            np.random.default_rng(0).normal(size=(30, 2)),
            {"discard_fraction": 1.2},
            r"discard_fraction must lie in \(0, 1\)",
        ),
        (
            np.random.default_rng(0).normal(size=(30, 2)),
            {"discard_fraction": 0},
            r"discard_fraction must lie in \(0, 1\)",
        ),
        (np.random.default_rng(0).normal(size=(30, 2)), {"method": "fit"}, "method must be 'regression' or 'mle'"),
        (np.random.default_rng(0).normal(size=(30, 2)), {"n_resamples": 1}, "n_resamples must be at least 2"),
        (np.array([["a", "b"], ["c", "d"]]), {}, "must be numeric"),
        (np.zeros((0, 3)), {}, "is empty"),
    ],
)
def test_bad_input_errors(X, params, message):
    with pytest.raises(ValueError, match=message):
        TwoNN(**params).fit(X)


def test_lattice_is_refused():
    g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    with pytest.raises(ValueError, match="equally far"):
        TwoNN(error="closed-form").fit(g)


def test_block_analysis_is_stable_and_shaped():
    X = hypersphere(4000, 3, 10, seed=11)
    table = twonn_scale(X, max_blocks=8)
    assert list(table.columns) == ["n_blocks", "block_size", "dimension", "error"]
    assert list(table.n_blocks) == list(range(1, 9))
    assert table.block_size.iloc[-1] == pytest.approx(500)
    # the estimate is stable under subsampling (Ansuini et al.): every block size within 10% of 3
    assert np.allclose(table.dimension, 3, rtol=0.1)
    assert (table.error.iloc[1:] > 0).all()
    with pytest.raises(ValueError, match="blocks of 4 points"):
        twonn_scale(X[:80], max_blocks=20)
