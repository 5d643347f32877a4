import numpy as np
import pytest

from layerscope.analysis.phases import ID_PATTERN, LC_PATTERN, THRESHOLD, detect_phases


def log_steps(n=40, last=20000):
    return np.unique(np.round(np.concatenate([[0], np.logspace(0, np.log10(last), n)])).astype(int))


@pytest.mark.parametrize("seed", range(5))
def test_id_peak_found_on_noisy_curve(seed):
    rng = np.random.default_rng(seed)
    steps = log_steps()
    x = np.log1p(steps)
    peak = np.log1p(300)
    curve = np.where(x < peak, 10 + 2 * x, 10 + 2 * peak - 3 * (x - peak)) + rng.normal(0, 0.5, len(x))
    expansion, compression = detect_phases(steps, curve, ID_PATTERN)
    assert 150 <= expansion.end_step <= 600 and compression.start_step == expansion.end_step
    assert expansion.slope > 0 > compression.slope
    assert min(expansion.confidence, compression.confidence) > 0.99


@pytest.mark.parametrize("seed", range(5))
def test_lc_three_phases_on_noisy_curve(seed):
    rng = np.random.default_rng(seed)
    steps = log_steps(60)
    x = np.log1p(steps)
    a, b = np.log1p(50), np.log1p(2000)
    curve = np.piecewise(
        x,
        [x < a, (x >= a) & (x < b), x >= b],
        [lambda t: 30 - 3 * t, lambda t: 30 - 3 * a + 4 * (t - a), lambda t: 30 - 3 * a + 4 * (b - a) - 6 * (t - b)],
    )
    curve = curve + rng.normal(0, 0.7, len(x))
    d1, up, d2 = detect_phases(steps, curve, LC_PATTERN)
    assert 25 <= d1.end_step <= 100
    assert 1000 <= up.end_step <= 4000
    assert (d1.name, up.name, d2.name) == ("descent", "ascent", "descent")
    assert min(p.confidence for p in (d1, up, d2)) > 0.99


def test_low_confidence_without_a_real_turn():
    rng = np.random.default_rng(0)
    steps = log_steps()
    for _ in range(5):
        flat = 5 + rng.normal(0, 1.0, len(steps))
        try:
            phases = detect_phases(steps, flat, ID_PATTERN)
        except ValueError as err:  # no fit with those slope signs at all: the pattern is absent
            assert "no fit of the pattern" in str(err)
            continue
        assert min(p.confidence for p in phases) < 0.99


def test_bad_input():
    with pytest.raises(ValueError, match="too few"):
        detect_phases([0, 1, 2], [1, 2, 1], LC_PATTERN)
    with pytest.raises(ValueError, match="unknown phase name 'wobble'"):
        detect_phases(range(10), range(10), ("wobble",))
    with pytest.raises(ValueError, match="NaN"):
        detect_phases(range(10), [np.nan] * 10)
    with pytest.raises(ValueError, match="no fit of the pattern"):
        detect_phases(range(12), np.arange(12.0), ("descent",))


def twelve_steps():
    return np.unique(np.round(np.concatenate([[0], np.logspace(0, 3, 11)])).astype(int))


@pytest.mark.parametrize("pattern", [ID_PATTERN, LC_PATTERN])
def test_a_constant_curve_has_no_phases(pattern):
    with pytest.raises(ValueError, match="does not vary: it has no phases"):
        detect_phases(log_steps(10), np.full(11, 12.34), pattern)
    with pytest.raises(ValueError, match="does not vary"):
        detect_phases(log_steps(10), np.full(11, 12.34), pattern, errors=np.full(11, 0.1))


@pytest.mark.parametrize("known", [True, False])
def test_false_positives_on_null_curves_at_most_5_percent(known):
    # 300 null curves (flat and monotone, errors given or not): 5% expected, 11% (the old test's rate) would give ~33
    rng = np.random.default_rng(1)
    steps = twelve_steps()
    x = np.log1p(steps) / np.log1p(steps[-1])
    hits = 0
    for i in range(300):
        trend = (0, 4, -4)[i % 3] * x
        y = 7 + trend + rng.standard_normal(len(x))
        try:
            hits += (
                detect_phases(steps, y, ID_PATTERN, errors=np.ones(len(x)) if known else None, seed=i)[0].confidence
                >= THRESHOLD
            )
        except ValueError:
            pass
    assert hits / 300 <= 0.07, hits


def test_a_hunch_of_4_error_bars_is_found_with_its_turn():
    rng = np.random.default_rng(2)
    steps = twelve_steps()
    x = np.log1p(steps) / np.log1p(steps[-1])
    turn = steps[6]
    found, covered = 0, 0
    for i in range(40):
        y = 4 * np.minimum(x / x[6], (1 - x) / (1 - x[6])) + rng.normal(0, 0.5, len(x))
        expansion, compression = detect_phases(steps, y, ID_PATTERN, errors=np.full(len(x), 0.5), seed=i)
        found += compression.confidence >= THRESHOLD
        covered += compression.start_interval[0] <= turn <= compression.start_interval[1]
        assert compression.start_interval[0] <= compression.start_step <= compression.start_interval[1]
    assert found >= 36 and covered >= 32


def test_same_seed_same_confidence():
    rng = np.random.default_rng(3)
    steps = twelve_steps()
    y = rng.standard_normal(len(steps))
    a = detect_phases(steps, y + np.linspace(0, 1, len(y)) ** 0.5, ID_PATTERN, seed=5)
    b = detect_phases(steps, y + np.linspace(0, 1, len(y)) ** 0.5, ID_PATTERN, seed=5)
    assert a == b


def test_a_plateau_that_tilts_up_by_a_hair_before_a_drop_is_not_an_expansion():
    # A curve measured on layerscope's own runs (MLP on MNIST-1D, ID of the last hidden layer):
    # flat to 1e-3 for 10 steps, then a drop in two stages. The first phase's unconstrained fit
    # tilts up by a hair (slope 0.03 per log step against errors of 0.37); the null "a plateau, then a
    # drop" must be fitted with its flat phase exactly, or this reads as expansion then compression
    # (it did: confidence 0.99).
    steps = [0, 1, 2, 3, 5, 7, 9, 12, 17, 23, 31, 42, 58, 79, 108, 148, 202, 275, 376, 514, 703, 960]
    values = [
        17.666,
        17.667,
        17.666,
        17.669,
        17.668,
        17.668,
        17.663,
        17.631,
        17.472,
        17.159,
        17.126,
        16.727,
        15.163,
        12.708,
        10.504,
        9.660,
        9.467,
        7.346,
        7.063,
        7.179,
        7.038,
        6.882,
    ]
    errors = [
        0.37,
        0.37,
        0.37,
        0.37,
        0.37,
        0.37,
        0.36,
        0.36,
        0.36,
        0.34,
        0.33,
        0.44,
        0.33,
        0.25,
        0.22,
        0.18,
        0.18,
        0.20,
        0.12,
        0.15,
        0.14,
        0.17,
    ]
    expansion, compression = detect_phases(steps, values, ID_PATTERN, errors=errors)
    assert expansion.slope < 0.05 and compression.confidence < 0.8
    # Two straight phases do not describe this curve (a plateau, a drop in two stages, a plateau): the best
    # fit's residuals are about 5 times its errors (chi2/dof 23), and the tests say so and widen by it. The same
    # curve with a rise of 3 error bars over the first steps gains confidence in its expansion, but a rise of 3
    # of its given errors is about 0.6 of its real scatter: not enough to call.
    assert expansion.chi2_dof > 10 and expansion.errors == "independent"
    risen = [v + (1.1 if 3 <= s <= 12 else 0.0) + (0.6 if s in (2, 17) else 0.0) for s, v in zip(steps, values)]
    widened = detect_phases(steps, risen, ID_PATTERN, errors=errors)
    assert widened[0].phase_confidence > expansion.phase_confidence and widened[0].confidence < THRESHOLD


def _found(shape, pattern, n_points, curves, last=40000, seed=0):
    """How often the pattern is found (confidence >= THRESHOLD) on ``curves`` noisy copies of ``shape``
    (x in 0..1 over log-spaced checkpoints; unit errors, given)."""
    steps = np.unique(np.r_[0, np.geomspace(1, last, n_points - 1).astype(int)])
    x = np.log1p(steps) / np.log1p(steps[-1])
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(curves):
        y = shape(x) + rng.standard_normal(len(x))
        try:
            hits += detect_phases(steps, y, pattern, errors=np.ones(len(x)), seed=i)[0].confidence >= THRESHOLD
        except ValueError:  # no fit of the pattern's signs at all
            pass
    return hits / curves


@pytest.mark.parametrize(
    "name,shape",
    [
        # the shapes a referee found passing as "descent, ascent, descent" in 63-100% of draws: one phase flat
        ("flat, rise, fall", lambda x: 10 * np.interp(x, [0, 0.33, 0.67, 1], [0, 0, 1, 0])),
        ("fall, rise, flat", lambda x: 10 * np.interp(x, [0, 0.33, 0.67, 1], [1, 0, 1, 1])),
    ],
)
def test_a_three_phase_pattern_with_a_flat_phase_is_not_found(name, shape):
    # 29 log-spaced checkpoints to 40k steps, a rise of 10 error bars; 40 curves: at the 5% level a test
    # that can tell 63% from 5% (before the intersection-union test, 98-100% of these passed)
    assert _found(shape, LC_PATTERN, 29, 40) <= 0.125


@pytest.mark.parametrize(
    "name,shape",
    [
        ("plateau, then a fall", lambda x: 6 * np.interp(x, [0, 0.5, 1], [1, 1, 0])),
        ("rise, then a plateau", lambda x: 6 * np.interp(x, [0, 0.5, 1], [0, 1, 1])),
        ("flat", lambda x: 0 * x),
    ],
)
def test_a_two_phase_pattern_with_a_phase_missing_is_rarely_found(name, shape):
    # 10 checkpoints, 150 curves: 5% expected at most; 0.09 is two and a half standard errors above
    assert _found(shape, ID_PATTERN, 10, 150, seed=7) <= 0.09


def test_power_when_every_phase_is_there():
    assert _found(lambda x: 6 * np.interp(x, [0, 0.5, 1], [0, 1, 0]), ID_PATTERN, 12, 40) >= 0.9
    assert _found(lambda x: 6 * np.interp(x, [0, 0.33, 0.67, 1], [1, 0, 1, 0]), LC_PATTERN, 29, 20) >= 0.9


def test_each_phase_has_its_own_confidence_and_the_pattern_the_weakest():
    steps = log_steps(30)
    x = np.log1p(steps) / np.log1p(steps[-1])
    # a clear rise, and a fall of one error bar: the fall is the weak phase
    y = np.interp(x, [0, 0.6, 1], [0, 8, 7.5]) + np.random.default_rng(3).normal(0, 0.5, len(x))
    expansion, compression = detect_phases(steps, y, ID_PATTERN, errors=np.full(len(x), 0.5))
    assert expansion.phase_confidence > 0.99
    assert compression.phase_confidence < expansion.phase_confidence
    assert (
        expansion.confidence == compression.confidence == min(expansion.phase_confidence, compression.phase_confidence)
    )


def test_errors_that_are_too_small_are_widened_by_the_residuals():
    # null curves (a rise, then a plateau) with errors given 3 times too small: chi2/dof about 9 is reported and
    # the test widens by it, so the pattern is found no more often than with the right errors
    from layerscope.analysis.calibration import NULLS, log_steps, simulate

    shape = next(s for s in NULLS if s.name == "rise, then a plateau")
    steps = log_steps(12)
    rng = np.random.default_rng(11)
    hits, chi2 = 0, []
    for i in range(150):
        values, kwargs = simulate(shape, 5, steps, "given", rng)
        try:
            phases = detect_phases(steps, values, ID_PATTERN, errors=kwargs["errors"] / 3, seed=i)
        except ValueError:
            continue
        hits += phases[0].confidence >= THRESHOLD
        chi2.append(phases[0].chi2_dof)
    assert 5 < np.median(chi2) < 14
    assert hits / 150 <= 0.08, hits


def test_joint_covariance_from_replicates():
    from layerscope.analysis.phases import joint_covariance

    rng = np.random.default_rng(0)
    n = 12
    truth = 0.8 ** np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    scale = np.linspace(0.5, 2, n)
    draws = (np.linalg.cholesky(truth) @ rng.standard_normal((n, 4000))) * scale[:, None]
    many = joint_covariance(draws)
    assert np.allclose(many / np.outer(scale, scale), truth, atol=0.06)
    # 20 replicates of 29 checkpoints: a singular sample covariance; the shrunk one is positive definite, its
    # diagonal the squared errors given
    few = rng.standard_normal((29, 20))
    errors = np.full(29, 0.3)
    cov = joint_covariance(few, errors)
    assert np.all(np.linalg.eigvalsh(cov) > 0) and np.allclose(np.diag(cov), errors**2)
    with pytest.raises(ValueError, match="replicates must be"):
        joint_covariance(np.zeros((5, 20)))


def test_correlated_noise_is_weighted_by_the_joint_replicates():
    # errors correlated across checkpoints (the same probe points at every checkpoint): given the joint
    # replicates, the fits are weighted by their covariance and the simulated curves share it
    from layerscope.analysis.calibration import NULLS, log_steps, simulate

    steps = log_steps(29)
    rng = np.random.default_rng(5)
    flat = next(s for s in NULLS if s.name == "flat")
    values, kwargs = simulate(flat, 1, steps, "joint", rng)
    hunch = 6 * np.minimum(np.linspace(0, 2, 29), np.linspace(2, 0, 29))
    joint = detect_phases(steps, values + hunch, ID_PATTERN, replicates=kwargs["replicates"])
    assert joint[0].errors == "joint" and joint[0].chi2_dof is not None
    # replicates that cannot give a covariance (a row of zeros) fall back to the errors
    bad = kwargs["replicates"].copy()
    bad[3] = 0
    fallback = detect_phases(steps, values + hunch, ID_PATTERN, errors=np.ones(29), replicates=bad)
    assert fallback[0].errors == "independent"


@pytest.mark.parametrize(
    ("name", "size", "pattern", "n", "noise"),
    [
        # the rows of benchmarks/phases.py that came closest to 5% on its tuning seed, one per kind of noise
        ("fall, plateau, fall", 5, LC_PATTERN, 29, "estimated"),
        ("rise, then a plateau", 5, ID_PATTERN, 10, "estimated"),
        ("plateau, then a fall", 3, ID_PATTERN, 12, "joint"),
        ("fall, rise, flat", 5, LC_PATTERN, 29, "joint"),
        ("flat, rise, fall", 5, LC_PATTERN, 29, "none"),
    ],
)
def test_false_positives_at_the_threshold_on_the_hardest_nulls(name, size, pattern, n, noise):
    # 200 fresh curves (a seed the benchmark did not use): at most 5% expected; 0.085 is 2.5 standard errors above
    from layerscope.analysis.calibration import NULLS, confidences, log_steps

    shape = next(s for s in NULLS if s.name == name)
    found = confidences(shape, size, pattern, log_steps(n), noise, 200, seed=17) >= THRESHOLD
    assert found.mean() <= 0.085, found.mean()


@pytest.mark.parametrize("noise", ["given", "estimated", "joint"])
@pytest.mark.parametrize("pattern", [ID_PATTERN, LC_PATTERN])
def test_power_at_6_error_bars_over_12_checkpoints(pattern, noise):
    from layerscope.analysis.calibration import PATTERNS, confidences, log_steps

    found = confidences(PATTERNS[pattern], 6, pattern, log_steps(12), noise, 100, seed=17) >= THRESHOLD
    assert found.mean() >= 0.75, found.mean()
