"""The extension recipes of docs/architecture.md, each done here, in this file only: an estimator, a
figure, a model, a training loop of one's own (a probe and a paper: tests/test_tracking.py and
tests/test_experiments.py do theirs the same way)."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import layerscope.estimators
import layerscope.models
from layerscope.config import ConfigError, parse_config
from layerscope.estimators import Estimate, SpectralEstimator
from layerscope.estimators.covariance import check_spectrum
from layerscope.probes import registry
from layerscope.probes.geometry import measure_geometry
from layerscope.runner import execute
from layerscope.store import load


class TopShare(SpectralEstimator):
    """The share of the variance on the first principal axis (a toy spectral estimator)."""

    name = "top_share"
    meaning = "share of the variance on the first principal axis"
    error_meaning = "none"
    is_dimension = False

    def __init__(self, k: int = 1) -> None:
        self.k = k

    def check_params(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")

    def fit_spectrum(self, eigenvalues, n_points=0, resampled=None):
        self.check_params()
        eig = check_spectrum(eigenvalues)
        self.share_ = float(eig[: self.k].sum() / eig.sum())
        self.estimate_ = Estimate(self.name, self.share_, None, None, n_points)
        return self


def small(name, **probes):
    return parse_config(
        {
            "name": name,
            "data": {"name": "digits", "probe_size": 100},
            "model": {"name": "mlp", "params": {"width": 16, "depth": 1}},
            "train": {"epochs": 1, "batch_size": 128},
            "schedule": {"kind": "log", "num": 3},
            "probes": {"measures": ["twonn"], **probes},
        }
    )


def test_recipe_add_an_estimator(tmp_path, monkeypatch):
    monkeypatch.setitem(layerscope.estimators.ESTIMATORS, "top_share", TopShare)  # step 2 of the recipe
    X = np.random.default_rng(0).standard_normal((300, 5)) * np.array([3.0, 1, 1, 1, 1])
    assert TopShare().fit(X).share_ == pytest.approx(9 / 13, abs=0.05)  # scikit-learn style, any point cloud
    assert registry.metrics()["top_share"].meaning.startswith("share of the variance")
    with pytest.raises(ConfigError, match="top_share: k must be an integer >= 1"):
        small("e", measures=["top_share"], estimator_params={"top_share": {"k": 0}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = execute(small("e", measures=["top_share"], estimator_params={"top_share": {"k": 2}}), tmp_path / "e")
    table = load(run)
    shares = table[table.metric == "top_share"]
    assert len(shares) > 0 and ((shares.value > 0) & (shares.value <= 1)).all()
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    assert set(measure_geometry(model, torch.tensor(X, dtype=torch.float32), ["1"], ["top_share"]).layer) == {
        "input",
        "1",
    }


def test_recipe_add_a_figure_with_its_own_drawing(tmp_path, request):
    """A probe's figure is its own draw function: the report calls it, and has no code of its own for it."""
    from layerscope._plotting import subplots
    from layerscope.probes.base import ProbeSettings, ProbeSpec
    from layerscope.report import make_report
    from layerscope.results import FigureSpec, Metric, Row

    drawn = []

    def histogram(results, phases):
        drawn.append(sorted(results[results.metric == "weight_norm"].step))
        fig, ax = subplots(figsize=(4, 3))
        ax.bar(range(len(drawn[-1])), results[results.metric == "weight_norm"].value)
        return fig

    class WeightNorm:
        def __call__(self, model, step):
            return [Row("model", "", "weight_norm", float(sum(p.norm() ** 2 for p in model.parameters()) ** 0.5))]

    registry.register_probe(
        ProbeSpec(
            name="weight_norm",
            settings=ProbeSettings,
            build=lambda settings, context: WeightNorm(),
            metrics=(Metric("weight_norm", "Euclidean norm of all parameters"),),
            figures=(
                FigureSpec("weight_norm.png", "Weight norm at each checkpoint", ("weight_norm",), draw=histogram),
            ),
        )
    )
    request.addfinalizer(lambda: registry.unregister_probe("weight_norm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = execute(small("f", measures=["twonn", "weight_norm"]), tmp_path / "f")
        page = make_report(run).read_text()
    assert drawn == [[0, 1, 11]] and "weight_norm.png" in page and (run / "weight_norm.png").stat().st_size > 5_000


class Bottleneck(nn.Module):
    def __init__(self, in_features, num_classes, width=32):
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, 3), nn.ReLU())
        self.decide = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.decide(self.encode(x.flatten(1)))


def test_recipe_add_a_model(tmp_path, monkeypatch):
    monkeypatch.setitem(layerscope.models.MODELS, "bottleneck", Bottleneck)
    cfg = parse_config({**small("m").model_dump(mode="json"), "model": {"name": "bottleneck", "params": {"width": 24}}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = execute(cfg, tmp_path / "m")
    table = load(run)
    widths = table[table.metric == "n_features"].groupby("layer").value.first().to_dict()
    assert widths == {
        "input": 64.0,
        "encode.1": 24.0,
        "encode.3": 3.0,
        "output": 10.0,
    }  # the data's 64 pixels and 10 classes
    with pytest.raises(ConfigError, match="unknown model 'bottleneckk'"):
        parse_config({**small("m").model_dump(mode="json"), "model": {"name": "bottleneckk"}})


def test_recipe_a_training_loop_of_ones_own(tmp_path):
    from layerscope.integrations import TrackedRun
    from layerscope.report import make_report

    torch.manual_seed(0)
    x, y = torch.randn(400, 6), torch.randint(0, 3, (400,))
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = TrackedRun(tmp_path / "mine", {"test": x[:200]}, every=10, layers=["1", "output"])
    with run.track(model, total_steps=30, trainer="my loop", settings={"lr": 0.1}):
        for step in range(31):
            if run.due(step):
                with torch.no_grad():
                    acc = float((model(x).argmax(1) == y).float().mean())
                run.measure(model, step, metrics={"test_acc": acc})
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    table = load(tmp_path / "mine")
    assert sorted(table.step.unique()) == [0, 10, 20, 30] and set(table[table.metric == "twonn"].layer) == {
        "input",
        "1",
        "output",
    }
    assert make_report(tmp_path / "mine").is_file()
