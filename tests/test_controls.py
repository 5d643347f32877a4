"""The papers' claims against their controls, and the confirmatory round's frozen protocol."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from test_verdicts import _write_run

import layerscope.experiments.base as base
from layerscope.experiments import EXPERIMENTS, ansuini2019, humayun2024
from layerscope.experiments.reproduce import reproduce

_LAYERS = ["input", "features.0", "features.1", "features.2", "pool", "output"]
_WIDTHS = [784, 4096, 2048, 1024, 64, 10]


def _profile_rows(step, ids, errors=0.2):
    rows = []
    for layer, w, v in zip(_LAYERS, _WIDTHS, ids):
        rows += [
            {"_step": step, "split": "test", "layer": layer, "metric": "twonn", "value": v, "error": errors},
            {"_step": step, "split": "test", "layer": layer, "metric": "n_features", "value": w, "error": np.nan},
        ]
    return rows + [
        {"_step": step, "split": "train", "layer": "", "metric": "train_acc", "value": 0.9, "error": 0.01},
        {"_step": step, "split": "test", "layer": "", "metric": "test_acc", "value": 0.1 + step / 20, "error": 0.01},
    ]


def _medium_deep_nets(root, rng):
    """A stored medium Ansuini experiment reduced to its deep nets: three seeds; untrained nets (step 0 of the trained
    run, and the untrained twins) peak mid-network, as untrained nets of these depths do; training makes a higher
    peak and a low last hidden layer. The input's ID is the probe inputs' (the same for every net)."""

    def noisy(ids):
        return np.array(ids) + np.r_[0, rng.normal(0, 0.1, 5)]

    for seed in range(3):
        for net in ("vgg", "resnet"):
            untrained = noisy([12.0, 14.5, 16.0, 15.5, 14.0, 7.0])
            twin = noisy([12.0, 14.5, 16.0, 15.5, 14.0, 7.0])
            trained = noisy([12.0, 19.0, 17.0, 13.0, 8.0, 5.0])
            _write_run(root / f"{net}-seed{seed}", _profile_rows(0, untrained) + _profile_rows(10, trained), (0, 10))
            _write_run(root / f"{net}-untrained-seed{seed}", _profile_rows(0, twin) + _profile_rows(1, twin), (0, 1))
    return root


def test_untrained_profiles_do_not_pass_the_hunchback_rule(tmp_path):
    folder = _medium_deep_nets(tmp_path, np.random.default_rng(0))
    findings = {f.claim: f for f in EXPERIMENTS["ansuini2019"].findings(folder)}
    for net in ("vgg", "resnet"):
        made = next(f for c, f in findings.items() if c.startswith("Training makes the hunchback") and net in c)
        control = next(f for c, f in findings.items() if c.startswith("Control: an untrained net") and net in c)
        assert made.verdict == "holds", made.measured
        # the same rule with an untrained net in the trained one's place: not a hunchback
        assert control.verdict in ("contradicted", "inconclusive"), control.measured
        assert abs(control.effect) < 0.1
    # ... although the untrained profile alone has a peak mid-network well above its feet (a shape-only rule,
    # the one these findings replaced, passed it)
    ids = np.array([12.0, 14.5, 16.0, 15.5, 14.0, 7.0])
    h, _, peak = ansuini2019._hunch(ids, np.full(6, 0.2), _LAYERS, "pool")
    assert h == pytest.approx((16 - 14) / 12) and peak == "features.1"
    assert (ids[1:-1].max() - ids[0]) / ids[0] > 0.1


def test_random_labels_need_a_fitted_net_and_a_true_label_twin():
    def run(noise_fit, ids):
        rows = []
        for step in (0, 100):
            rows += [
                {"step": step, "split": "train", "layer": "pool", "metric": "twonn", "value": ids, "error": 0.3},
                {"step": step, "split": "train", "layer": "", "metric": "train_acc", "value": noise_fit, "error": 0.0},
            ]
        return pd.DataFrame(rows)

    fitted = ansuini2019._random_labels(run(0.98, 18.0), run(1.0, 8.0), "pool")
    assert fitted.effect == pytest.approx(10 / 8) and "twin 8.0" in fitted.measured
    unfitted = ansuini2019._random_labels(run(0.16, 9.0), run(1.0, 8.0), "pool")
    assert unfitted.effect is None and "not measurable" in unfitted.measured
    finding = base.over_seeds(ansuini2019._RANDOM, {0: unfitted, 1: unfitted})
    assert finding.verdict == "not measurable"


def test_half_rise_is_interpolated_in_log_step():
    steps = np.unique(np.geomspace(1, 1e5, 30).astype(int))
    midpoint = 1000.0
    curve = 0.1 + 0.8 / (1 + np.exp(-3 * (np.log(steps + 1) - np.log(midpoint + 1))))
    assert humayun2024.half_rise(steps, curve) == pytest.approx(midpoint, rel=0.15)
    assert humayun2024.half_rise(steps, np.full(len(steps), 0.5)) is None  # no rise: no half-rise


def test_robust_accuracy_bounded_by_a_late_clean_accuracy_is_not_delayed_robustness():
    steps = np.unique(np.geomspace(1, 1e5, 30).astype(int))

    def logistic(mid):
        return 1 / (1 + np.exp(-3 * (np.log1p(steps) - np.log1p(mid))))

    clean = 0.1 + 0.8 * logistic(5000)  # generalization arrives late ...

    def run(robust):
        return pd.DataFrame(
            [{"step": s, "split": "test", "layer": "", "metric": "test_acc", "value": c} for s, c in zip(steps, clean)]
            + [
                {"step": s, "split": "test", "layer": "", "metric": "robust_acc", "value": r}
                for s, r in zip(steps, robust)
            ]
        )

    same_time = humayun2024._delayed_robustness(run(0.6 * clean))  # ... and robust accuracy is a share of it
    assert abs(same_time.effect) < 0.2
    later = humayun2024._delayed_robustness(run(0.6 * clean * logistic(50000)))
    assert later.effect > np.log(2), later.measured
    never = humayun2024._delayed_robustness(run(np.zeros(len(steps))))
    assert never.effect is None and "robust accuracy rose less" in never.measured


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_round_has_the_same_protocol_and_the_frozen_one_is_current(name):
    experiment = EXPERIMENTS[name]
    exploratory = base.protocol(experiment)
    assert base.protocol(experiment, seeds=base.CONFIRMATORY_SEEDS) == exploratory
    by_seed = base.by_seed({c.name: c for c in experiment.configs("medium", seeds=base.CONFIRMATORY_SEEDS)})
    assert set(by_seed) == set(base.CONFIRMATORY_SEEDS)
    fixed = base.frozen().get(name)
    if fixed is not None:  # a frozen medium size: changing its configs or claims needs a visible re-freeze
        assert {k: fixed[k] for k in ("configs", "rules")} == exploratory, (
            f"{name}'s medium configs or claims changed since {fixed['frozen_on']}"
        )


def test_confirmatory_round_runs_only_what_was_frozen(tmp_path, monkeypatch):
    e = EXPERIMENTS["ansuini2019"]
    with pytest.raises(ValueError, match="round must be one of exploratory, confirmatory"):
        reproduce("ansuini2019", "medium", tmp_path, round="final")
    with pytest.raises(ValueError, match="a confirmatory round is of the medium size"):
        reproduce("ansuini2019", "quick", tmp_path, round="confirmatory")
    frozen_file = tmp_path / "frozen.json"
    monkeypatch.setattr(base, "FROZEN_FILE", frozen_file)
    with pytest.raises(ValueError, match="not frozen yet"):
        reproduce("ansuini2019", "medium", tmp_path, round="confirmatory")
    stale = {**base.protocol(e), "rules": "0" * 64, "frozen_on": "2026-12-02"}
    frozen_file.write_text(json.dumps({"ansuini2019": stale}))
    with pytest.raises(ValueError, match="medium rules changed since they were frozen on 2026-12-02"):
        reproduce("ansuini2019", "medium", tmp_path, round="confirmatory")
    assert not (tmp_path / "ansuini2019-medium-confirmatory").exists()


@pytest.mark.xdist_group("ray")
def test_protocol_is_stored_with_the_runs(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    from test_experiments import tiny_configs, tiny_findings

    tiny = base.Experiment(
        "tiny", "A tiny paper", lambda size, seeds=base.SEEDS: tiny_configs(size), tiny_findings, lambda f: Figure()
    )
    monkeypatch.setitem(EXPERIMENTS, "tiny", tiny)
    monkeypatch.setattr(base, "FROZEN_FILE", tmp_path / "frozen.json")
    (tmp_path / "frozen.json").write_text(json.dumps({"tiny": {**base.protocol(tiny), "frozen_on": "2026-12-02"}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = reproduce("tiny", "medium", tmp_path / "runs", round="confirmatory")
    assert folder.name == "tiny-medium-confirmatory"
    record = json.loads((folder / "protocol.json").read_text())
    assert record["round"] == "confirmatory" and record["matches_frozen"] is True
    assert record["configs"] == base.protocol(tiny)["configs"]
    assert "--round confirmatory" in (folder / "findings.md").read_text()


def test_batchnorm_statistics_re_estimated_on_the_probe_inputs():
    import torch
    from torch import nn

    from layerscope.probes.geometry import BN_PROBE, GeometryProbe, GeometrySettings, with_probe_statistics

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 3))
    x = torch.randn(300, 5) * 3 + 1
    probed = with_probe_statistics(model, x, batch_size=64)
    hidden = model[0](x).detach()
    torch.testing.assert_close(probed[1].running_mean, hidden.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(probed[1].running_var, hidden.var(0), atol=0, rtol=0.05)  # within-batch variances
    # the net itself keeps its statistics (at initialisation 0 and 1: in eval mode BatchNorm is the identity)
    assert model[1].running_mean.abs().max() == 0 and model[1].running_var.eq(1).all() and not probed.training
    rows = GeometryProbe({"train": x}, GeometrySettings(estimators=["twonn"], batchnorm="both"))(model, 0)
    by_split = {(r.split, r.layer): r.value for r in rows if r.metric == "twonn"}
    assert {s for s, _ in by_split} == {"train", f"train{BN_PROBE}"}
    assert by_split["train", "input"] == by_split[f"train{BN_PROBE}", "input"]
    assert by_split["train", "2"] != by_split[f"train{BN_PROBE}", "2"]  # the statistics change what is read
    only = GeometryProbe({"train": x}, GeometrySettings(estimators=["twonn"], batchnorm="probe"))(model, 0)
    assert {r.split for r in only} == {"train"} and {(r.layer, r.value) for r in only if r.metric == "twonn"} == {
        (layer, v) for (s, layer), v in by_split.items() if s == f"train{BN_PROBE}"
    }
    plain = nn.Sequential(nn.Linear(5, 4), nn.ReLU())  # no BatchNorm: nothing to re-estimate, one reading
    assert {
        r.split for r in GeometryProbe({"t": x}, GeometrySettings(estimators=["twonn"], batchnorm="both"))(plain, 0)
    } == {"t"}
