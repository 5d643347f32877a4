import warnings

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from layerscope.analysis.phases import PHASES_SCHEMA
from layerscope.cli import app
from layerscope.config import ConfigError, load_config, parse_config
from layerscope.models import build_model
from layerscope.presets import preset
from layerscope.probes.geometry import GeometrySettings
from layerscope.runner import execute, resume
from layerscope.store import COLUMNS, RunStore, load, load_runs
from layerscope.tracker import Tracker
from layerscope.train import checkpoint_steps


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick preset, trained for real (about 35 s on 2 cores)."""
    out = tmp_path_factory.mktemp("runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_dir = execute(preset("quick"), out / "quick")
    return run_dir


def test_quick_preset_store_is_complete(quick_run):
    results = load(quick_run)
    assert list(results.columns) == COLUMNS
    steps = sorted(results.step.unique())
    assert steps[0] == 0 and len(steps) == 10
    layers = ["input", "pool1", "pool2", "relu3", "output"]
    geometry = results[results.layer != ""]
    expected = {
        (s, split, layer, metric)
        for s in steps
        for split in ("train", "test")
        for layer in layers
        for metric in ("twonn", "pc_id", "participation_ratio", "n_features", "alpha")
        if not (layer == "output" and metric == "alpha")
    }
    got = set(geometry[["step", "split", "layer", "metric"]].itertuples(index=False, name=None))
    assert got == expected  # every (checkpoint, split, layer, metric), and nothing twice
    assert not geometry.duplicated(["step", "split", "layer", "metric"]).any()
    for metric in ("train_acc", "test_acc", "train_loss", "test_loss"):
        assert len(results[results.metric == metric]) == 10
    assert load_runs(quick_run).status.tolist() == ["finished"]


def test_quick_preset_geometry_and_accuracy(quick_run):
    r = load(quick_run)
    test = r[r.split == "test"]
    last, first = test.step.max(), 0

    def value(metric, layer, step):
        return float(test[(test.metric == metric) & (test.layer == layer) & (test.step == step)].value.iloc[0])

    for layer in ("pool1", "pool2", "relu3"):  # ID orders of magnitude below the width (Ansuini et al.)
        assert value("twonn", layer, last) < value("n_features", layer, last) / 10
    # the last hidden layer compresses with training
    assert value("twonn", "relu3", last) < value("twonn", "relu3", first) - 2
    assert value("test_acc", "", last) > 0.93
    # PC-ID is far above TwoNN (Ansuini et al.)
    assert value("pc_id", "pool2", last) > 3 * value("twonn", "pool2", last)


def test_report_is_written(quick_run):
    from layerscope.report import make_report

    page = make_report(quick_run)
    text = page.read_text()
    for name in (
        "profile.png",
        "twonn_over_training.png",
        "pcid_vs_twonn.png",
        "alpha_over_training.png",
        "accuracy.png",
    ):
        assert (quick_run / name).stat().st_size > 10_000
        assert name in text
    assert "relu3" in text and "Config" in text and "Detected phases" in text
    store = RunStore(quick_run)
    phases = store.read_derived("phases", PHASES_SCHEMA)
    assert len(phases) and set(phases.phase) <= {"expansion", "compression", "descent", "ascent"}
    assert ((phases.confidence >= 0) & (phases.confidence <= 1)).all()
    assert (phases.start_step < phases.end_step).all()
    make_report(quick_run)  # a second report replaces the derived table, never duplicates it
    assert len(store.read_derived("phases", PHASES_SCHEMA)) == len(phases)
    assert list(load(quick_run).columns) == COLUMNS and not load(quick_run).metric.str.startswith("phase").any()


def test_results_read_from_duckdb(quick_run):
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{quick_run}/results/*.parquet') WHERE metric = 'twonn'"
    ).fetchall()[0][0]
    assert n == 10 * 2 * 5


def small_config(name="small", **train):
    return parse_config(
        {
            "name": name,
            "data": {"name": "digits", "probe_size": 200},
            "model": {"name": "mlp", "params": {"width": 32, "depth": 2}},
            "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 2, **train},
            "schedule": {"kind": "every", "every": 7},
            "probes": {"measures": ["twonn", "pc_id"]},
        }
    )


class Interrupt:
    """A progress callback that raises Ctrl-C at a given step."""

    def __init__(self, at):
        self.at = at

    def __call__(self, step, total):
        if step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop_at", [10, 14])  # between checkpoints, and right after one (14 = 2 x 7)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, stop_at):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(small_config(), tmp_path / "full")
        with pytest.raises(KeyboardInterrupt):
            execute(small_config(), tmp_path / "cut", progress=Interrupt(stop_at))
        store = RunStore(tmp_path / "cut")
        assert store.read_run().status == "interrupted"
        assert max(store.completed_steps()) == 7 * (stop_at // 7) if stop_at % 7 else stop_at - 7 or True
        resume(tmp_path / "cut")
    full = load(tmp_path / "full").sort_values(["step", "split", "layer", "metric"]).reset_index(drop=True)
    cut = load(tmp_path / "cut").sort_values(["step", "split", "layer", "metric"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(full, cut)
    assert load_runs(tmp_path / "cut").status.tolist() == ["finished"]
    assert not list((tmp_path / "cut").rglob("*.tmp"))


def test_same_seed_same_numbers(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(small_config("a"), tmp_path / "a")
        execute(small_config("a"), tmp_path / "b")
    pd.testing.assert_frame_equal(load(tmp_path / "a"), load(tmp_path / "b"))


def test_existing_run_is_not_overwritten(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(small_config(epochs=1), tmp_path / "r")
        with pytest.raises(FileExistsError, match="holds a run already"):
            execute(small_config(epochs=1), tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        resume(tmp_path / "nothing")


def test_tracker_from_a_users_own_loop(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(300, 5)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = Tracker(
        RunStore(tmp_path / "mine"), {"test": x[:200]}, run_id="mine", geometry=GeometrySettings(estimators=["twonn"])
    )
    for step in range(21):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            tracker.measure(model, step=step, metrics={"train_loss": loss.item()})
    rows = RunStore(tmp_path / "mine").results()
    assert sorted(rows.step.unique()) == [0, 10, 20]
    assert set(rows.layer) == {"", "input", "1", "output"}
    assert set(rows[rows.layer == ""].split) == {"train"}


def test_checkpoint_schedules():
    assert checkpoint_steps(1000, "log", num=5) == [0, 1, 10, 100, 1000]  # num counts step 0 too
    assert checkpoint_steps(10, "epoch", steps_per_epoch=4) == [0, 4, 8, 10]
    assert checkpoint_steps(10, "every", every=3) == [0, 3, 6, 9, 10]
    with pytest.raises(ValueError, match="schedule.every is required|schedule.every must be"):
        checkpoint_steps(10, "every")


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"model": {"name": "alexnet"}}, "model.name: unknown model 'alexnet'"),
        ({"train": {"lr": -0.1}}, "train.lr: Input should be greater than 0"),
        ({"data": {"name": "svhn"}}, "data.name: unknown data set 'svhn'"),
        ({"data": {"label_noise": 1.5}}, "data.label_noise"),
        ({"probes": {"measures": ["twonn", "danco"]}}, "probes.measures: unknown measure 'danco'"),
        ({"schedule": {"kind": "every"}}, "schedule: schedule.every is required"),
        ({"trian": {}}, "trian: Extra inputs are not permitted"),
        ({"device": "gpu0"}, "device: device must be"),
        (
            {"probes": {"estimator_params": {"twonn": {"discard_fractoin": 0.2}}}},
            "probes.estimator_params: twonn: TwoNN.__init__() got an unexpected keyword argument 'discard_fractoin'",
        ),
        (
            {"probes": {"estimator_params": {"twonn": {"discard_fraction": 2}}}},
            "probes.estimator_params: twonn: discard_fraction must lie in (0, 1)",
        ),
        ({"probes": {"estimator_params": {"danco": {}}}}, "probes.estimator_params: unknown estimator 'danco'"),
        ({"probes": {"lc": {"radius": 0}}}, "probes: lc.radius: Input should be greater than 0"),
        ({"probes": {"lc": {"radios": 1}}}, "probes: lc.radios: Extra inputs are not permitted"),
    ],
)
def test_bad_config_names_the_field(patch, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(patch)


def test_unknown_layer_and_missing_data(tmp_path):
    cfg = parse_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "probes": {"layers": ["relu9"]}})
    with pytest.raises(ConfigError, match="probes.layers: unknown layer 'relu9'"):
        execute(cfg, tmp_path / "x")
    cfg = parse_config({"data": {"name": "mnist", "data_dir": str(tmp_path)}})
    with pytest.raises(FileNotFoundError, match="data set 'mnist' not found"):
        execute(cfg, tmp_path / "y")


def test_toml_config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "t"\n[data]\nname = "digits"\n[train]\nlr = 0.5\nepochs = 1\n')
    cfg = load_config(path)
    assert cfg.train.lr == 0.5 and cfg.data.name == "digits"
    path.write_text("[train]\nlr = -1\n")
    with pytest.raises(ConfigError, match=f"invalid {path}:\n  train.lr"):
        load_config(path)


def test_cli_run_runs_report_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--preset", "smoke", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    assert (tmp_path / "smoke" / "report.html").exists()
    result = runner.invoke(app, ["run", "--preset", "smoke", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "holds a run already" in result.output
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and "smoke" in result.output and "finished" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "smoke")])
    assert result.exit_code == 0
    result = runner.invoke(app, ["run", "--preset", "nope"])
    assert result.exit_code == 2 and "unknown preset 'nope'" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nname = 'lenet'\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "model.name: unknown model 'lenet'" in result.output


def test_model_init_scale():
    cfg = parse_config({"data": {"name": "digits"}, "model": {"name": "mlp", "init_scale": 4.0}})
    from layerscope.runner import prepare_data, prepare_model

    data = prepare_data(cfg)
    scaled = prepare_model(cfg, data)
    plain = prepare_model(parse_config({"data": {"name": "digits"}, "model": {"name": "mlp"}}), data)
    for a, b in zip(scaled.parameters(), plain.parameters()):
        torch.testing.assert_close(a, 4 * b)
    assert build_model("mlp", in_features=64).fc0.in_features == 64


def test_every_probe_in_one_run_store_report_and_partition_cli(tmp_path):
    cfg = parse_config(
        {
            "name": "all",
            "data": {"name": "digits", "probe_size": 200},
            "model": {"name": "mlp", "params": {"width": 24, "depth": 2}},
            "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 2},
            "schedule": {"kind": "log", "num": 4},
            "probes": {
                "measures": ["twonn", "alpha", "lc", "csr", "pgd", "partition"],
                "lc": {"n_points": 40, "n_directions": 5},
                "csr": {"n_points": 50},
                "pgd": {"n_points": 50, "eps": 0.2},
                "save_weights": True,
            },
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_dir = execute(cfg, tmp_path / "all")
    r = load(run_dir)
    steps = sorted(r.step.unique())
    model_level = r[r.layer == ""]
    for metric, splits in {
        "lc": {"train", "test", "random"},
        "csr": {"test"},
        "robust_acc": {"test"},
        "linear_regions": {"plane"},
    }.items():
        rows = model_level[model_level.metric == metric]
        assert set(rows.split) == splits and sorted(rows.step.unique()) == steps
    per_layer = r[(r.metric == "lc_norm") & (r.layer != "")]
    assert set(per_layer.layer) == {"relu0", "relu1"}
    assert (r[r.metric == "robust_acc"].value <= r[(r.metric == "test_acc")].value.max() + 1e-9).all()
    assert len(list((run_dir / "partition").glob("step-*.png"))) == len(steps)
    assert len(list((run_dir / "weights").glob("step-*.pt"))) == len(steps)
    from layerscope.report import make_report

    text = make_report(run_dir).read_text()
    for name in ("local_complexity.png", "csr.png", "robust_acc.png", "alpha_vs_robustness.png", "partition/step-"):
        assert name in text
    result = CliRunner().invoke(
        app, ["partition", str(run_dir), "--step", str(steps[-1]), "--out", str(tmp_path / "p.png")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").stat().st_size > 10_000
    result = CliRunner().invoke(app, ["partition", str(run_dir), "--step", "12345"])
    assert result.exit_code == 2 and "no weights saved at step 12345" in result.output


def test_readme_config_example_is_valid(tmp_path):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.model.name == "ansuini_cnn" and cfg.probes.layers == ["pool1", "pool2", "relu3", "output"]


def test_a_new_probe_through_the_registry_alone(tmp_path, request):
    """A toy probe (the mean output norm) registered here, and nowhere else: it is
    configured, validated, measured, stored and drawn."""
    from pydantic import Field

    from layerscope import results
    from layerscope._plotting import over_training
    from layerscope.probes import registry
    from layerscope.probes.base import ProbeSettings, ProbeSpec
    from layerscope.report import make_report
    from layerscope.results import FigureSpec, Metric, Row

    class ToySettings(ProbeSettings):
        scale: float = Field(1.0, gt=0)
        n_points: int = 50

    class Toy:
        def __init__(self, x, scale):
            self.x, self.scale = x, scale

        def __call__(self, model, step):
            with torch.no_grad():
                norm = model(self.x).norm(dim=1)
            return [Row("test", "", "toy_norm", self.scale * float(norm.mean()), float(norm.std() / len(norm) ** 0.5))]

    registry.register_probe(
        ProbeSpec(
            name="toy",
            settings=ToySettings,
            build=lambda settings, run: Toy(run.inputs("test", settings.n_points)[0], settings.scale),
            metrics=(Metric("toy_norm", "mean norm of the output, times scale", "standard error over points"),),
            figures=(FigureSpec("toy.png", "Toy norm over training", ("toy_norm",), draw=over_training("toy_norm")),),
        )
    )
    request.addfinalizer(lambda: registry.unregister_probe("toy"))  # registered for this test only
    raw = small_config("toy").model_dump(mode="json")
    raw["probes"] = {"measures": ["twonn", "toy"], "toy": {"scale": 2.0}}
    with pytest.raises(ConfigError, match="probes: toy.scale: Input should be greater than 0"):
        parse_config({**raw, "probes": {"measures": ["toy"], "toy": {"scale": -1}}})
    with pytest.raises(ConfigError, match="unknown setting 'tyo'"):
        parse_config({**raw, "probes": {"measures": ["toy"], "tyo": {"scale": 1}}})
    cfg = parse_config(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_dir = execute(cfg, tmp_path / "toy")
    r = load(run_dir)
    toy = r[r.metric == "toy_norm"]
    assert sorted(toy.step) == sorted(r.step.unique()) and (toy.value > 0).all() and (toy.error > 0).all()
    assert RunStore(run_dir).read_run().config["probes"]["toy"] == {"scale": 2.0, "n_points": 50}
    text = make_report(run_dir).read_text()
    assert "toy.png" in text and (run_dir / "toy.png").stat().st_size > 10_000
    assert "`toy_norm` | mean norm of the output, times scale" in results.metric_table(registry.metrics().values())


def test_pcid_figure_draws_the_split_that_has_geometry():
    """Geometry measured on train inputs only, accuracy rows on test: the figure must draw the train split."""
    from layerscope.report import figure_pcid_vs_twonn
    from layerscope.results import Row, to_frame

    rows = []
    for step in (0, 10):
        frame = [
            Row("train", layer, metric, value + step, 0.1)
            for layer, value in (("a", 5.0), ("b", 3.0))
            for metric in ("twonn", "pc_id")
        ]
        frame.append(Row("test", "", "test_acc", 0.5, 0.01))
        rows.append(to_frame(frame, run_id="r", step=step))
    fig = figure_pcid_vs_twonn(pd.concat(rows, ignore_index=True))
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4 and "train inputs" in ax.get_title()


def test_the_registry_refuses_clashes_and_is_built_when_asked():
    from layerscope._plotting import over_training
    from layerscope.probes import registry
    from layerscope.probes.base import ProbeSettings, ProbeSpec
    from layerscope.results import FigureSpec, Metric

    def spec(name, metric=Metric("m", "a meaning")):
        return ProbeSpec(
            name=name, settings=ProbeSettings, build=lambda settings, run: None, metrics=(metric,), figures=()
        )

    assert list(registry.probes()) == ["lc", "csr", "pgd", "partition"]
    assert {"twonn", "alpha", "lc", "csr", "robust_acc", "test_acc", "n_features"} <= set(registry.metrics())
    with pytest.raises(ValueError, match="named 'twonn' already"):
        registry.register_probe(spec("twonn"))
    with pytest.raises(ValueError, match="named 'lc' already"):
        registry.register_probe(spec("lc"))
    with pytest.raises(ValueError, match="metric 'csr' is declared twice"):
        registry.register_probe(spec("mine", Metric("csr", "something else")))
    assert "mine" not in registry.probes()  # a refused probe leaves nothing behind
    with pytest.raises(ValueError, match="must be an identifier"):
        registry.register_probe(spec("my probe"))
    with pytest.raises(KeyError, match="it is built in"):
        registry.unregister_probe("lc")
    with pytest.raises(ValueError, match="give a draw function, or the folder"):
        FigureSpec("x.png", "x", ("m",))
    with pytest.raises(ValueError, match="give a draw function, or the folder"):
        FigureSpec("x.png", "x", ("m",), draw=over_training("m"), folder="pics")
