"""Sweeps: a grid of tracked runs, on Ray (a local Ray by default, a cluster with ``address``).

A sweep file names a base config (a preset or a config file), overrides applied to
every trial, and axes over dotted config fields, expanded as a grid; optional named
variants move several fields together::

    name = "optimizers"
    base = "smoke"                  # preset name, or a config file (relative to this file)
    max_failures = 2                # retries of a trial that fails (it resumes, not restarts)
    [resources]                     # per trial; torch uses as many threads as CPUs
    cpu = 1
    [overrides]
    "train.epochs" = 2
    [axes]
    seed = [0, 1]
    "train.optimizer" = ["sgd", "adam"]
    [[variants]]                    # optional: each is one more axis value, several fields at once
    name = "small-lr"
    "train.lr" = 0.001

Every trial is a normal run in ``OUT/NAME/TRIAL`` (named from its axis values, the
same at every invocation), validated before anything starts. ``OUT/NAME/trials.parquet``
lists the trials with their axis values; :func:`layerscope.store.load` on
``OUT/NAME`` returns every trial's rows with those values as columns.

Why Ray core tasks, not Ray Tune: a layerscope run already keeps its own state in
its folder and resumes from its last checkpoint, so a trial is an idempotent task
("finish this run"). Ray's task retries (``max_retries`` for a dead worker or node,
``retry_exceptions`` for an error) then give fault tolerance, and running the sweep
again gives restore, with nothing of Tune's own checkpointing and experiment state
to keep in step with the run folders.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import ConfigError, RunConfig, check_folder_name, load_config, parse_config, read_file
from .store.remote import Location, Mirror, location


class Resources(BaseModel):
    """What one trial needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)


class SweepConfig(BaseModel):
    """A sweep file, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base: str = Field(description="a preset name, or a config file (relative to the sweep file)")
    overrides: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    variants: list[dict[str, Any]] = []
    resources: Resources = Resources()
    max_failures: int = Field(2, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_folder_name(v)

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            if len({repr(x) for x in values}) != len(values):
                raise ValueError(f"axis {key!r} repeats a value")
        return v

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = [variant.get("name") for variant in v]
        if any(not isinstance(n, str) or not n for n in names):
            raise ValueError("every variant needs a name")
        if len(set(names)) != len(names):
            raise ValueError("variant names must differ")
        return v


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its folder name, its values on the axes, its config."""

    name: str
    values: dict[str, Any]
    config: RunConfig


def load_sweep(path: str | Path) -> tuple[SweepConfig, list[Trial]]:
    """Read a sweep file and expand it into its trials, every config validated.

    Raises
    ------
    ConfigError
        A bad sweep field, or a trial whose config does not validate (the message
        names the trial and the field).
    """
    path = Path(path)
    raw = read_file(path, "sweep")
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as err:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors()]
        raise ConfigError(f"invalid {path}:\n  " + "\n  ".join(lines)) from None
    return sweep, expand(sweep, _base(sweep.base, path.parent))


def _base(base: str, folder: Path) -> RunConfig:
    from .experiments import PRESETS, preset

    if base in PRESETS:
        return preset(base)
    candidate = Path(base) if Path(base).is_absolute() else folder / base
    if candidate.is_file():
        return load_config(candidate)
    raise ConfigError(f"base {base!r} is neither a preset ({', '.join(PRESETS)}) nor a config file")


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``config["a"]["b"] = value`` for ``dotted = "a.b"``, creating tables on the way."""
    *path, last = dotted.split(".")
    node = config
    for key in path:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key!r} is not a table of the config")
    node[last] = value


def _label(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-")
    return text or "x"


def expand(sweep: SweepConfig, base: RunConfig) -> list[Trial]:
    """The trials of a sweep: every combination of the axes (and variants), each a validated RunConfig."""
    axes = dict(sweep.axes)
    if sweep.variants:
        axes["variant"] = [v["name"] for v in sweep.variants]
    variants = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in sweep.variants}
    trials, names = [], set()
    for combination in itertools.product(*axes.values()) if axes else [()]:
        values = dict(zip(axes, combination))
        name = "_".join(f"{key.split('.')[-1]}-{_label(value)}" for key, value in values.items()) or "trial"
        if len(name) > 128 or name in names:  # too long, or two values that read alike (-1 and 1): a hash of the values
            name = name[:115] + "-" + hashlib.sha1(repr(sorted(values.items())).encode()).hexdigest()[:12]
        names.add(name)
        raw = base.model_dump(mode="json")
        for key, value in sweep.overrides.items():
            _set(raw, key, value)
        for key, value in values.items():
            if key == "variant":
                for field, x in variants[value].items():
                    _set(raw, field, x)
            else:
                _set(raw, key, value)
        raw["name"] = name
        trials.append(Trial(name, values, parse_config(raw, f"trial {name!r} of sweep {sweep.name!r}")))
    return trials


def _run_trial(config: dict[str, Any], target: Location, threads: int | None, progress: Callable[[int, int], None] | None = None) -> str:
    """Finish one trial in ``target``: start it, or resume it from its last checkpoint, or nothing if it is finished.

    Idempotent, so that Ray can run it again after a failure (a retry resumes). A
    trial whose folder is not local runs in a local copy that is uploaded as it
    goes (:class:`layerscope.store.remote.Mirror`), so a retry on another machine
    resumes from the last uploaded checkpoint.
    """
    import warnings

    import torch

    if threads is not None:  # a Ray worker: as many threads as the trial's CPUs, so trials side by side do not fight
        torch.set_num_threads(max(1, threads))
    if progress is None:
        warnings.simplefilter("ignore")  # on a worker: the trial's warnings stay in its own process
    if target.is_local:
        return _finish(config, target.local(), progress)
    with Mirror(target) as local:
        return _finish(config, local, progress)


def _finish(config: dict[str, Any], run_dir: Path, progress: Callable[[int, int], None] | None) -> str:
    from .runner import execute, resume
    from .store import RunStore

    store = RunStore(run_dir)
    if store.is_run():
        if store.read_run()["status"] == "finished":
            return "finished"
        resume(run_dir, progress=progress)
    else:
        execute(parse_config(config, f"trial {run_dir.name}"), run_dir, progress=progress)
    return "finished"


@dataclass
class TrialState:
    """Where a trial stands: ``pending``, ``running``, ``finished``, ``skipped`` (finished before) or ``failed``.

    ``step`` is its last finished checkpoint of ``total_steps``, ``test_acc`` the
    test accuracy measured there, ``retries`` how often it was resumed after a
    failure in this invocation, ``error`` why it failed.
    """

    name: str
    values: dict[str, Any]
    status: str = "pending"
    step: int | None = None
    total_steps: int | None = None
    test_acc: float | None = None
    retries: int = 0
    error: str | None = None


@dataclass(frozen=True)
class _Peek:
    status: str | None
    resumes: int
    total_steps: int | None
    last_step: int | None  # the last finished checkpoint
    last_file: str | None  # its results file, relative to results/


def _peek(run: Location) -> _Peek:
    """A trial's state read from its folder (local or remote) without taking its lock."""
    try:
        info = pq.read_table(io.BytesIO(run.read_bytes("run.parquet"))).to_pylist()[0]
    except (OSError, IndexError, ValueError):  # not written yet, or being replaced
        return _Peek(None, 0, None, None, None)
    files = sorted(f for f in run.join("results").files() if f.startswith("step-") and f.endswith(".parquet"))
    total = info.get("total_steps")
    last = files[-1] if files else None
    return _Peek(info.get("status"), int(info.get("resumes") or 0), None if total is None else int(total),
                 None if last is None else int(last.removeprefix("step-").removesuffix(".parquet")), last)


def _test_acc(run: Location, step_file: str) -> float | None:
    try:
        rows = pq.read_table(io.BytesIO(run.join("results").read_bytes(step_file)), columns=["layer", "metric", "value"]).to_pylist()
    except (OSError, ValueError):
        return None
    return next((r["value"] for r in rows if r["metric"] == "test_acc" and r["layer"] == ""), None)


def _error_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err  # Ray wraps a task's exception; its cause is the trial's own
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"


def run_trials(
    folder: Location,
    trials: list[Trial],
    *,
    resources: Resources | None = None,
    max_failures: int = 2,
    address: str | None = None,
    max_concurrent: int | None = None,
    on_progress: Callable[[list[TrialState]], None] | None = None,
    require_ray: bool = True,
    poll: float = 1.0,
) -> list[TrialState]:
    """The engine: finish every trial in ``folder/TRIAL`` on Ray, retrying failures from their checkpoints.

    Finished trials are skipped, interrupted ones resumed. ``on_progress(states)`` is
    called about every ``poll`` seconds with every trial's :class:`TrialState`.
    Without Ray installed, ``require_ray=False`` runs the trials one after another
    in this process (``reproduce`` does, so that it works without the extra);
    otherwise an ImportError says how to install it.
    """
    resources = resources or Resources()
    notify = on_progress or (lambda states: None)
    states = {t.name: TrialState(t.name, t.values) for t in trials}
    todo = []
    for trial in trials:
        if _peek(folder.join(trial.name)).status == "finished":
            _update(states[trial.name], folder.join(trial.name), 0)
            states[trial.name].status = "skipped"
        else:
            todo.append(trial)
    notify(list(states.values()))
    if not todo:
        return list(states.values())
    try:
        import ray
    except ImportError:
        if require_ray or address is not None:
            raise ImportError("sweeps run on Ray: pip install 'layerscope[ray]'") from None
        return _run_here(folder, todo, states, notify)
    started_here = not ray.is_initialized()
    if started_here:
        # "local": a new Ray of this machine's CPUs, never a stale cluster left in /tmp/ray by an earlier process
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _run_on_ray(ray, folder, todo, states, resources, max_failures, max_concurrent, notify, poll)
    finally:
        if started_here:
            ray.shutdown()
    return list(states.values())


def _update(state: TrialState, run: Location, first_resume: int) -> None:
    peek = _peek(run)
    if peek.status == "running":
        state.status = "running"
    state.total_steps = peek.total_steps or state.total_steps
    state.retries = max(state.retries, peek.resumes - first_resume)
    if peek.last_step is not None and peek.last_step != state.step:
        state.step, state.test_acc = peek.last_step, _test_acc(run, peek.last_file)


def _run_on_ray(ray: Any, folder: Location, todo: list[Trial], states: dict[str, TrialState], resources: Resources,
                max_failures: int, max_concurrent: int | None, notify: Callable[[list[TrialState]], None], poll: float) -> None:
    task = ray.remote(_run_trial).options(num_cpus=resources.cpu, num_gpus=resources.gpu, max_retries=max_failures, retry_exceptions=True)
    threads = max(1, int(resources.cpu))
    pending: dict[Any, tuple[Trial, int]] = {}
    queue = list(todo)
    limit = max_concurrent or len(queue)
    while queue or pending:
        while queue and len(pending) < limit:
            trial = queue.pop(0)
            peek = _peek(folder.join(trial.name))
            # the resume count its first attempt here will write: a later, higher count is a retry
            first = peek.resumes + 1 if peek.status is not None else 0
            pending[task.remote(trial.config.model_dump(mode="json"), folder.join(trial.name), threads)] = (trial, first)
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll)
        for ref, (trial, first) in list(pending.items()):
            state = states[trial.name]
            _update(state, folder.join(trial.name), first)
            if ref not in done:
                continue
            del pending[ref]
            try:
                ray.get(ref)
                state.status = "finished"
            except Exception as err:  # noqa: BLE001 - a trial that keeps failing is recorded; the sweep goes on
                state.status, state.error = "failed", _error_line(err)
        notify(list(states.values()))


def _run_here(folder: Location, todo: list[Trial], states: dict[str, TrialState], notify: Callable[[list[TrialState]], None]) -> list[TrialState]:
    for trial in todo:
        state = states[trial.name]
        state.status = "running"

        def progress(step: int, total: int, state: TrialState = state) -> None:
            state.step, state.total_steps = step, total
            notify(list(states.values()))

        try:
            _run_trial(trial.config.model_dump(mode="json"), folder.join(trial.name), None, progress)
            _update(state, folder.join(trial.name), 0)
            state.status = "finished"
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - recorded, like a trial on Ray
            state.status, state.error = "failed", _error_line(err)
        notify(list(states.values()))
    return list(states.values())


def run_sweep(
    path: str | Path,
    out: str | Path = "runs",
    *,
    filesystem: Any = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    on_progress: Callable[[list[TrialState]], None] | None = None,
    poll: float = 1.0,
) -> tuple[Path | Location, list[TrialState]]:
    """Run the sweep of ``path`` into ``out/NAME`` on Ray; finished trials are kept, interrupted ones resumed.

    Parameters
    ----------
    path : str or Path
        The sweep file.
    out : str or Path
        The sweep's folder goes into it: a local path (an NFS mount shared by the
        cluster's machines included) or a URI that pyarrow understands
        (``s3://bucket/sweeps``, ``gs://...``, ``file:///...``).
    filesystem : pyarrow.fs.FileSystem, optional
        A configured filesystem (credentials, endpoint) on which ``out`` is a path.
    address : str, optional
        A Ray cluster's address (``"auto"``, ``"ray://host:10001"``); default: a
        local Ray started here.
    max_concurrent : int, optional
        Trials at once (default: as many as the resources allow).
    on_progress : callable, optional
        ``on_progress(states)`` every ``poll`` seconds, with every trial's :class:`TrialState`.

    Returns
    -------
    folder, states
        The sweep's folder (a Path when it is local, else a
        :class:`~layerscope.store.remote.Location`) and every trial's final state.
    """
    sweep, trials = load_sweep(path)
    folder = location(out, filesystem).join(sweep.name)
    if folder.is_local:
        folder.local().mkdir(parents=True, exist_ok=True)
    write_trials(folder, sweep.name, trials)
    try:
        states = run_trials(folder, trials, resources=sweep.resources, max_failures=sweep.max_failures, address=address,
                            max_concurrent=max_concurrent, on_progress=on_progress, poll=poll)
    finally:
        write_trials(folder, sweep.name, trials)
    return (folder.local() if folder.is_local else folder), states


def write_trials(folder: Location | Path, sweep: str, trials: list[Trial]) -> None:
    """``trials.parquet``: one row per trial with its axis values (as strings, a column per axis) and its status."""
    from .store import atomic_write

    folder = location(folder)
    rows = [{"run_id": t.name, "sweep": sweep, "status": _peek(folder.join(t.name)).status or "pending", **{k: str(v) for k, v in t.values.items()}}
            for t in trials]
    frame = pd.DataFrame(rows)
    if folder.is_local:
        atomic_write(folder.local() / "trials.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        folder.write_bytes("trials.parquet", buffer.getvalue())
