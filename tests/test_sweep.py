"""Sweeps: grid expansion and validation, and runs on a local Ray of 2 CPUs (faults included)."""

import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

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
    sweep, trials = load_sweep(
        write(tmp_path, extra='[[variants]]\nname = "wide"\n"model.params" = {width = 128, depth = 2}\n')
    )
    assert [t.name for t in trials] == [
        "seed-0_optimizer-sgd_variant-wide",
        "seed-0_optimizer-adam_variant-wide",
        "seed-1_optimizer-sgd_variant-wide",
        "seed-1_optimizer-adam_variant-wide",
    ]
    assert (
        load_sweep(write(tmp_path, extra='[[variants]]\nname = "wide"\n"model.params" = {width = 128, depth = 2}\n'))[1]
        == trials
    )  # stable
    t = trials[3]
    assert t.values == {"seed": 1, "train.optimizer": "adam", "variant": "wide"}
    assert t.config.seed == 1 and t.config.train.optimizer == "adam" and t.config.train.epochs == 1
    assert t.config.model.params == {"width": 128, "depth": 2} and t.config.name == t.name


@pytest.mark.parametrize(
    "extra,message",
    [
        ("[axes.x]\n", "axes.x: Input should be a valid list"),
        (
            '"train.lr" = [0.1, -1]\n',
            "trial 'seed-0_optimizer-sgd_lr--1' of sweep 'tiny':\n  train.lr: Input should be greater than 0",
        ),
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
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_every_trial_once_and_equal_to_a_plain_run(tmp_path, local_ray):
    from layerscope.runner import execute

    path = write(tmp_path)
    seen = []
    folder, states = run_sweep(
        path, tmp_path / "out", on_progress=lambda s: seen.append([(x.status, x.step) for x in s])
    )
    assert [s.status for s in states] == ["finished"] * 4
    assert seen[0] == [("pending", None)] * 4 and seen[-1] == [("finished", s.total_steps) for s in states]
    assert all(
        s.total_steps == 21 and 0 < s.test_acc <= 1 and s.retries == 0 for s in states
    )  # 1 epoch of 1,347 digits, batches of 64
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
    pd.testing.assert_frame_equal(
        mine.sort_values(key).reset_index(drop=True), load(tmp_path / "plain").sort_values(key).reset_index(drop=True)
    )
    # again: nothing to do
    _, again = run_sweep(path, tmp_path / "out")
    assert [s.status for s in again] == ["skipped"] * 4 and [s.test_acc for s in again] == [s.test_acc for s in states]


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, local_ray):
    path = write(tmp_path, name="bad", max_failures=1, extra='"probes.layers" = [["relu0"], ["relu9"]]\n')
    folder, states = run_sweep(path, tmp_path / "out")
    failed = [o for o in states if o.status == "failed"]
    assert len(failed) == 4 and {o.status for o in states} == {"finished", "failed"} and len(states) == 8
    assert all("relu9" in o.error for o in failed)
    trials = pd.read_parquet(folder / "trials.parquet")
    assert sorted(trials.status) == ["failed"] * 4 + ["finished"] * 4


def _kill_once_it_has(victim, checkpoints, killed):
    """An on_progress callback: SIGKILL the process holding ``victim`` once it has ``checkpoints`` checkpoints."""

    def on_progress(states):
        store = RunStore(victim)
        if not killed and len(store.completed_steps()) >= checkpoints and store.read_run().status == "running":
            pid = int((victim / ".lock").read_text().split()[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    return on_progress


def _same_as_a_plain_run(run_dir, config, tmp_path):
    from layerscope.runner import execute

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(config, tmp_path / "plain")
    key = ["step", "split", "layer", "metric"]
    pd.testing.assert_frame_equal(
        load(run_dir).sort_values(key).reset_index(drop=True),
        load(tmp_path / "plain").sort_values(key).reset_index(drop=True),
    )


def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint(tmp_path, local_ray):
    path = write(tmp_path, name="kill", epochs=6)
    _, trials = load_sweep(path)
    victim = tmp_path / "out" / "kill" / trials[0].name
    killed = []
    folder, states = run_sweep(path, tmp_path / "out", on_progress=_kill_once_it_has(victim, 2, killed), poll=0.05)
    assert killed and [s.status for s in states] == ["finished"] * 4
    assert states[0].retries == 1 and RunStore(victim).read_run().resumes == 1
    _same_as_a_plain_run(victim, trials[0].config, tmp_path)


def test_out_as_a_file_uri(tmp_path, local_ray):
    path = write(tmp_path, name="uri")
    folder, states = run_sweep(path, (tmp_path / "out").as_uri())
    assert folder == tmp_path / "out" / "uri" and [s.status for s in states] == ["finished"] * 4
    assert load((tmp_path / "out" / "uri").as_uri()).run_id.nunique() == 4


def test_storage_that_is_not_local_is_mirrored_and_a_killed_trial_resumes_from_it(tmp_path, local_ray):
    """A pyarrow filesystem that is not the local one (here a SubTreeFileSystem, as S3 would be):
    trials run in a local copy uploaded as they go; a killed worker's retry downloads it and resumes."""
    import pyarrow.fs as pafs

    from layerscope.store.remote import location, scratch_folder

    remote = tmp_path / "bucket"
    remote.mkdir()
    fs = pafs.SubTreeFileSystem(str(remote), pafs.LocalFileSystem())
    path = write(tmp_path, name="mirror", epochs=6)
    _, trials = load_sweep(path)
    local = scratch_folder(location("sweeps", fs).join("mirror", trials[0].name))
    trial_dir = remote / "sweeps" / "mirror" / trials[0].name
    killed = []

    def on_progress(states):  # kill the worker once its third checkpoint is uploaded
        if (
            not killed
            and len(RunStore(trial_dir).completed_steps()) >= 3
            and (trial_dir / "state.pt").exists()
            and RunStore(local).read_run().status == "running"
        ):
            pid = int((local / ".lock").read_text().split()[1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    folder, states = run_sweep(path, "sweeps", filesystem=fs, on_progress=on_progress, poll=0.05)
    assert killed and [s.status for s in states] == ["finished"] * 4 and states[0].retries == 1
    assert str(folder) == "subtree://sweeps/mirror"
    assert not local.exists()  # the finished trial's local copy is removed
    assert not (trial_dir / ".lock").exists() and not list(trial_dir.rglob(".*.tmp-*"))
    assert RunStore(trial_dir).read_run().status == "finished" and RunStore(trial_dir).read_run().resumes == 1
    _same_as_a_plain_run(trial_dir, trials[0].config, tmp_path)
    table = load(folder)
    assert table.run_id.nunique() == 4 and "train.optimizer" in table
    # the sweep's report, written through a local view of the remote folder and uploaded
    from layerscope.report.sweep import make_sweep_report
    from layerscope.store.remote import local_view

    with local_view(folder) as view:
        make_sweep_report(view)
    assert {"report.html", "id_vs_accuracy.png", "sweep_over_training.png"} <= {
        p.name for p in (remote / "sweeps" / "mirror").iterdir()
    }


def test_reproduce_without_ray_runs_here(tmp_path, monkeypatch):
    import sys as _sys

    from layerscope.store.remote import location
    from layerscope.sweep import Trial, run_trials

    monkeypatch.setitem(_sys.modules, "ray", None)  # import ray fails
    _, trials = load_sweep(write(tmp_path, name="noray"))
    trials = trials[:1]
    with pytest.raises(ImportError, match=r"pip install 'layerscope\[ray\]'"):
        run_trials(location(tmp_path / "x"), trials)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        states = run_trials(
            location(tmp_path / "x"),
            [Trial(t.name, t.values, t.config) for t in trials],
            require_ray=False,
            on_progress=lambda s: seen.append(s[0].step),
        )
    assert states[0].status == "finished" and states[0].step == 21 and seen[-1] == 21 and len(seen) > 10
    assert RunStore(tmp_path / "x" / trials[0].name).read_run().status == "finished"


def test_the_driver_killed_mid_sweep_then_run_again_finishes_only_what_is_missing(tmp_path):
    pytest.importorskip("ray")
    path = write(tmp_path, name="driver", epochs=4)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layerscope.cli",
            "sweep",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--max-concurrent",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    folder = tmp_path / "out" / "driver"
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline:
        finished = (
            [p for p in folder.glob("*/run.parquet") if RunStore(p.parent).read_run().status == "finished"]
            if folder.exists()
            else []
        )
        if finished:
            break
        time.sleep(0.1)
    assert finished, "no trial finished in time"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    # nothing of the killed driver's Ray is left running (its agents, once left to init, are ended by the reaper)
    deadline = time.time() + 30
    while (left := orphaned_ray_agents(driver.pid)) and time.time() < deadline:
        time.sleep(0.5)
    assert not left, left
    kept = {p.parent.name: {f.name: f.stat().st_mtime_ns for f in (p.parent / "results").iterdir()} for p in finished}
    again = subprocess.run(
        [sys.executable, "-m", "layerscope.cli", "sweep", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    for name, files in kept.items():
        assert re.search(rf"{name}\s.*finished before", again.stdout), again.stdout
        assert {f.name: f.stat().st_mtime_ns for f in (folder / name / "results").iterdir()} == files  # untouched
    assert sorted(pd.read_parquet(folder / "trials.parquet").status) == ["finished"] * 4
    assert load(folder).run_id.nunique() == 4


def orphaned_ray_agents(driver_pid):
    """Ray agents left to init (parent pid 1) that were started after the driver ``driver_pid``."""
    from layerscope._reaper import _stat

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] == 1:
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::") and int(entry) > driver_pid:
                found.append((int(entry), cmd.strip("\0")))
    return found


def test_sweep_report_figures_and_correlation(tmp_path, local_ray):
    import numpy as np
    from typer.testing import CliRunner

    from layerscope.cli import app
    from layerscope.report.sweep import correlation, final_table, last_hidden

    path = write(tmp_path, name="rep")
    path.write_text(path.read_text().replace("seed = [0, 1]", "seed = [0, 1, 2]"))
    folder, _ = run_sweep(path, tmp_path / "out")
    result = CliRunner().invoke(app, ["report", (tmp_path / "out" / "rep").as_uri()])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert (
        "6 trials (6 finished)" in page and "axes compared: train.optimizer" in page and "averaged over: seed" in page
    )
    table = load(folder)
    assert last_hidden(table) == "relu1"
    final = final_table(table, "relu1")
    last = table[table.step == table.step.max()]
    expect = last[(last.metric == "twonn") & (last.layer == "relu1") & (last.split == "test")].set_index("run_id").value
    assert np.allclose(final.set_index("run_id").twonn.loc[expect.index], expect)
    # Pearson's r and Fisher's interval, against numpy and the closed form
    r, low, high = correlation(final.twonn.to_numpy(), final.test_acc.to_numpy())
    assert r == pytest.approx(np.corrcoef(final.twonn, final.test_acc)[0, 1])
    z, half = np.arctanh(r), 1.959964 / np.sqrt(len(final) - 3)
    assert (low, high) == pytest.approx((np.tanh(z - half), np.tanh(z + half)), abs=1e-6)
    assert f"Pearson r = {r:.2f}" in page
    assert correlation(np.arange(3.0), np.arange(3.0)) is None and correlation(np.ones(5), np.arange(5.0)) is None
    # not a sweep, not a folder
    assert CliRunner().invoke(app, ["report", str(tmp_path / "nothing")]).exit_code == 2


def test_locations_of_sweep_folders(tmp_path):
    import pyarrow.fs as pafs

    from layerscope.store.remote import Mirror, location

    assert location(tmp_path.as_uri()).local() == tmp_path and location("runs").local() == (Path.cwd() / "runs")
    with pytest.raises(ValueError, match=r"'gs:/bucket' looks like a URI with one slash; write 'gs://bucket'"):
        location("gs:/bucket")
    with pytest.raises(ValueError, match="cannot open 'nosuch://x'"):
        location("nosuch://x")
    # a mirror uploads the training state after the results it refers to, and never the lock or temporaries
    remote = tmp_path / "remote"
    remote.mkdir()
    where = location("run", pafs.SubTreeFileSystem(str(remote), pafs.LocalFileSystem()))
    mirror = Mirror(where, local=tmp_path / "work")
    mirror.download()
    order = []
    original = type(where).write_bytes
    try:
        type(where).write_bytes = lambda self, name, data: (order.append(name), original(self, name, data))[1]
        (tmp_path / "work" / "results").mkdir()
        for name in ("results/step-000000001.parquet", "state.pt", "run.parquet", ".lock", ".state.pt.tmp-1"):
            (tmp_path / "work" / name).write_text(name)
        assert mirror.upload() == 3 and mirror.upload() == 0
    finally:
        type(where).write_bytes = original
    assert order == ["results/step-000000001.parquet", "state.pt", "run.parquet"]
    assert sorted(p.name for p in (remote / "run").rglob("*") if p.is_file()) == [
        "run.parquet",
        "state.pt",
        "step-000000001.parquet",
    ]


def test_a_trial_that_raises_once_is_retried_from_its_checkpoint(tmp_path, local_ray, monkeypatch):
    """An injected fault: the first attempt of one trial raises after step 40 (a few checkpoints in);
    Ray retries it, the retry resumes from the last checkpoint, and the table equals an unfailed run's."""
    import sys

    from ray import cloudpickle  # the pickler Ray sends tasks with

    import layerscope.sweep as engine

    path = write(tmp_path, name="flaky", epochs=3)
    _, trials = load_sweep(path)
    victim, marker, real = trials[0].name, tmp_path / "failed-once", engine._run_trial

    def flaky(config, target, threads, progress=None):
        if config["name"] == victim and not marker.exists():
            marker.write_text("the first attempt raised")

            def boom(step, total):
                if step == 40:
                    raise RuntimeError("injected fault")

            return real(config, target, threads, boom)
        return real(config, target, threads, progress)

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    try:
        monkeypatch.setattr(engine, "_run_trial", flaky)
        folder, states = run_sweep(path, tmp_path / "out", poll=0.05)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists() and [s.status for s in states] == ["finished"] * 4
    run_dir = folder / victim
    assert states[0].retries == 1 and RunStore(run_dir).read_run().resumes == 1
    assert RunStore(run_dir).read_run().error is None
    _same_as_a_plain_run(run_dir, trials[0].config, tmp_path)
