"""Estimators at the edges: any scale, half and complex input, near-copies, too few points."""

import warnings

import numpy as np
import pytest
import torch

from layerscope.data.manifolds import hypersphere
from layerscope.estimators import ESTIMATORS, DuplicatePointsWarning, TooFewPointsWarning, TwoNN, covariance_spectrum


def power_law_cloud(n=1500, d=120, alpha=1.0, seed=0):
    """Gaussian points whose covariance spectrum falls as rank^-alpha (every estimator is defined on it)."""
    rng = np.random.default_rng(seed)
    scales = np.arange(1, d + 1) ** (-alpha / 2)
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (rng.standard_normal((n, d)) * scales) @ rotation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_is_scale_invariant(name, dtype):
    X = power_law_cloud().astype(dtype)
    values = {}
    for scale in (1e-30, 1.0, 1e30):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DuplicatePointsWarning)
            est = ESTIMATORS[name]().fit((X * dtype(scale)).astype(dtype))
        values[scale] = est.estimate_.value
        assert np.isfinite(values[scale])
    assert values[1e-30] == pytest.approx(values[1.0], rel=1e-6)
    assert values[1e30] == pytest.approx(values[1.0], rel=1e-6)


def test_spectrum_scales_back_and_overflow_is_a_clear_error():
    X = power_law_cloud(400, 30)
    base, _ = covariance_spectrum(X)
    big, _ = covariance_spectrum(X * 2.0**300)
    np.testing.assert_allclose(big, base * 2.0**600, rtol=1e-12)
    with pytest.raises(ValueError, match="exceed.* float64's range"):
        covariance_spectrum(X * 1e300)
    # TwoNN needs only the neighbour distances, which float64 holds at this scale
    assert TwoNN(error="closed-form").fit(X * 1e300).dimension_ == pytest.approx(
        TwoNN(error="closed-form").fit(X).dimension_, rel=1e-9
    )


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_default_error_bars_at_extreme_scales(monkeypatch, scale):
    # the half-splits' longer lists (points short of neighbours in their half) search again among
    # all points: that search must be brought to unit scale too (at 1e200 it indexed a padding -1)
    import layerscope.estimators.neighbors as nbm
    from layerscope.estimators import MLE

    calls = []
    original = nbm._exhaustive
    monkeypatch.setattr(nbm, "_exhaustive", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    X = np.random.default_rng(0).standard_normal((500, 700))
    for estimator in (TwoNN, MLE):
        base, far = estimator().fit(X), estimator().fit(X * scale)
        assert far.dimension_ == pytest.approx(base.dimension_, rel=1e-9)
        assert far.dimension_err_ == pytest.approx(base.dimension_err_, rel=0.05)  # fast distances past k
    assert calls  # the longer lists were searched


@pytest.mark.parametrize("name", ["pc_id", "participation_ratio", "alpha", "twonn"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(name, dtype):
    X = torch.from_numpy(power_law_cloud(600, 60)).to(dtype)
    ours = ESTIMATORS[name]().fit(X).estimate_.value
    reference = ESTIMATORS[name]().fit(X.float()).estimate_.value
    assert ours == pytest.approx(reference, rel=1e-9)
    if dtype == torch.float16:
        assert ESTIMATORS[name]().fit(X.numpy()).estimate_.value == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_complex_input_is_refused(name):
    X = power_law_cloud(300, 20) + 1j
    with pytest.raises(ValueError, match="complex"):
        ESTIMATORS[name]().fit(X)
    with pytest.raises(ValueError, match="complex"):
        ESTIMATORS[name]().fit(torch.from_numpy(X))


def near_copies(seed=0):
    X = hypersphere(2000, 5, 20, seed=seed).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    rms = np.sqrt((X.astype(np.float64) ** 2).sum(1).mean())
    idx = rng.choice(len(X), 100, replace=False)
    noise = (1e-6 * rms / np.sqrt(20)) * rng.standard_normal((100, 20))  # float32 rounding level
    return X, np.vstack([X, X[idx] + noise.astype(np.float32)]).astype(np.float32)


def test_near_copies_in_float32_are_dropped_by_default():
    X, Y = near_copies()
    clean = TwoNN(error="closed-form").fit(X).dimension_
    with pytest.warns(DuplicatePointsWarning, match="dropped 100 duplicate points of 2100"):
        est = TwoNN(error="closed-form").fit(Y)
    assert est.n_duplicates_ == 100
    assert est.dimension_ == pytest.approx(clean, rel=1e-9)


def test_near_copies_above_the_tolerance_are_warned_about():
    _, Y = near_copies()
    with pytest.warns(DuplicatePointsWarning, match="near-copies of points"):
        est = TwoNN(error="closed-form", duplicate_tol=1e-9).fit(Y)
    assert est.dimension_ < 4  # the bias the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no false alarm on clean data
        for seed in range(5):
            TwoNN(error="closed-form").fit(hypersphere(2000, 5, 20, seed=seed))


@pytest.mark.parametrize("n", [3, 4, 19])
def test_too_few_points_for_an_error_bar(n):
    X = np.random.default_rng(0).standard_normal((n, 50))
    with pytest.warns(TooFewPointsWarning, match=f"TwoNN on {n} points: too few for an error bar"):
        est = TwoNN().fit(X)
    assert np.isnan(est.dimension_err_) and est.replicates_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(TwoNN().fit(np.random.default_rng(0).standard_normal((20, 5))).dimension_err_)
