"""Model probes at the edges: reused modules, diverged models, float64 models, callers inside no_grad."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from layerscope.config import parse_config
from layerscope.probes._model import NonFiniteOutputError
from layerscope.probes.attacks import RobustnessProbe, robust_accuracy
from layerscope.probes.csr import CSRProbe, critical_sample_ratio
from layerscope.probes.geometry import GeometrySettings, ProbeWarning
from layerscope.probes.local_complexity import LocalComplexityProbe, local_complexity
from layerscope.probes.partition2d import partition2d
from layerscope.runner import execute
from layerscope.store import RunStore, load
from layerscope.tracker import Tracker


class Reused(nn.Module):
    """Two hidden layers sharing one ReLU module."""

    def __init__(self, width=12):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(2, width), nn.Linear(width, width), nn.Linear(width, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.out(self.relu(self.fc2(self.relu(self.fc1(x)))))


class Separate(Reused):
    def __init__(self, width=12):
        super().__init__(width)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.out(self.relu2(self.fc2(self.relu(self.fc1(x)))))


def test_partition_of_a_net_that_reuses_its_relu():
    torch.manual_seed(0)
    reused = Reused()
    separate = Separate()
    separate.load_state_dict(reused.state_dict())
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    a = partition2d(reused, points, window=(-3, 3, -3, 3))
    b = partition2d(separate, points, window=(-3, 3, -3, 3))
    assert len(a.regions) == len(b.regions) > 20
    assert a.layers == ["relu#0", "relu#1"] and b.layers == ["relu", "relu2"]
    # every region has one activation pattern: the patterns of its centre are distinct
    assert len({p.tobytes() for p in a.patterns}) == len(a.regions)
    # an independent check: a fine grid sees (nearly) as many distinct patterns
    u = np.linspace(-3, 3, 400)
    grid = torch.tensor(np.stack(np.meshgrid(u, u), -1).reshape(-1, 2), dtype=torch.float32)
    with torch.no_grad():
        h1 = reused.fc1(grid) > 0
        h2 = reused.fc2(torch.relu(reused.fc1(grid))) > 0
    seen = len({row.tobytes() for row in torch.cat([h1, h2], 1).numpy()})
    assert 0.9 * len(a.regions) <= seen <= len(a.regions)


def nan_model():
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    return model


def test_probes_refuse_a_model_with_nan_outputs():
    model, x, y = nan_model(), torch.randn(20, 4), torch.randint(0, 3, (20,))
    with pytest.raises(NonFiniteOutputError, match="NaN or inf"):
        critical_sample_ratio(model, x, radius=0.1)
    with pytest.raises(NonFiniteOutputError, match="NaN or inf"):
        robust_accuracy(model, x, y, eps=0.1)
    with pytest.raises(NonFiniteOutputError, match="NaN or inf"):
        local_complexity(model, x, radius=0.1, n_directions=3)
    with pytest.raises(NonFiniteOutputError, match="NaN or inf"):
        partition2d(model, x[:3])


def test_tracker_skips_model_probes_on_nan_outputs(tmp_path):
    model, x, y = nan_model(), torch.randn(60, 4), torch.randint(0, 3, (60,))
    probes = [
        CSRProbe({"test": x}, radius=0.1, step_size=0.01, noise=0.01),
        RobustnessProbe({"test": (x, y)}, eps=0.1),
        LocalComplexityProbe({"test": x}, radius=0.1, n_directions=3),
    ]
    tracker = Tracker(
        RunStore(tmp_path / "r"),
        {"test": x},
        run_id="r",
        geometry=GeometrySettings(estimators=["twonn"]),
        model_probes=probes,
    )
    with pytest.warns(ProbeWarning) as caught:
        rows = tracker.measure(model, step=0)
    assert {"csr", "robust_acc", "lc", "lc_norm"}.isdisjoint(set(rows.metric))
    text = " ".join(str(w.message) for w in caught)
    for name in ("CSRProbe", "RobustnessProbe", "LocalComplexityProbe"):
        assert name in text
    assert "NaN or inf" in text
    assert not rows[(rows.layer == "output") & (rows.metric == "twonn")].size  # NaN activations: skipped, not a number


def test_probes_follow_a_float64_model():
    torch.manual_seed(0)
    model32 = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    model64 = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).double()
    model64.load_state_dict({k: v.double() for k, v in model32.state_dict().items()})
    x, y = torch.randn(200, 6), torch.randint(0, 3, (200,))
    lc32 = local_complexity(model32, x, radius=0.3, n_directions=5).lc.iloc[-1]
    lc64 = local_complexity(model64, x, radius=0.3, n_directions=5).lc.iloc[-1]
    assert lc64 == pytest.approx(lc32, rel=0.02)
    assert critical_sample_ratio(model64, x, radius=0.5, step=0.1, noise=0.01) == pytest.approx(
        critical_sample_ratio(model32, x, radius=0.5, step=0.1, noise=0.01), abs=0.02
    )
    assert robust_accuracy(model64, x, y, eps=0.2) == pytest.approx(robust_accuracy(model32, x, y, eps=0.2), abs=0.02)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_gradient_probes_inside_no_grad_and_inference_mode(context):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = torch.randn(100, 6), torch.randint(0, 3, (100,))
    csr = critical_sample_ratio(model, x, radius=0.5, step=0.1, noise=0.01)
    robust = robust_accuracy(model, x, y, eps=0.3)
    with context():
        inner_x, inner_y = x.clone(), y.clone()  # made inside the context too (inference tensors)
        assert critical_sample_ratio(model, inner_x, radius=0.5, step=0.1, noise=0.01) == csr
        assert robust_accuracy(model, inner_x, inner_y, eps=0.3) == robust
    assert 0 < csr < 1 and robust < 1


def test_diverging_training_ends_with_warnings_not_a_crash(tmp_path):
    # SGD at lr 1e4 on an MLP: activations of 1e20 and more, loss still finite (no NaN)
    cfg = parse_config(
        {
            "name": "div",
            "data": {"name": "digits", "probe_size": 100},
            "model": {"name": "mlp", "params": {"width": 16, "depth": 1}},
            "train": {"optimizer": "sgd", "lr": 1e4, "batch_size": 64, "epochs": 3},
            "schedule": {"kind": "log", "num": 4},
            "probes": {"measures": ["twonn", "pc_id", "participation_ratio", "alpha"]},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        execute(cfg, tmp_path / "div")
    assert RunStore(tmp_path / "div").read_run().status == "finished"
    r = load(tmp_path / "div")
    assert np.isfinite(r.value).all()
    losses = r[r.metric == "train_loss"].sort_values("step").value
    assert losses.iloc[-1] > 1e6  # it did diverge
    assert all(issubclass(w.category, (ProbeWarning, UserWarning)) for w in caught)


# ---------------------------------------------------------------- error bars against their definitions


def test_lc_standard_error_matches_the_spread_over_fresh_frames():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    x = torch.randn(150, 8)
    table, counts = local_complexity(model, x, radius=0.4, n_directions=4, return_counts=True)
    assert counts.shape == (150, 3) and (counts[""] == counts["1"] + counts["3"]).all()
    total = table[table.layer == ""].iloc[0]
    assert total.lc == pytest.approx(counts[""].mean()) and total.lc_err > 0
    # the same points with fresh random frames, and fresh points: the mean's spread over repeats
    repeats = [
        local_complexity(
            model, torch.randn(150, 8, generator=torch.Generator().manual_seed(s)), radius=0.4, n_directions=4, seed=s
        ).lc.iloc[-1]
        for s in range(1, 13)
    ]
    assert 0.4 < np.std(repeats, ddof=1) / total.lc_err < 2.5


def test_binomial_errors_match_the_spread_over_probe_draws():
    from layerscope.results import proportion_error
    from layerscope.train.loop import evaluate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(20000, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    draws = [
        evaluate(model, x[i * 400 : (i + 1) * 400], y[i * 400 : (i + 1) * 400], "cross_entropy", torch.device("cpu"))
        for i in range(40)
    ]
    accs = [d["acc"][0] for d in draws]
    assert 0.6 < np.std(accs, ddof=1) / np.mean([d["acc"][1] for d in draws]) < 1.5
    losses = [d["loss"][0] for d in draws]
    assert 0.6 < np.std(losses, ddof=1) / np.mean([d["loss"][1] for d in draws]) < 1.5
    assert proportion_error(0, 100) > 0 and proportion_error(100, 100) > 0  # never "no uncertainty"


def test_every_stored_number_has_an_error(tmp_path):
    cfg = parse_config(
        {
            "name": "errors",
            "data": {"name": "digits", "probe_size": 200},
            "model": {"name": "mlp", "params": {"width": 24, "depth": 2}},
            "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 1},
            "schedule": {"kind": "log", "num": 3},
            "probes": {
                "measures": ["twonn", "mle", "gride", "pc_id", "participation_ratio", "alpha", "lc", "csr", "pgd"],
                "lc": {"n_points": 40, "n_directions": 5},
                "csr": {"n_points": 50},
                "pgd": {"n_points": 50},
            },
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = load(execute(cfg, tmp_path / "errors"))
    counts = r.metric.isin(["n_features", "linear_regions"])
    missing = r[~counts & ~np.isfinite(r.error)]
    assert missing.empty, missing[["step", "split", "layer", "metric"]].drop_duplicates("metric").to_string()
    assert (r[~counts].error >= 0).all()


def test_decision_boundary_points_and_their_lc_rows():
    from layerscope.probes.local_complexity import decision_boundary_points

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    x = torch.randn(300, 2)
    boundary = decision_boundary_points(model, x, 100)
    assert len(boundary) == 100
    with torch.no_grad():
        top = model(boundary).topk(2, dim=1).values
    assert float((top[:, 0] - top[:, 1]).max()) < 1e-5  # two classes tie: on the boundary
    one_class = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        one_class[2].weight.zero_()
        one_class[2].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    assert len(decision_boundary_points(one_class, x, 50)) == 0
    probe = LocalComplexityProbe({"test": x[:50]}, radius=0.2, n_directions=2, boundary_from=x[:100])
    rows = probe(model, 0)
    assert {r.split for r in rows} == {"test", "boundary"} and all(r.error is not None and r.error >= 0 for r in rows)
    assert {
        r.split
        for r in LocalComplexityProbe({"test": x[:50]}, radius=0.2, n_directions=2, boundary_from=x[:100])(one_class, 0)
    } == {"test"}
