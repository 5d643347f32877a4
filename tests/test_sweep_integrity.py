"""A sweep's trials are their configs: an edited sweep never mixes old and new results, names never
collide, a field has one source, impossible resources and unmendable failures are told at once."""

import os
import signal
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from layerscope.cli import app
from layerscope.config import ConfigError
from layerscope.store import RunStore, load
from layerscope.store.remote import location
from layerscope.sweep import TrialChangedError, _label, _run_trial, load_sweep, run_sweep, trial_name

pytestmark = pytest.mark.xdist_group("ray")

SWEEP = """
name = "{name}"
base = "smoke"
[resources]
cpu = {cpu}
[overrides]
"train.epochs" = 1
"data.probe_size" = 100
"probes.measures" = ["twonn"]
{overrides}
[axes]
seed = {seeds}
"""


def write(tmp_path, name="edit", seeds="[0, 1]", overrides="", cpu=1, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(SWEEP.format(name=name, seeds=seeds, overrides=overrides, cpu=cpu) + extra)
    return path


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def stored(folder, trial):
    return RunStore(folder / trial).read_run().config


def test_an_edited_sweep_is_refused_or_replaced_and_reads_only_its_current_grid(tmp_path, local_ray):
    out = tmp_path / "out"
    folder, states = run_sweep(write(tmp_path), out)
    assert [s.status for s in states] == ["finished", "finished"]
    assert stored(folder, "seed-0")["train"]["optimizer"] == "adam" and stored(folder, "seed-0")["train"]["lr"] == 0.003
    before = (folder / "trials.parquet").read_bytes()

    # the same folder names, another config: refused, naming each field, before anything changes
    edited = write(tmp_path, overrides='"train.lr" = 0.5\n"train.optimizer" = "sgd"')
    with pytest.raises(TrialChangedError) as err:
        run_sweep(edited, out)
    message = str(err.value)
    assert "seed-0: train.lr: 0.003 -> 0.5; train.optimizer: 'adam' -> 'sgd'" in message and "seed-1:" in message
    assert "--replace-changed" in message
    assert stored(folder, "seed-1")["train"]["lr"] == 0.003 and (folder / "trials.parquet").read_bytes() == before

    # the command line says the same in one line per trial, exit 2, no traceback
    result = CliRunner().invoke(app, ["sweep", str(edited), "--out", str(out)])
    assert (
        result.exit_code == 2
        and "train.optimizer: 'adam' -> 'sgd'" in result.output
        and "Traceback" not in result.output
    )

    # asked for: the old folders move aside and the trials run again with the new config
    folder, states = run_sweep(edited, out, replace_changed=True)
    assert [s.status for s in states] == ["finished", "finished"]
    assert all(
        stored(folder, t)["train"] == {**stored(folder, t)["train"], "lr": 0.5, "optimizer": "sgd"}
        for t in ("seed-0", "seed-1")
    )
    moved = sorted(p.name.rsplit("-", 1)[0] for p in (folder / ".replaced").iterdir())
    assert moved == ["seed-0", "seed-1"]
    assert all(RunStore(p).read_run().config["train"]["lr"] == 0.003 for p in (folder / ".replaced").iterdir())

    # a smaller grid: load() and the report read its trials only, and say how many folders they left out
    smaller = write(tmp_path, seeds="[0]", overrides='"train.lr" = 0.5\n"train.optimizer" = "sgd"')
    folder, states = run_sweep(smaller, out)
    assert [(s.name, s.status) for s in states] == [("seed-0", "skipped")]
    with pytest.warns(
        UserWarning, match=r"1 run folder\(s\) in .* are not trials of its sweep's current grid .*left out \(seed-1\)"
    ):
        table = load(folder)
    assert set(table.run_id) == {"seed-0"} and table.seed.notna().all()
    from layerscope.report.sweep import make_sweep_report

    with pytest.warns(UserWarning, match="left out of the report"):
        page = make_sweep_report(folder).read_text()
    assert (
        "1 trials (1 finished)" in page
        and "1 other run folder(s) in this folder, not trials of the sweep's current grid, left out (seed-1)" in page
    )

    # a larger grid again: the kept trial of the same config is reused, the new one runs
    larger = write(tmp_path, seeds="[0, 1, 2]", overrides='"train.lr" = 0.5\n"train.optimizer" = "sgd"')
    folder, states = run_sweep(larger, out)
    assert [(s.name, s.status) for s in states] == [
        ("seed-0", "skipped"),
        ("seed-1", "skipped"),
        ("seed-2", "finished"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every folder is a trial now: nothing to warn of
        assert sorted(load(folder).run_id.unique()) == ["seed-0", "seed-1", "seed-2"]


def test_a_worker_refuses_a_folder_of_another_config_and_unmendable_failures_are_returned_not_raised(tmp_path):
    """What the engine's task does with a folder it cannot finish: returned as the trial's error, so Ray does not retry
    it.
    """
    _, trials = load_sweep(write(tmp_path, seeds="[0]"))
    trial = trials[0]
    target = tmp_path / "runs" / trial.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _run_trial(trial.config.model_dump(mode="json"), location(target), None) is None  # runs and finishes
        assert (
            _run_trial(trial.config.model_dump(mode="json"), location(target), None) is None
        )  # finished: nothing to do
    other = {
        **trial.config.model_dump(mode="json"),
        "train": {**trial.config.model_dump(mode="json")["train"], "lr": 0.1},
    }
    error = _run_trial(other, location(target), None)
    assert error.startswith("TrialChangedError:") and RunStore(target).read_run().config["train"]["lr"] == 0.003
    (target / "run.parquet").write_bytes(b"not parquet")
    assert _run_trial(trial.config.model_dump(mode="json"), location(target), None).startswith("CorruptRunError:")
    held = tmp_path / "runs" / "held"
    with RunStore(held).lock():
        error = _run_trial({**trial.config.model_dump(mode="json"), "name": "held"}, location(held), None)
    assert error.startswith("RunLockedError:") and f"pid {os.getpid()}" in error


def test_a_corrupt_trial_fails_at_once_and_the_sweep_goes_on(tmp_path, local_ray):
    path = write(tmp_path, name="corrupt")
    bad = tmp_path / "out" / "corrupt" / "seed-1"
    bad.mkdir(parents=True)
    (bad / "run.parquet").write_bytes(b"garbage")
    folder, states = run_sweep(path, tmp_path / "out")
    by_name = {s.name: s for s in states}
    assert by_name["seed-0"].status == "finished"
    assert (
        by_name["seed-1"].status == "failed"
        and by_name["seed-1"].error.startswith("CorruptRunError:")
        and by_name["seed-1"].retries == 0
    )


def test_resources_the_cluster_lacks_are_refused_before_anything_starts(tmp_path, local_ray):
    path = write(tmp_path, name="big", cpu=64)
    with pytest.raises(
        ValueError, match=r"resources.cpu = 64: the Ray cluster has 2 CPUs in all, so no trial could ever start"
    ):
        run_sweep(path, tmp_path / "out")
    assert not any(p.is_dir() for p in (tmp_path / "out" / "big").iterdir())
    gpu = write(tmp_path, name="gpu", extra="")
    gpu.write_text(gpu.read_text().replace("[resources]\n", "[resources]\ngpu = 1\n"))
    with pytest.raises(ValueError, match=r"resources.gpu = 1: the Ray cluster has 0 GPUs in all"):
        run_sweep(gpu, tmp_path / "out")


@pytest.mark.parametrize("order", [("a b", "a-b"), ("a-b", "a b")])
def test_names_do_not_depend_on_the_order_of_values(tmp_path, order):
    variants = "".join(
        f'[[variants]]\nname = "{name}"\n"model.params" = {{width = {w}, depth = 2}}\n'
        for name, w in zip(order, (32, 48))
    )
    _, trials = load_sweep(write(tmp_path, seeds="[0]", extra=variants))
    names = {t.values["variant"]: t.name for t in trials}
    assert names == {"a-b": "seed-0_variant-a-b", "a b": f"seed-0_variant-a-b-{_label('a b')[-10:]}"}
    assert {t.values["variant"]: t.config.model.params["width"] for t in trials} == dict(zip(order, (32, 48)))


def test_labels_are_one_to_one():
    values = [
        0,
        1,
        -1,
        1.0,
        0.01,
        1e-5,
        True,
        False,
        "1",
        "true",
        "a b",
        "a-b",
        "a_b",
        "0.01",
        "nan",
        float("nan"),
        None,
        [1, 2],
        "x" * 300,
        "a-0123456789",
        "a-0123456789abcdef",
    ]
    labels = [_label(v) for v in values]
    assert len(set(labels)) == len(values), labels
    assert labels[:6] == ["0", "1", "-1", "1.0", "0.01", "1e-05"] and labels[6:8] == ["true", "false"]
    assert all("_" not in label for label in labels)  # '_' joins the axes of a name
    assert len(trial_name({"model.name": "x" * 300})) <= 128


def test_one_source_per_field_and_values_equal_once_parsed(tmp_path):
    with pytest.raises(ConfigError, match=r"variant 'slow' sets 'train.lr', which the axis 'train.lr' varies"):
        load_sweep(write(tmp_path, extra='"train.lr" = [0.1, 0.2]\n[[variants]]\nname = "slow"\n"train.lr" = 0.001\n'))
    with pytest.raises(ConfigError, match=r"overrides set 'train.epochs', which the axis 'train' varies"):
        load_sweep(write(tmp_path, extra="train = [{epochs = 1}]\n"))
    with pytest.raises(
        ConfigError,
        match=r"the trials \(seed = 0, train.lr = 0.01\) and \(seed = 0, train.lr = '0.01'\) have the same config",
    ):
        load_sweep(write(tmp_path, extra='"train.lr" = [0.01, "0.01", "1e-2"]\n'))
    with pytest.raises(ConfigError, match=r"axes: '' is not a config field"):
        load_sweep(write(tmp_path, extra='"" = [1]\n'))
    with pytest.raises(ConfigError, match=r"'train..lr' is not a config field"):
        load_sweep(write(tmp_path, overrides='"train..lr" = 0.1'))
    with pytest.raises(ConfigError, match=r"an axis named 'variant' clashes"):
        load_sweep(write(tmp_path, extra='variant = [1]\n[[variants]]\nname = "v"\n"train.lr" = 0.1\n'))


def test_out_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(app, ["sweep", str(write(tmp_path)), "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "cannot write the folder" in result.output and "Not a directory" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["run", "--preset", "smoke", "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "cannot write the folder" in result.output and "Traceback" not in result.output


def test_sigterm_stops_a_sweep_like_layerscope_run(tmp_path):
    """SIGTERM to the driver: exit 143, Ray shut down (no C++ abort), finished checkpoints kept for the next call."""
    pytest.importorskip("ray")
    path = write(
        tmp_path,
        name="term",
        overrides='"train.epochs" = 40\n"schedule.kind" = "every"\n"schedule.every" = 20',
        seeds="[0]",
    )
    path.write_text(path.read_text().replace('"train.epochs" = 1\n', ""))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "layerscope.cli", "sweep", str(path), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    trial = RunStore(tmp_path / "out" / "term" / "seed-0")
    deadline = time.time() + 240
    while time.time() < deadline and not trial.completed_steps():
        time.sleep(0.1)
    assert trial.completed_steps(), "no checkpoint in time"
    driver.send_signal(signal.SIGTERM)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 143, output
    assert "interrupted. Finished trials are kept" in output and "Aborted" not in output and "SIGABRT" not in output
    assert trial.completed_steps()  # kept
    assert pd.read_parquet(tmp_path / "out" / "term" / "trials.parquet").run_id.tolist() == ["seed-0"]
