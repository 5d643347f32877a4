import numpy as np
import pytest

from layerscope.estimators import (
    PCAID,
    ParticipationRatio,
    PowerLaw,
    covariance_spectrum,
    participation_ratio,
    pc_id,
    power_law,
)


def gaussian_with_spectrum(eigenvalues, n, seed=0):
    """Gaussian points whose population covariance has the given eigenvalues, randomly rotated."""
    rng = np.random.default_rng(seed)
    d = len(eigenvalues)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (rng.standard_normal((n, d)) * np.sqrt(eigenvalues)) @ q.T


def test_covariance_spectrum_equals_numpy():
    X = gaussian_with_spectrum(np.linspace(1, 5, 8), 300)
    eig, n_const = covariance_spectrum(X)
    np.testing.assert_allclose(eig, np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1], rtol=1e-10)
    assert n_const == 0
    wide = gaussian_with_spectrum(np.ones(50), 20)  # fewer points than features: the Gram matrix route
    eig_wide, _ = covariance_spectrum(wide)
    np.testing.assert_allclose(eig_wide, np.sort(np.linalg.eigvalsh(np.cov(wide.T)))[::-1][:20], atol=1e-10)


def test_pc_id_counts_components_exactly():
    # variances 60, 25, 8, 4, 3 (cumulative 60, 85, 93, 97, 100%): 90% needs 3 components, 95% needs 4
    X = gaussian_with_spectrum(np.array([60.0, 25, 8, 4, 3]), 200_000, seed=1)
    assert PCAID(variance=0.9, standardize=False).fit(X).dimension_ == 3
    assert PCAID(variance=0.95, standardize=False).fit(X).dimension_ == 4
    # four points whose sample spectrum is exactly (3, 1) up to a factor: 75% is one component, 76% two
    Y = np.array([[3**0.5, 0], [-(3**0.5), 0], [0, 1.0], [0, -1]])
    assert PCAID(variance=0.75, standardize=False).fit(Y).dimension_ == 1
    assert PCAID(variance=0.76, standardize=False).fit(Y).dimension_ == 2


def test_pc_id_is_a_count_not_an_index():
    # an isotropic 10-D Gaussian in 10 dimensions needs about 9 of 10 components for 90%
    X = np.random.default_rng(2).standard_normal((50_000, 10))
    assert pc_id(X).value == 9


def test_pc_id_standardizes_and_drops_constant_features():
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.standard_normal(1000) * 1000, rng.standard_normal(1000), np.zeros(1000)])
    est = PCAID(variance=0.9, standardize=True).fit(X)
    assert est.n_constant_features_ == 1
    assert est.dimension_ == 2  # after standardising, two equal variances
    assert PCAID(variance=0.9, standardize=False).fit(X).dimension_ == 1


def test_participation_ratio_closed_form():
    lam = np.array([4.0, 2.0, 1.0, 1.0])
    X = gaussian_with_spectrum(lam, 400_000, seed=4)
    expected = lam.sum() ** 2 / (lam**2).sum()  # 64 / 22
    assert ParticipationRatio().fit(X).dimension_ == pytest.approx(expected, rel=0.01)
    assert participation_ratio(np.random.default_rng(5).standard_normal((100_000, 6))).value == pytest.approx(
        6, rel=0.01
    )


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_power_law_exact_spectrum(alpha):
    spectrum = 3.0 * np.arange(1, 1001) ** -alpha
    fit = PowerLaw(n_min=10, n_max=500).fit_spectrum(spectrum)
    assert fit.alpha_ == pytest.approx(alpha, rel=1e-12)
    assert fit.fit_quality_ == pytest.approx(1.0)
    assert fit.intercept_ == pytest.approx(np.log(3.0))
    assert fit.fit_range_ == (10, 500)


def test_power_law_sampled_data():
    # 200-D Gaussian data with lambda_n = n^-1; the sample spectrum recovers alpha over n = 5..100
    lam = np.arange(1, 201) ** -1.0
    X = gaussian_with_spectrum(lam, 20_000, seed=6)
    est = PowerLaw(n_min=5, n_max=100).fit(X)
    assert est.alpha_ == pytest.approx(1.0, abs=0.05)
    assert est.alpha_err_ < 0.05
    assert est.fit_quality_ > 0.99
    assert power_law(X, n_min=5, n_max=100).value == est.alpha_


def test_power_law_weights_favour_low_ranks():
    # a kink at n = 100: slope 1 before, 3 after; 1/n weights keep the fit near 1
    n = np.arange(1, 501)
    spectrum = np.where(n <= 100, n**-1.0, 100.0**2 * n**-3.0)
    assert PowerLaw(n_min=1, n_max=500).fit_spectrum(spectrum).alpha_ < 1.6


def test_power_law_range_is_clipped_and_checked():
    X = gaussian_with_spectrum(np.arange(1, 31) ** -1.0, 5000, seed=7)
    est = PowerLaw(n_min=2, n_max=500).fit(X)
    assert est.fit_range_ == (2, 30)
    with pytest.raises(
        ValueError, match="the spectrum has 30 non-zero eigenvalues, too few for a fit over ranks 29..500"
    ):
        PowerLaw(n_min=29, n_max=500).fit(X)
    with pytest.raises(ValueError, match="n_max must be an integer >= 12"):
        PowerLaw(n_min=10, n_max=11).fit(X)
    with pytest.raises(ValueError, match="sorted descending"):
        PowerLaw().fit_spectrum(np.arange(100.0))


def test_spectrum_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        pc_id(np.array([[1.0, np.nan], [2, 3], [4, 5]]))
    with pytest.raises(ValueError, match="variance must lie in"):
        PCAID(variance=1.5).fit(np.eye(3))


def test_spectrum_survives_a_gram_matrix_that_breaks_float32_lapack():
    # torch 2.13's float32 eigvalsh with 2 threads returned NaN on one real Gram matrix
    # (pool2 of Ansuini's CNN, 1000 x 1000), which no small matrix reproduces: the guard
    # is checked instead, a float32 solver that returns NaN is followed by float64.
    import torch

    from layerscope.estimators import spectrum

    calls = []
    real = torch.linalg.eigvalsh

    def flaky(a, *args, **kwargs):
        calls.append(a.dtype)
        out = real(a, *args, **kwargs)
        return out * float("nan") if a.dtype == torch.float32 else out

    X = np.random.default_rng(0).standard_normal((50, 20)).astype(np.float32)
    reference, _ = spectrum.covariance_spectrum(X)
    torch.linalg.eigvalsh = flaky
    try:
        guarded, _ = spectrum.covariance_spectrum(X)
    finally:
        torch.linalg.eigvalsh = real
    assert calls == [torch.float32, torch.float64]
    np.testing.assert_allclose(guarded, reference, rtol=1e-4, atol=1e-6 * reference[0])
