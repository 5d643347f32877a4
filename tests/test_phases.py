import numpy as np
import pytest

from layerscope.analysis.phases import ID_PATTERN, LC_PATTERN, detect_phases


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
    curve = np.piecewise(x, [x < a, (x >= a) & (x < b), x >= b],
                         [lambda t: 30 - 3 * t, lambda t: 30 - 3 * a + 4 * (t - a), lambda t: 30 - 3 * a + 4 * (b - a) - 6 * (t - b)])
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
