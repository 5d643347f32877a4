"""Three-way verdicts: each claim declared with its effect, direction and smallest effect; Holm's correction."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from layerscope.experiments import EXPERIMENTS
from layerscope.experiments.base import (
    ALPHA,
    SEED_FALSE_POSITIVE,
    Claim,
    Evidence,
    Finding,
    holm,
    over_seeds,
)
from layerscope.store import RunStore
from layerscope.store.record import RunRecord

CLAIM = Claim("c", "an effect", 0.5)


def test_over_seeds_is_a_t_test_against_the_smallest_effect_each_way():
    effects = {0: 0.8, 1: 1.1, 2: 0.9}
    f = over_seeds(CLAIM, {s: Evidence(f"e={e}", e) for s, e in effects.items()})
    p = stats.ttest_1samp(list(effects.values()), 0.5, alternative="greater").pvalue
    assert f.p_holds == pytest.approx(p) and f.p_contradicted == pytest.approx(1 - p)
    assert f.confidence == pytest.approx(1 - p) and f.seeds == 3 and f.effect == pytest.approx(0.9333, abs=1e-3)
    assert f.verdict == ("holds" if p <= ALPHA else "inconclusive")
    assert "seed 0: e=0.8" in f.measured and "seed 2: e=0.9" in f.measured and f.rule == "an effect > 0.5"
    # direction -1: the claim predicts an effect below the smallest that counts
    low = Claim("c", "an effect", -0.3, -1)
    f = over_seeds(low, {0: Evidence("", -0.8), 1: Evidence("", -0.7), 2: Evidence("", -0.9)})
    p = stats.ttest_1samp([-0.8, -0.7, -0.9], -0.3, alternative="less").pvalue
    assert f.p_holds == pytest.approx(p) and f.verdict == "holds"
    with pytest.raises(ValueError, match="direction is"):
        Claim("c", "e", 0.1, 0)


def test_three_verdicts():
    beyond = over_seeds(CLAIM, {s: Evidence("", e) for s, e in enumerate([1.5, 1.6, 1.55])})
    short = over_seeds(CLAIM, {s: Evidence("", e) for s, e in enumerate([0.1, 0.12, 0.09])})
    opposite = over_seeds(CLAIM, {s: Evidence("", e) for s, e in enumerate([-1.0, -1.1, -0.9])})
    # an effect between 0 and the smallest that counts, measured too loosely to decide
    between = over_seeds(CLAIM, {s: Evidence("", e) for s, e in enumerate([0.6, -0.1, 0.3])})
    assert (beyond.verdict, short.verdict, opposite.verdict, between.verdict) == (
        "holds",
        "contradicted",
        "contradicted",
        "inconclusive",
    )
    assert (beyond.holds, short.holds, between.holds) == (True, False, None)
    # one run: a z-test with the effect's standard error
    one = over_seeds(CLAIM, {0: Evidence("m", 0.9, 0.1)})
    assert one.p_holds == pytest.approx(stats.norm.sf(4.0)) and one.verdict == "holds" and one.seeds is None
    assert over_seeds(CLAIM, {0: Evidence("m", 0.3, 0.2)}).verdict == "inconclusive"
    assert over_seeds(CLAIM, {0: Evidence("m", 0.9)}).verdict == "inconclusive"  # no error bar: no test
    assert over_seeds(CLAIM, {0: Evidence("nothing")}).verdict == "not measurable"


def test_pattern_claims_combine_the_seeds_calibrated_tests():
    pattern = Claim("p", "pattern")
    two_of_three = over_seeds(
        pattern, {0: Evidence("", confidence=0.99), 1: Evidence("", confidence=0.97), 2: Evidence("", confidence=0.2)}
    )
    chance = 3 * SEED_FALSE_POSITIVE**2 * (1 - SEED_FALSE_POSITIVE) + SEED_FALSE_POSITIVE**3
    assert two_of_three.p_holds == pytest.approx(chance) and two_of_three.verdict == "holds"
    assert two_of_three.p_contradicted is None and "2 of 3 seeds" in two_of_three.measured
    one_of_three = over_seeds(
        pattern, {0: Evidence("", confidence=0.99), 1: Evidence("", confidence=0.9), 2: Evidence("", confidence=0.5)}
    )
    assert one_of_three.verdict == "inconclusive"  # a phase test cannot show absence
    assert one_of_three.confidence == pytest.approx((1 - SEED_FALSE_POSITIVE) ** 3)
    single = over_seeds(pattern, {0: Evidence("", confidence=0.98)})
    assert single.p_holds == pytest.approx(0.02) and single.verdict == "holds"


def test_holm_adjusts_each_family_step_down():
    claims = [Claim(f"c{i}", "e", 0.0) for i in range(4)]
    raw = [0.01, 0.02, 0.03, 0.5]
    findings = [
        Finding(c.text, "", "holds" if p <= ALPHA else "inconclusive", 1 - p, p_holds=p, p_contradicted=1 - p)
        for c, p in zip(claims, raw)
    ]
    adjusted = holm(findings)
    # by hand: 4 x 0.01 = 0.04, max(0.04, 3 x 0.02) = 0.06, max(0.06, 2 x 0.03) = 0.06, max(0.06, 0.5) = 0.5
    assert [round(1 - f.adjusted, 6) for f in adjusted] == [0.04, 0.06, 0.06, 0.5]
    assert [f.verdict for f in adjusted] == ["holds", "inconclusive", "inconclusive", "inconclusive"]
    assert [f.confidence for f in adjusted] == [f.confidence for f in findings]  # the raw ones are kept


def _write_run(folder, rows, steps):
    store = RunStore(folder)
    store.start_run(RunRecord(folder.name, {"name": folder.name}, status="finished"))
    for step in steps:
        frame = pd.DataFrame(
            [
                {"run_id": folder.name, "step": step, "epoch": 0.0, **{k: v for k, v in r.items() if k != "_step"}}
                for r in rows
                if r["_step"] == step
            ]
        )
        store.write_checkpoint(step, frame)


def _ansuini_quick_folder(root, relu3_trained, relu3_error):
    """A synthetic stored quick-size Ansuini experiment: the five runs, a profile at steps 0 and 10."""
    layers = ["input", "pool1", "pool2", "relu3", "output"]
    widths = [784, 3136, 1568, 512, 10]
    untrained = [12.0, 14.0, 13.0, 10.0, 9.0]
    trained = [12.0, 16.0, 14.0, relu3_trained, 4.0]
    for name in ["width-0.125", "width-0.25", "width-0.5", "width-1.0", "random-labels"]:
        rows = []
        for step, profile in ((0, untrained), (10, trained)):
            for layer, w, v in zip(layers, widths, profile):
                error = relu3_error if layer == "relu3" else 0.1
                rows += [
                    {"_step": step, "split": "train", "layer": layer, "metric": "twonn", "value": v, "error": error},
                    {
                        "_step": step,
                        "split": "train",
                        "layer": layer,
                        "metric": "n_features",
                        "value": w,
                        "error": np.nan,
                    },
                ]
            rows += [
                {"_step": step, "split": "train", "layer": "", "metric": "train_acc", "value": 0.9, "error": 0.01},
                {
                    "_step": step,
                    "split": "test",
                    "layer": "",
                    "metric": "test_acc",
                    "value": 0.8 + 0.01 * len(name),
                    "error": 0.01,
                },
            ]
        _write_run(root / name, rows, (0, 10))
    return root


@pytest.mark.parametrize(
    ("trained", "error", "verdict"),
    [
        (5.0, 0.1, "holds"),  # a drop of 50%, precise
        (9.9, 0.01, "contradicted"),  # a drop of 1%, precise: short of the 10% that counts
        (9.5, 0.4, "inconclusive"),  # a drop of 5%, between 0 and 10%, its interval covers both
    ],
)
def test_a_stored_run_gets_the_verdict_its_effect_and_error_allow(tmp_path, trained, error, verdict):
    folder = _ansuini_quick_folder(tmp_path, trained, error)
    findings = {f.claim: f for f in EXPERIMENTS["ansuini2019"].findings(folder)}
    compress = findings[
        "The trained net's profile ends lower than the untrained one's (the last hidden layer compresses)."
    ]
    assert compress.effect == pytest.approx((10 - trained) / 10)
    assert compress.verdict == verdict, compress.measured
    assert compress.smallest == 0.1 and compress.adjusted is not None and compress.adjusted <= compress.confidence
