"""Sweeps: grid expansion and validation, and runs on a local Ray of 2 CPUs (faults included)."""

import os
import signal
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest

from layerscope.config import ConfigError
from layerscope.store import RunStore, load
from layerscope.sweep import load_sweep, run_sweep

# Ray tests share one worker of pytest-xdist (each would start a Ray of its own).
pytestmark = pytest.mark.xdist_group("ray")

TINY = """
name = "{name}"
base = "smoke"
max_failures = {max_failures}
[resources]
cpu = 1
[overrides]
"train.epochs" = {epochs}
"data.probe_size" = 100
"schedule.kind" = "every"
"schedule.every" = 5
"probes.measures" = ["twonn"]
[axes]
seed = [0, 1]
"train.optimizer" = ["sgd", "adam"]
"""


def write(tmp_path, name="tiny", epochs=1, max_failures=2, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(name=name, epochs=epochs, max_failures=max_failures) + extra)
    return path


def test_grid_names_values_and_overrides(tmp_path):
    sweep, trials = load_sweep(write(tmp_path, extra='[[variants]]\nname = "wide"\n"model.params" = {width = 128, depth = 2}\n'))
    assert [t.name for t in trials] == [
        "seed-0_optimizer-sgd_variant-wide", "seed-0_optimizer-adam_variant-wide", "seed-1_optimizer-sgd_variant-wide", "seed-1_optimizer-adam_variant-wide"]
    assert load_sweep(write(tmp_path, extra='[[variants]]\nname = "wide"\n"model.params" = {width = 128, depth = 2}\n'))[1] == trials  # stable
    t = trials[3]
    assert t.values == {"seed": 1, "train.optimizer": "adam", "variant": "wide"}
    assert t.config.seed == 1 and t.config.train.optimizer == "adam" and t.config.train.epochs == 1
    assert t.config.model.params == {"width": 128, "depth": 2} and t.config.name == t.name


@pytest.mark.parametrize(
    "extra,message",
    [
        ('[axes.x]\n', "axes.x: Input should be a valid list"),
        ('"train.lr" = [0.1, -1]\n', "trial 'seed-0_optimizer-sgd_lr-1' of sweep 'tiny':\n  train.lr: Input should be greater than 0"),
        ('"train.optimiser" = ["sgd"]\n', "train.optimiser: Extra inputs are not permitted"),
        ('"model.name" = ["mlp", "lenet"]\n', "model.name: unknown model 'lenet'"),
    ],
)
def test_a_bad_axis_value_fails_the_whole_sweep_at_once(tmp_path, extra, message):
    path = write(tmp_path)
    path.write_text(path.read_text() + extra)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sweep(path)
    assert not (tmp_path / "out").exists()


def test_bad_sweep_files(tmp_path):
    (tmp_path / "e.toml").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_sweep(tmp_path / "e.toml")
    (tmp_path / "b.toml").write_text('name = "x"\nbase = "nope"\n')
    with pytest.raises(ConfigError, match="base 'nope' is neither a preset"):
        load_sweep(tmp_path / "b.toml")
    (tmp_path / "n.toml").write_text('name = ".."\nbase = "smoke"\n')
    with pytest.raises(ConfigError, match="name: name must start with a letter or digit"):
        load_sweep(tmp_path / "n.toml")
    (tmp_path / "a.toml").write_text('name = "x"\nbase = "smoke"\n[axes]\nseed = []\n')
    with pytest.raises(ConfigError, match="axis 'seed' has no values"):
        load_sweep(tmp_path / "a.toml")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_every_trial_once_and_equal_to_a_plain_run(tmp_path, local_ray):
    from layerscope.runner import execute

    path = write(tmp_path)
    folder, outcomes = run_sweep(path, tmp_path / "out")
    assert sorted(o.status for o in outcomes) == ["finished"] * 4
    table = load(folder)
    assert table.groupby("run_id").size().nunique() == 1 and table.run_id.nunique() == 4
    assert not table.duplicated(["run_id", "step", "split", "layer", "metric"]).any()
    assert set(zip(table.seed, table["train.optimizer"])) == {("0", "sgd"), ("0", "adam"), ("1", "sgd"), ("1", "adam")}
    # a trial is a normal run: the same numbers as running its config here
    _, trials = load_sweep(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(trials[3].config, tmp_path / "plain")
    key = ["step", "split", "layer", "metric"]
    mine = table[table.run_id == trials[3].name][load(tmp_path / "plain").columns]
    pd.testing.assert_frame_equal(mine.sort_values(key).reset_index(drop=True), load(tmp_path / "plain").sort_values(key).reset_index(drop=True))
    # again: nothing to do
    _, again = run_sweep(path, tmp_path / "out")
    assert [o.status for o in again] == ["skipped"] * 4


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, local_ray):
    path = write(tmp_path, name="bad", max_failures=1, extra='"probes.layers" = [["relu0"], ["relu9"]]\n')
    folder, outcomes = run_sweep(path, tmp_path / "out")
    failed = [o for o in outcomes if o.status == "failed"]
    assert len(failed) == 4 and {o.status for o in outcomes} == {"finished", "failed"} and len(outcomes) == 8
    assert all("relu9" in o.error for o in failed)
    trials = pd.read_parquet(folder / "trials.parquet")
    assert sorted(trials.status) == ["failed"] * 4 + ["finished"] * 4


def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint(tmp_path, local_ray):
    from layerscope.runner import execute

    path = write(tmp_path, name="kill", epochs=6)
    _, trials = load_sweep(path)
    victim = tmp_path / "out" / "kill" / trials[0].name
    killed = []

    def on_event(trial, status):
        if status == "submitted" and trial == trials[-1].name and not killed:
            # the first trial is running by now: kill its worker process once it has two checkpoints
            deadline = time.time() + 120
            while len(RunStore(victim).completed_steps()) < 2 and time.time() < deadline:
                time.sleep(0.02)
            pid = int((victim / ".lock").read_text().split()[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    folder, outcomes = run_sweep(path, tmp_path / "out", max_concurrent=4, on_event=on_event)
    assert killed and sorted(o.status for o in outcomes) == ["finished"] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(trials[0].config, tmp_path / "plain")
    key = ["step", "split", "layer", "metric"]
    retried = load(victim).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(retried, load(tmp_path / "plain").sort_values(key).reset_index(drop=True))


def test_the_driver_killed_mid_sweep_then_run_again_finishes_only_what_is_missing(tmp_path):
    pytest.importorskip("ray")
    path = write(tmp_path, name="driver", epochs=4)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    driver = subprocess.Popen([sys.executable, "-m", "layerscope.cli", "sweep", str(path), "--out", str(tmp_path / "out"), "--max-concurrent", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    folder = tmp_path / "out" / "driver"
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline:
        finished = [p for p in folder.glob("*/run.parquet") if RunStore(p.parent).read_run()["status"] == "finished"] if folder.exists() else []
        if finished:
            break
        time.sleep(0.1)
    assert finished, "no trial finished in time"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    kept = {p.parent.name: {f.name: f.stat().st_mtime_ns for f in (p.parent / "results").iterdir()} for p in finished}
    again = subprocess.run([sys.executable, "-m", "layerscope.cli", "sweep", str(path), "--out", str(tmp_path / "out")],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    for name, files in kept.items():
        assert f"{name}: skipped" in again.stdout
        assert {f.name: f.stat().st_mtime_ns for f in (folder / name / "results").iterdir()} == files  # untouched
    assert sorted(pd.read_parquet(folder / "trials.parquet").status) == ["finished"] * 4
    assert load(folder).run_id.nunique() == 4
