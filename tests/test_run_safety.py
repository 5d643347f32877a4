"""What survives what: run names, --overwrite, the run-folder lock, kills, crashes, corrupt files."""

import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from layerscope.analysis.phases import PHASES_SCHEMA
from layerscope.cli import app
from layerscope.config import ConfigError, parse_config
from layerscope.report import make_report
from layerscope.runner import execute, resume
from layerscope.store import SCHEMA, CorruptRunError, RunLockedError, RunStore, atomic_write, load, load_runs

runner = CliRunner()


def tiny(name="t", **train):
    return parse_config(
        {
            "name": name,
            "data": {"name": "digits", "probe_size": 100},
            "model": {"name": "mlp", "params": {"width": 16, "depth": 1}},
            "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "epochs": 1, **train},
            "schedule": {"kind": "log", "num": 3},
            "probes": {"measures": ["twonn"]},
        }
    )


def quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- names and --overwrite


@pytest.mark.parametrize("name", ["..", ".", "...", ".hidden", "a/b", "", "-x", "x" * 200])
def test_run_name_is_a_plain_folder_name(name):
    with pytest.raises(ConfigError, match="name: name must start with a letter or digit"):
        parse_config({"name": name})


def test_overwrite_deletes_only_a_run_under_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("keep me")
    (out / "t").mkdir()
    (out / "t" / "notes.txt").write_text("not a run")
    # a folder of the run's name that is not a run: refused, nothing deleted, with or without --overwrite
    for flag in ([], ["--overwrite"]):
        path = tmp_path / "c.toml"
        path.write_text(
            'name = "t"\n[data]\nname = "digits"\nprobe_size = 100\n[model]\nname = "mlp"\n[train]\nepochs = '
            '1\n[probes]\nmeasures = ["twonn"]\n'
        )
        result = runner.invoke(app, ["run", str(path), "--out", str(out), *flag, "--no-report"])
        assert result.exit_code == 2 and "is not a layerscope run" in result.output, result.output
        assert (out / "t" / "notes.txt").read_text() == "not a run"
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="not a layerscope run"):
        RunStore(out / "t").clear()
    # a symbolic link named like the run is never followed for deletion
    (out / "u").symlink_to(tmp_path)
    with pytest.raises(FileExistsError, match="symbolic link"):
        execute(tiny("u"), out / "u", overwrite=True)
    assert (tmp_path / "precious.txt").exists()


def test_overwrite_replaces_a_run_and_keeps_its_siblings(tmp_path):
    quietly(execute, tiny("a"), tmp_path / "a")
    quietly(execute, tiny("b"), tmp_path / "b")
    before = load(tmp_path / "b")
    quietly(execute, tiny("a", epochs=2), tmp_path / "a", overwrite=True)
    assert RunStore(tmp_path / "a").read_run().config["train"]["epochs"] == 2
    pd.testing.assert_frame_equal(load(tmp_path / "b"), before)


# ---------------------------------------------------------------- the lock

HOLD = """
import sys, time
from layerscope.store import RunStore
lock = RunStore(sys.argv[1]).lock()
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def hold_lock(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    proc = hold_lock(tmp_path / "r")
    try:
        with pytest.raises(RunLockedError, match=rf"in use by pid {proc.pid} on host"):
            execute(tiny("r"), tmp_path / "r")
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "r" / ".lock").exists()  # the dead process's lock file is still there ...
    quietly(execute, tiny("r"), tmp_path / "r")  # ... and taken over
    assert RunStore(tmp_path / "r").read_run().status == "finished"


# The command line in a child process, with Ctrl-C's usual meaning: a process started in the
# background by a shell without job control (`cmd &` in a script, as CI or nohup may do) inherits
# SIGINT ignored, and Python then never raises KeyboardInterrupt: the SIGINT test failed that way.
_CLI = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv[0] = 'layerscope'; "
    "runpy.run_module('layerscope.cli', run_name='__main__')"
)


def cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )


def write_config(path, name="c", epochs=30):
    path.write_text(
        f'name = "{name}"\n[data]\nname = "digits"\nprobe_size = 150\n[model]\nname = "mlp"\nparams = '
        f"{{width = 32, depth = 2}}\n"
        f'[train]\noptimizer = "adam"\nlr = 0.003\nbatch_size = 64\nepochs = {epochs}\n'
        '[schedule]\nkind = "every"\nevery = 25\n[probes]\nmeasures = ["twonn", "pc_id"]\n'
    )
    return path


def test_two_runs_started_together_on_one_folder(tmp_path):
    config = write_config(tmp_path / "c.toml", epochs=3)
    procs = [cli("run", str(config), "--out", str(tmp_path / "out"), "--no-report") for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read() + p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(text for code, text in outcomes if code == 2)
    assert "is in use by pid" in loser or "holds a run already" in loser
    store = RunStore(tmp_path / "out" / "c")
    assert store.read_run().status == "finished"
    results = store.results()
    assert (
        sorted(results.step.unique()) == store.completed_steps()
        and not results.duplicated(["step", "split", "layer", "metric"]).any()
    )


# ---------------------------------------------------------------- kills


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    config = write_config(folder / "c.toml")
    proc = cli("run", str(config), "--out", str(folder), "--no-report")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return config, load(folder / "c")


@pytest.mark.parametrize(
    "sig,status,code",
    [(signal.SIGTERM, "interrupted", 143), (signal.SIGINT, "interrupted", 130), (signal.SIGKILL, "running", -9)],
)
def test_killed_run_keeps_its_checkpoints_and_resumes_exactly(tmp_path, reference_run, sig, status, code):
    config, reference = reference_run
    proc = cli("run", str(config), "--out", str(tmp_path), "--no-report")
    store = RunStore(tmp_path / "c")
    deadline = time.time() + 120
    while len(store.completed_steps()) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code, proc.stderr.read()
    kept = store.completed_steps()
    output = proc.stdout.read() + proc.stderr.read()
    assert 3 <= len(kept) < reference.step.nunique(), (kept, sorted(reference.step.unique()), output)
    assert store.read_run().status == status, (store.read_run(), output)
    if sig != signal.SIGKILL:  # a killed process cannot remove the temporary file it was writing
        assert not [p for p in (tmp_path / "c").rglob("*") if ".tmp" in p.name]
    partial = store.results()  # every kept checkpoint is whole
    assert sorted(partial.step.unique()) == kept, (sorted(partial.step.unique()), kept)
    proc = cli("run", "--resume", str(tmp_path / "c"), "--no-report")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert not [p for p in (tmp_path / "c").rglob("*") if ".tmp" in p.name]  # a resumed run clears them
    resumed = load(tmp_path / "c")
    key = ["step", "split", "layer", "metric"]
    pd.testing.assert_frame_equal(
        resumed.sort_values(key).reset_index(drop=True), reference.sort_values(key).reset_index(drop=True)
    )
    assert store.read_run().status == "finished"


# ---------------------------------------------------------------- durable writes


def test_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: (events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))), real_fsync(fd))[1],
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append(("replace", os.path.basename(b))), real_replace(a, b))[1]
    )
    frame = pd.DataFrame({c: [] for c in SCHEMA.names})
    RunStore(tmp_path / "r").write_checkpoint(5, frame)
    name = "step-000000005.parquet"
    assert events[0][0] == "fsync" and events[0][1].startswith(f".{name}.tmp")
    assert events[1] == ("replace", name)
    assert events[2] == ("fsync", "results")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def full_disk(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, full_disk)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]


# ---------------------------------------------------------------- status after a crash


def test_failed_run_is_marked_with_its_error_and_can_be_rerun(tmp_path):
    bad = parse_config({**tiny("r").model_dump(mode="json"), "probes": {"measures": ["twonn"], "layers": ["relu9"]}})
    with pytest.raises(ConfigError, match="relu9"):
        execute(bad, tmp_path / "r")
    info = RunStore(tmp_path / "r").read_run()
    assert info.status == "failed" and "relu9" in info.error
    quietly(
        execute, tiny("r"), tmp_path / "r"
    )  # failed before its first checkpoint: nothing to keep, no --overwrite needed
    assert RunStore(tmp_path / "r").read_run().status == "finished"


def test_diverged_run_is_marked_failed(tmp_path):
    with pytest.raises(FloatingPointError, match="diverged"):
        quietly(execute, tiny("d", optimizer="sgd", lr=1e8, epochs=3), tmp_path / "d")
    info = RunStore(tmp_path / "d").read_run()
    assert info.status == "failed" and "diverged" in info.error
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and "failed" in result.output


# ---------------------------------------------------------------- the results table keeps its types


def test_report_without_phases_keeps_the_value_column_float(tmp_path):
    # Too few checkpoints for any phase: an empty phases table. Reading the results
    # back must still give float values (pandas 3 turned them into object before).
    run = quietly(execute, tiny("p"), tmp_path / "p")
    make_report(run)
    phases = RunStore(run).read_derived("phases", PHASES_SCHEMA)
    assert phases.empty and list(phases.columns) == PHASES_SCHEMA.names
    results = load(run)
    assert results.value.dtype == np.float64 and results.error.dtype == np.float64 and results.step.dtype == np.int64
    assert np.isfinite(np.corrcoef(results.value, results.value)[0, 1])
    # the SQL view of the measurements holds measurements only
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{run}/results/*.parquet')").fetchall()[0][0] == len(results)


# ---------------------------------------------------------------- corrupt files


def test_corrupt_files_give_one_line_errors(tmp_path):
    quietly(execute, tiny("a"), tmp_path / "a")
    quietly(execute, tiny("b"), tmp_path / "b")
    # a truncated state.pt: a clear error, and never the advice to unpickle it unsafely
    state = tmp_path / "a" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    result = runner.invoke(app, ["run", "--resume", str(tmp_path / "a")])
    assert result.exit_code == 2 and "state.pt cannot be read" in result.output
    assert "weights_only=False" not in result.output
    # a truncated run.parquet: `runs` lists the readable runs and marks the broken one
    table = tmp_path / "b" / "run.parquet"
    table.write_bytes(table.read_bytes()[:50])
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (
        "unreadable" in result.output and "finished" in result.output and "run.parquet cannot be read" in result.output
    )
    assert list(load_runs(tmp_path).status) == ["finished", "unreadable"]
    with pytest.raises(CorruptRunError, match="run.parquet cannot be read"):
        resume(tmp_path / "b")
    # a corrupt checkpoint: the report is written from the others, with a warning naming the file
    bad = RunStore(tmp_path / "a").checkpoint_files()[-1]
    bad.write_bytes(b"PAR1 garbage")
    with pytest.warns(UserWarning, match=f"{bad.name} cannot be read"):
        page = make_report(tmp_path / "a")
    assert page.exists()


def test_files_in_results_that_layerscope_did_not_write_are_not_checkpoints(tmp_path):
    quietly(execute, tiny("a"), tmp_path / "a")
    steps = RunStore(tmp_path / "a").completed_steps()
    some = RunStore(tmp_path / "a").checkpoint_files()[0]
    for foreign in ("step-1-old.parquet", "step-final.parquet", "step-5.parquet", "step-0000000010.parquet"):
        (tmp_path / "a" / "results" / foreign).write_bytes(some.read_bytes())
    assert RunStore(tmp_path / "a").completed_steps() == steps and len(steps) == 3
    assert sorted(load(tmp_path / "a").step.unique()) == steps
    result = runner.invoke(app, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and re.search(r"\ba\b.*finished.*\b3\b", result.output), result.output


def test_the_readme_main_command_warns_of_nothing_in_its_own_preset(tmp_path):
    """`layerscope run --preset quick` measures alpha where it applies and says nothing of the 10 logits, where it
    cannot.
    """
    from layerscope.presets import preset
    from layerscope.probes.geometry import estimate_layer

    cfg = preset("quick")
    assert "alpha" in cfg.probes.estimators and "output" in cfg.probes.layers
    X = torch.randn(500, 10)  # the quick net's output: 10 logits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = estimate_layer("output", X, cfg.probes.estimators)
    assert {r.metric for r in rows} == {"n_features", "twonn", "pc_id", "participation_ratio"}
    rows = estimate_layer("relu3", torch.randn(500, 64) * torch.arange(1, 65) ** -0.7, cfg.probes.estimators)
    assert "alpha" in {r.metric for r in rows}  # wide enough: measured
    skipped = []
    estimate_layer("flat", torch.ones(500, 64), ["alpha"], on_skip=lambda *a: skipped.append(a))
    assert skipped and skipped[0][:2] == ("flat", "alpha")  # a wide layer that fails is still reported


def test_divergence_found_without_a_sync_per_step_names_the_first_bad_step():
    """With finiteness read every 25 steps (as on a GPU), the error still names the first non-finite
    step, and no checkpoint after it reaches the callbacks."""
    import torch
    from torch import nn

    from layerscope.train import TrainConfig, train, training_plan
    from layerscope.train.schedule import ScheduleConfig

    torch.manual_seed(0)
    x, y = torch.randn(640, 5), torch.randint(0, 3, (640,))
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    settings = TrainConfig(optimizer="sgd", lr=0.05, batch_size=64, epochs=10)
    plan = training_plan(settings, ScheduleConfig(kind="every", every=40), len(x))
    seen = []

    class Poison:
        def on_checkpoint(self, model, step, epoch, metrics):
            seen.append(step)
            if step == 40:
                with torch.no_grad():
                    model[0].weight[0, 0] = float("nan")  # every later loss is NaN, from step 40 on

    with pytest.raises(FloatingPointError, match="training diverged at step 40: loss is nan"):
        train(model, x, y, x, y, settings, plan, callbacks=[Poison()], finite_check_every=25)
    assert seen == [0, 40]  # the checkpoint at step 80 was never measured
