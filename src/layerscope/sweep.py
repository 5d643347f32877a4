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
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import ConfigError, RunConfig, check_folder_name, load_config, parse_config, read_file


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


def _run_trial(config: dict[str, Any], run_dir: str, threads: int) -> str:
    """Finish one trial in ``run_dir``: start it, or resume it from its last checkpoint, or nothing if it is finished.

    Idempotent, so that Ray can run it again after a failure (a retry resumes).
    """
    import warnings

    import torch

    from .runner import execute, resume
    from .store import RunStore

    torch.set_num_threads(max(1, threads))
    warnings.simplefilter("ignore")  # the trial's warnings stay in its own process
    store = RunStore(run_dir)
    if store.is_run():
        if store.read_run()["status"] == "finished":
            return "finished"
        resume(run_dir)
    else:
        execute(parse_config(config, f"trial {Path(run_dir).name}"), run_dir)
    return "finished"


@dataclass(frozen=True)
class Outcome:
    """How a trial ended in this invocation: ``finished``, ``skipped`` (finished before) or ``failed`` (with the error)."""

    trial: str
    status: str
    error: str | None = None


def run_sweep(
    path: str | Path,
    out: str | Path = "runs",
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    on_event: Callable[[str, str], None] | None = None,
) -> tuple[Path, list[Outcome]]:
    """Run the sweep of ``path`` into ``out/NAME`` on Ray; finished trials are kept, interrupted ones resumed.

    Parameters
    ----------
    path : str or Path
        The sweep file.
    out : str or Path
        The sweep's folder goes into it.
    address : str, optional
        A Ray cluster's address (``"auto"``, ``"ray://host:10001"``); default: a
        local Ray started here.
    max_concurrent : int, optional
        Trials at once (default: as many as the resources allow).
    on_event : callable, optional
        ``on_event(trial, status)`` when a trial is submitted, finishes or fails.

    Returns
    -------
    folder, outcomes
    """
    try:
        import ray
    except ImportError:
        raise ImportError("sweeps run on Ray: pip install 'layerscope[ray]'") from None
    from .store import RunStore

    sweep, trials = load_sweep(path)
    folder = Path(out) / sweep.name
    folder.mkdir(parents=True, exist_ok=True)
    write_trials(folder, sweep, trials)
    notify = on_event or (lambda trial, status: None)
    todo, outcomes = [], []
    for trial in trials:
        store = RunStore(folder / trial.name)
        if store.is_run() and store.read_run().get("status") == "finished":
            outcomes.append(Outcome(trial.name, "skipped"))
            notify(trial.name, "skipped")
        else:
            todo.append(trial)
    if not todo:
        return folder, outcomes
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(_run_trial).options(
            num_cpus=sweep.resources.cpu,
            num_gpus=sweep.resources.gpu,
            max_retries=sweep.max_failures,
            retry_exceptions=True,
        )
        threads = max(1, int(sweep.resources.cpu))
        pending: dict[Any, Trial] = {}
        queue = list(todo)
        limit = max_concurrent or len(queue)
        while queue or pending:
            while queue and len(pending) < limit:
                trial = queue.pop(0)
                pending[task.remote(trial.config.model_dump(mode="json"), str((folder / trial.name).resolve()), threads)] = trial
                notify(trial.name, "submitted")
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                trial = pending.pop(ref)
                try:
                    ray.get(ref)
                    outcomes.append(Outcome(trial.name, "finished"))
                    notify(trial.name, "finished")
                except Exception as err:  # noqa: BLE001 - a trial that keeps failing is recorded; the sweep goes on
                    cause = getattr(err, "cause", None) or err
                    message = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                    outcomes.append(Outcome(trial.name, "failed", message))
                    notify(trial.name, f"failed ({message})")
    finally:
        if started_here:
            ray.shutdown()
    write_trials(folder, sweep, trials)
    return folder, outcomes


def write_trials(folder: Path, sweep: SweepConfig, trials: list[Trial]) -> None:
    """``trials.parquet``: one row per trial with its axis values (as strings, a column per axis) and its status."""
    from .store import CorruptRunError, RunStore, atomic_write

    rows = []
    for trial in trials:
        store = RunStore(folder / trial.name)
        status = "pending"
        if store.is_run():
            try:
                status = str(store.read_run().get("status"))
            except CorruptRunError:
                status = "unreadable"
        rows.append({"run_id": trial.name, "sweep": sweep.name, "status": status, **{k: str(v) for k, v in trial.values.items()}})
    frame = pd.DataFrame(rows)
    atomic_write(folder / "trials.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
