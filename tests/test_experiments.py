import dataclasses
import json
import warnings

import pytest

import layerscope.experiments
from layerscope.config import parse_config
from layerscope.experiments import EXPERIMENTS, Experiment, Finding
from layerscope.experiments.reproduce import reproduce
from layerscope.store import RunStore


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("size", ["quick", "medium", "full"])
def test_every_preset_config_validates(name, size):
    configs = EXPERIMENTS[name].configs(size)
    assert len(configs) >= 2
    assert len({c.name for c in configs}) == len(configs)


def test_full_sizes_follow_the_papers():
    tan = {c.name: c for c in EXPERIMENTS["tan2024"].configs("full")}
    for net in ("vgg16-bn", "resnet18"):  # the six optimizer regimes and five noise levels, for each net
        assert len([n for n in tan if n.startswith(net) and "noise" not in n]) == 6
        assert {c.data.label_noise for n, c in tan.items() if n.startswith(net)} == {0.0, 0.1, 0.3, 0.5, 0.7, 0.9}
    assert tan["resnet18-adam-large"].train.lr == 1e-3 and tan["resnet18-adam-large"].train.batch_size == 32
    assert tan["vgg16-bn-sgd-small"].train.lr == 1e-3 and tan["vgg16-bn-sgd-small"].train.batch_size == 512
    assert all(
        c.train.epochs == 200
        and c.train.weight_decay == 1e-4
        and c.data.name == "cifar10"
        and c.train.augment == ["crop", "flip"]
        and c.schedule.kind == "epoch"  # Tan et al. measure every epoch
        and c.probes.layers == ["pool", "output"]  # the pooled penultimate representation
        and c.probes.batchnorm == "both"
        and c.data.probe_size == 10000
        for c in tan.values()
    )
    vgg16 = tan["vgg16-bn-momentum-large"].model.params
    assert vgg16["convs"] == [2, 2, 3, 3, 3] and vgg16["max_channels"] == 512
    hum = {c.name: c for c in EXPERIMENTS["humayun2024"].configs("full")}
    mnist = [c for n, c in hum.items() if n.startswith("mnist")]
    assert {c.model.init_scale for c in mnist} == {1.0, 4.0}
    assert all(
        c.train.loss == "mse"
        and c.train.optimizer == "adamw"
        and c.train.weight_decay == 0.01
        and c.data.n_train == 1000
        and c.train.steps == 100000
        for c in mnist
    )
    cifar = hum["cifar10-resnet18-w16"]
    assert cifar.model.params == {"width": 16, "batch_norm": False, "preact": True}
    assert cifar.train.steps == 500000 and cifar.train.batch_size == 256 and cifar.train.optimizer == "adamw"
    pgd = cifar.probes.settings("pgd")
    assert pgd.eps == pytest.approx(50 / 255) and pgd.eps_unit == "pixel"


def tiny_configs(size):
    base = {
        "data": {"name": "digits", "probe_size": 100},
        "model": {"name": "mlp", "params": {"width": 16, "depth": 1}},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "epochs": 1},
        "schedule": {"kind": "log", "num": 3},
        "probes": {"measures": ["twonn"]},
    }
    return [parse_config({**base, "name": "a"}), parse_config({**base, "name": "b", "seed": 1})]


def tiny_findings(folder):
    return [Finding("two runs exist", str(sorted(p.name for p in folder.iterdir() if p.is_dir())), "holds")]


@pytest.mark.xdist_group("ray")  # starts a local Ray, like the sweep tests
def test_reproduce_writes_findings_and_resumes(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.setitem(
        layerscope.experiments.EXPERIMENTS,
        "tiny",
        Experiment("tiny", "A tiny test paper", tiny_configs, tiny_findings, lambda folder: Figure()),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = reproduce("tiny", "quick", tmp_path)
        findings = json.loads((folder / "findings.json").read_text())
        assert len(findings) == 1
        assert {k: findings[0][k] for k in ("claim", "measured", "verdict", "holds", "confidence", "seeds")} == {
            "claim": "two runs exist",
            "measured": "['a', 'b']",
            "verdict": "holds",
            "holds": True,
            "confidence": None,
            "seeds": None,
        }
        assert "| two runs exist |  | ['a', 'b'] | holds | - | - |" in (folder / "findings.md").read_text()
        assert (folder / "summary.png").exists() and (folder / "a" / "report.html").exists()
        assert (
            "two runs exist" in (folder / "report.html").read_text()
            and "a/report.html" in (folder / "report.html").read_text()
        )
        # a second call keeps finished runs (no FileExistsError) and resumes interrupted ones
        store = RunStore(folder / "b")
        store.update_run(dataclasses.replace(store.read_run(), status="interrupted"))
        reproduce("tiny", "quick", tmp_path)
        assert store.read_run().status == "finished"
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        reproduce("nope")
    with pytest.raises(ValueError, match="size must be one of quick, medium, full"):
        reproduce("tiny", "huge", tmp_path)


@pytest.mark.slow
def test_ansuini2019_quick(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = reproduce("ansuini2019", "quick", tmp_path)
    from layerscope.store import load

    r = load(folder / "width-1.0")
    r = r[r.split == "train"]
    last = r.step.max()
    layers = ["input", "pool1", "pool2", "relu3", "output"]
    trained = [
        float(r[(r.metric == "twonn") & (r.layer == layer) & (r.step == last)].value.iloc[0]) for layer in layers
    ]
    untrained = [float(r[(r.metric == "twonn") & (r.layer == layer) & (r.step == 0)].value.iloc[0]) for layer in layers]
    assert trained[3] < untrained[3]  # the last hidden layer: trained below untrained
    assert max(range(len(layers)), key=trained.__getitem__) != len(layers) - 1  # the maximum is not at the last layer


@pytest.mark.slow
def test_humayun2024_quick_grokking_inside_final_lc_descent(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = reproduce("humayun2024", "quick", tmp_path)
    findings = {f["claim"]: f for f in json.loads((folder / "findings.json").read_text())}
    grok = next(f for c, f in findings.items() if c.startswith("With a large initial scale"))
    inside = next(f for c, f in findings.items() if c.startswith("Delayed generalization"))
    assert grok["holds"], grok["measured"]
    # the delayed rise of test accuracy comes after the final LC descent starts: on one run the interval of the
    # descent's start is wide (z about 2), so after the correction over the paper's findings it may stay
    # inconclusive, but it must not be contradicted
    assert inside["effect"] > 0 and inside["verdict"] in ("holds", "inconclusive"), inside["measured"]


def test_cli_reproduce_errors_clearly():
    from typer.testing import CliRunner

    from layerscope.cli import app

    result = CliRunner().invoke(app, ["reproduce", "smith2020"])
    assert (
        result.exit_code == 2
        and "unknown experiment 'smith2020'; choose from ansuini2019, tan2024, humayun2024" in result.output
    )


def _reproduce_these(name, size, configs, tmp_path, monkeypatch):
    """``reproduce(name, size)`` with the experiment's configs replaced by ``configs`` (its findings and summary
    as they are): the run folder and its findings, each with one of the four verdicts."""
    from layerscope.experiments.base import VERDICTS

    experiment = EXPERIMENTS[name]
    monkeypatch.setitem(
        layerscope.experiments.EXPERIMENTS,
        name,
        Experiment(name, experiment.paper, lambda size, seeds=None: configs, experiment.findings, experiment.summary),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = reproduce(name, size, tmp_path / "runs")
    findings = json.loads((folder / "findings.json").read_text())
    assert all(f["verdict"] in VERDICTS for f in findings)
    return folder, findings


def _few_steps(cfg):
    """A medium-size config cut to a few steps on a few hundred examples (what CI can afford)."""
    raw = cfg.model_dump(mode="json")
    raw["data"]["n_train"] = 256
    raw["data"]["probe_size"] = min(raw["data"]["probe_size"], 120)
    raw["train"].update(steps=6, epochs=None)
    if raw["schedule"]["kind"] == "log":
        raw["schedule"]["num"] = 4
    probes = raw["probes"]
    for name in ("lc", "pgd", "csr"):
        if name in probes:
            probes[name]["n_points"] = 40
    if "partition" in probes:
        probes["partition"]["pictures"] = 2
    return parse_config(raw, "medium config cut short")


@pytest.mark.slow  # about a minute each: CI runs them with the slow tests
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_medium_sizes_run_a_few_steps_and_give_findings_over_seeds(name, tmp_path, monkeypatch):
    # the medium sizes take up to 30 minutes each (run for docs/results.md, not in CI): here every
    # setting of each, two seeds, runs 6 steps on 256 examples, and the findings and summary are
    # computed over the seeds (the same code as the full runs)
    from layerscope.data.datasets import FASHION_SYSTEM_DIR
    from layerscope.experiments.base import by_seed

    configs = EXPERIMENTS[name].configs("medium")
    assert set(by_seed({c.name: c for c in configs})) == {0, 1, 2}
    if any(c.data.name == "fashion_mnist" for c in configs) and not FASHION_SYSTEM_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    short = [_few_steps(c) for c in configs if not c.name.endswith("-seed2")]
    folder, findings = _reproduce_these(name, "medium", short, tmp_path, monkeypatch)
    assert findings and all(f["holds"] in (True, False, None) for f in findings)
    assert all(f["adjusted"] is None or f["adjusted"] <= f["confidence"] + 1e-12 for f in findings)
    over_two = [f for f in findings if f["seeds"] == 2]
    assert over_two, "no finding was combined over the two seeds"
    assert all(f["confidence"] is None or 0 <= f["confidence"] <= 1 for f in findings)
    assert any("seed 0:" in f["measured"] and "seed 1:" in f["measured"] for f in over_two)
    assert (folder / "summary.png").stat().st_size > 10_000


def test_seeded_names_are_read_back_by_seed():
    from layerscope.experiments.base import by_seed, seeded

    cfgs = seeded(tiny_configs("quick")[:1], (0, 4))
    assert [(c.name, c.seed) for c in cfgs] == [("a-seed0", 0), ("a-seed4", 4)]
    assert by_seed({"a-seed0": 1, "a-seed4": 2, "b": 3}) == {0: {"a": 1, "b": 3}, 4: {"a": 2}}


def _full_size_data(root):
    """A few hundred examples of each full size's data set, in the real file formats: CIFAR-10's python batches
    (pickles, read by the arrays-only unpickler) and MNIST's gzipped IDX files."""
    import numpy as np
    from test_data import _cifar_python_folder, write_idx

    _cifar_python_folder(root, n=60)  # 300 training and 60 test images
    mnist = root / "mnist"
    mnist.mkdir()
    rng = np.random.default_rng(1)
    for stem, n in (("train", 300), ("t10k", 100)):
        write_idx(mnist / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(mnist / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return root


def _smoke(cfg, data_dir):
    """A full-size config cut to a smoke test: its nets, data set, probes and schedule kind, on 64 examples for a
    few steps."""
    raw = cfg.model_dump(mode="json")
    raw["data"].update(data_dir=str(data_dir), n_train=64, probe_size=min(raw["data"]["probe_size"], 30))
    if raw["train"]["steps"] is not None:
        raw["train"]["steps"] = 4
    else:
        raw["train"].update(epochs=1, batch_size=min(raw["train"]["batch_size"], 32))
    if raw["schedule"]["kind"] == "log":
        raw["schedule"]["num"] = 3
    for name in ("lc", "pgd", "csr"):
        if name in raw["probes"]:
            raw["probes"][name]["n_points"] = 20
    if "partition" in raw["probes"]:
        raw["probes"]["partition"]["pictures"] = 2
    return parse_config(raw, "full config cut to a smoke test")


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_full_sizes_run_on_files_in_the_real_formats(name, tmp_path, monkeypatch):
    # every full config (the papers' nets and recipes) for a few steps on files written in the data sets' formats,
    # through findings and summary: what a user with the data and a GPU runs, minus the length
    data_dir = _full_size_data(tmp_path / "data")
    configs = EXPERIMENTS[name].configs("full")
    folder, findings = _reproduce_these(name, "full", [_smoke(c, data_dir) for c in configs], tmp_path, monkeypatch)
    assert findings
    assert (folder / "summary.png").stat().st_size > 10_000
    assert {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")} == {c.name for c in configs}


def test_cli_reproduce_device_and_resources_are_checked_before_anything_runs(tmp_path):
    from typer.testing import CliRunner

    from layerscope.cli import app

    result = CliRunner().invoke(app, ["reproduce", "ansuini2019", "--device", "tpu", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'" in result.output
    result = CliRunner().invoke(app, ["reproduce", "ansuini2019", "--gpus-per-run", "-1", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "gpus-per-run" in result.output
    assert not any(tmp_path.iterdir())
