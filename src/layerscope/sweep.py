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
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import ConfigError, RunConfig, check_folder_name, load_config, parse_config, read_file
from .measure import MeasureConfig, find_checkpoints, measure, merge_parts, parse_measure_config
from .store import CorruptRunError, Peek, RunLockedError, RunStore, checkpoint_value, move_run, peek
from .store.remote import Location, location, working_copy


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

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            _check_field(key)
        return v

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            _check_field(key)
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
        for variant in v:
            for key in variant:
                if key != "name":
                    _check_field(key)
        return v

    @model_validator(mode="after")
    def _one_source_per_field(self) -> SweepConfig:
        """A field set by an axis and by an override or a variant would train at one value while labelled with
        another."""
        if self.variants and "variant" in self.axes:
            raise ValueError("an axis named 'variant' clashes with the variants' own axis; rename it")
        setters = [(f"overrides set {key!r}", key) for key in self.overrides]
        setters += [(f"variant {v['name']!r} sets {key!r}", key) for v in self.variants for key in v if key != "name"]
        for axis in self.axes:
            for who, key in setters:
                if key == axis or key.startswith(axis + ".") or axis.startswith(key + "."):
                    raise ValueError(
                        f"{who}, which the axis {axis!r} varies: a trial labelled with the axis's value would train at "
                        "the other one; set the field in one place"
                    )
        return self


def _check_field(key: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ValueError(f"{key!r} is not a config field (a dotted path such as 'train.lr')")
    return key


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its folder name, its values on the axes, its config."""

    name: str
    values: dict[str, Any]
    config: RunConfig | MeasureConfig


def _payload(config: RunConfig | MeasureConfig) -> dict[str, Any]:
    """What a worker gets of a trial's config: a run's config, or a measure's (marked as one)."""
    if isinstance(config, MeasureConfig):
        return {"kind": "measure", "measure": config.model_dump(mode="json")}
    return config.model_dump(mode="json")


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
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        ]
        raise ConfigError(f"invalid {path}:\n  " + "\n  ".join(lines)) from None
    return sweep, expand(sweep, _base(sweep.base, path.parent))


def _base(base: str, folder: Path) -> RunConfig:
    from .presets import PRESETS, preset

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


def _digest(value: Any, n: int) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:n]


def _label(value: Any) -> str:
    """An axis value as it reads in a trial's name, a function of the value alone (not of the other values).

    A value whose text is its own (a number, ``true``/``false``, a word of letters,
    digits, '.' and '-' that does not read as a number) is that text; any other (a
    text with other characters, one that reads as a number or a boolean, a list) is
    a readable part and a hash of the value: ``"a b"`` and ``"a-b"`` give two
    names, whatever their order, and so do ``1`` and ``"1"``. Plain texts never end
    in '-' and ten hexadecimal digits, so a plain label never equals a hashed one.
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        text = repr(value)
        plain = re.fullmatch(r"[A-Za-z0-9.-]+", text) is not None
    elif isinstance(value, str):
        text = value
        plain = (
            re.fullmatch(r"[A-Za-z0-9.-]+", text) is not None
            and not re.search(r"-[0-9a-f]{10}$", text)
            and not _reads_as_scalar(text)
        )
    else:
        text, plain = str(value), False
    if plain:
        return text
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:40] or "x"
    return f"{readable}-{_digest(value, 10)}"


def _reads_as_scalar(text: str) -> bool:
    if text.lower() in ("true", "false", "none", "null"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def trial_name(values: dict[str, Any]) -> str:
    """A trial's folder name from its axis values alone: ``seed-0_lr-0.1``; a hash of all values when it would be too
    long.
    """
    name = "_".join(f"{key.split('.')[-1]}-{_label(value)}" for key, value in values.items()) or "trial"
    if len(name) > 128:
        name = name[:115].rstrip("-_.") + "-" + _digest(sorted(values.items()), 12)
    return name


def expand(sweep: SweepConfig, base: RunConfig) -> list[Trial]:
    """The trials of a sweep: every combination of the axes (and variants), each a validated RunConfig.

    Raises
    ------
    ConfigError
        A trial's config does not validate, or two trials have the same config
        (axis values that are equal once parsed: ``0.01`` and ``"1e-2"``).
    """
    axes = dict(sweep.axes)
    if sweep.variants:
        axes["variant"] = [v["name"] for v in sweep.variants]
    variants = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in sweep.variants}
    trials: list[Trial] = []
    seen: dict[str, Trial] = {}  # each config (without its name) once
    for combination in itertools.product(*axes.values()) if axes else [()]:
        values = dict(zip(axes, combination))
        name = trial_name(values)
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
        trial = Trial(name, values, parse_config(raw, f"trial {name!r} of sweep {sweep.name!r}"))
        key = json.dumps({**trial.config.model_dump(mode="json"), "name": None}, sort_keys=True)
        if key in seen:
            raise ConfigError(
                f"sweep {sweep.name!r}: the trials {_show(seen[key].values)} and {_show(values)} have the same config "
                '(values that are equal once parsed, such as 0.01 and "1e-2"): give each value once'
            )
        seen[key] = trial
        trials.append(trial)
    if len({t.name for t in trials}) != len(trials):  # cannot happen (the labels are one-to-one); a bug if it does
        raise AssertionError("two trials of one sweep got the same name")
    return trials


def _show(values: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k} = {v!r}" for k, v in values.items()) + ")"


class TrialChangedError(ConfigError):
    """Trial folders that hold runs of another config than the one the sweep asks for now."""


_MISSING = object()


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(stored: Any, wanted: RunConfig | MeasureConfig) -> list[str]:
    """Where a trial's stored config differs from the one the sweep asks for: ``"field: stored -> wanted"``
    each (empty if equal).

    The stored config is validated again first, so that fields added to the config
    since it was written (with their defaults) are not differences.
    """
    try:
        stored = json.loads(stored) if isinstance(stored, str) else stored
        if isinstance(wanted, MeasureConfig):
            if not isinstance(stored, dict) or stored.get("kind") != "measure":
                return ["it holds a training run, not a measure"]
            old = parse_measure_config(stored["measure"], "the stored config").model_dump(mode="json")
        else:
            old = parse_config(stored, "the stored config").model_dump(mode="json")
    except (ConfigError, TypeError, ValueError) as err:
        return [f"its stored config does not validate any more ({str(err).splitlines()[-1].strip()})"]
    a, b = _flat(old), _flat(wanted.model_dump(mode="json"))
    return [
        f"{key}: {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key, _MISSING) != b.get(key, _MISSING)
    ]


def _changed_message(changed: dict[str, list[str]]) -> str:
    lines = [
        f"  {name}: {'; '.join(diffs[:4])}" + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        for name, diffs in list(changed.items())[:10]
    ]
    more = [f"  ... and {len(changed) - 10} more trials"] if len(changed) > 10 else []
    return (
        f"{len(changed)} trial folder(s) hold runs of another config than the sweep asks for now (the sweep file "
        "changed since):\n"
        + "\n".join(lines + more)
        + "\nTheir results would mix with the new ones. Give the sweep another name, or run it with --replace-changed "
        "to move those trials aside (into the sweep's .replaced/ folder) and run them again."
    )


#: Errors that a retry cannot mend: the trial fails at once, without Ray's retries.
_PERMANENT = (ConfigError, CorruptRunError, RunLockedError, FileExistsError)


def _run_trial(
    config: dict[str, Any], target: Location, threads: int | None, progress: Callable[[int, int], None] | None = None
) -> str | None:
    """Finish one trial in ``target``: start it, or resume it from its last checkpoint, or nothing if it is finished.

    Idempotent, so that Ray can run it again after a failure (a retry resumes). A
    trial whose folder is not local runs in a local copy that is uploaded as it
    goes (:class:`layerscope.store.remote.Mirror`), so a retry on another machine
    resumes from the last uploaded checkpoint.

    Returns None when the trial is finished, or the error line of a failure that a
    retry cannot mend (a config that changed, a corrupt run file, a folder held by
    another process): those are returned, not raised, so that Ray does not retry them.
    """
    import warnings

    import torch

    if threads is not None:  # a Ray worker: as many threads as the trial's CPUs, so trials side by side do not fight
        torch.set_num_threads(max(1, threads))
    if progress is None:
        warnings.simplefilter("ignore")  # on a worker: the trial's warnings stay in its own process
    try:
        with working_copy(target) as local:
            _finish(config, local, progress)
    except _PERMANENT as err:
        return _error_line(err)
    return None


def _finish(config: dict[str, Any], run_dir: Path, progress: Callable[[int, int], None] | None) -> None:
    from .runner import execute, resume

    if config.get("kind") == "measure":  # a part of a measure: its checkpoints, into its folder (resumes itself)
        measure(parse_measure_config(config["measure"], f"trial {run_dir.name}"), folder=run_dir, report=False)
        return
    cfg = parse_config(config, f"trial {run_dir.name}")
    store = RunStore(run_dir)
    if store.is_run():
        record = store.read_run()
        changed = config_changes(record.config, cfg)
        if changed:  # the driver checks before it starts; this is for a folder changed since
            raise TrialChangedError(_changed_message({run_dir.name: changed}))
        if record.status != "finished":
            resume(run_dir, progress=progress)
    else:
        execute(cfg, run_dir, progress=progress)


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


_NOTHING = Peek(None, None, None)


def _move_aside(folder: Location, name: str) -> None:
    """Move the trial folder ``name`` into ``folder/.replaced/NAME-TIME`` (refused while a process holds it)."""
    import datetime as dt

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    move_run(folder.join(name), folder.join(".replaced", f"{name}-{stamp}"))


def _error_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err  # Ray wraps a task's exception; its cause is the trial's own
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"


def reconcile(folder: Location, trials: list[Trial], *, replace_changed: bool = False) -> dict[str, Peek]:
    """Each trial's folder read, and checked against its config: a folder that holds a run of another
    config is refused (:class:`TrialChangedError`, naming the fields) or, with ``replace_changed``,
    moved into ``folder/.replaced/``. Returns what each folder holds now."""
    peeks = {t.name: peek(folder.join(t.name)) for t in trials}
    changed = {
        t.name: diffs
        for t in trials
        if peeks[t.name].record is not None and (diffs := config_changes(peeks[t.name].record.config, t.config))
    }
    if changed and not replace_changed:
        raise TrialChangedError(_changed_message(changed))
    for name in changed:
        _move_aside(folder, name)
        peeks[name] = _NOTHING
    return peeks


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
    replace_changed: bool = False,
    peeks: dict[str, Peek] | None = None,
) -> list[TrialState]:
    """The engine: finish every trial in ``folder/TRIAL`` on Ray, retrying failures from their checkpoints.

    Finished trials are skipped, interrupted ones resumed. ``on_progress(states)`` is
    called about every ``poll`` seconds with every trial's :class:`TrialState`.
    Without Ray installed, ``require_ray=False`` runs the trials one after another
    in this process (``reproduce`` does, so that it works without the extra);
    otherwise an ImportError says how to install it.

    A trial is its config, not only its name: a folder that holds a run of another
    config than its trial's (the sweep file was edited) is refused with the fields
    that differ (:class:`TrialChangedError`), before anything runs; with
    ``replace_changed`` it is moved into ``folder/.replaced/`` and run again.
    Resources that the Ray cluster does not have are refused before anything runs
    (ValueError). Failures that a retry cannot mend (a corrupt run file, a folder
    held by another process) are not retried. ``peeks``: the trials' folders as
    :func:`reconcile` left them, when the caller called it.
    """
    resources = resources or Resources()
    notify = on_progress or (lambda states: None)
    states = {t.name: TrialState(t.name, t.values) for t in trials}
    peeks = peeks if peeks is not None else reconcile(folder, trials, replace_changed=replace_changed)
    todo = []
    for trial in trials:
        if peeks[trial.name].status == "finished":
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
    from .runner import sigterm_as_interrupt

    started_here = not ray.is_initialized()
    reaper = None
    if started_here:
        # "local": a new Ray of this machine's CPUs, never a stale cluster left in /tmp/ray by an earlier process
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is None:  # this process owns that Ray: should it be killed, its leftovers are ended
            reaper = subprocess.Popen(
                [sys.executable, "-m", "layerscope._reaper", str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
    try:
        with (
            sigterm_as_interrupt()
        ):  # after ray.init, which sets a handler of its own: SIGTERM stops the sweep like Ctrl-C
            _check_resources(ray, resources)
            _run_on_ray(ray, folder, todo, states, resources, max_failures, max_concurrent, notify, poll)
    finally:
        if started_here:
            ray.shutdown()
        if reaper is not None:  # a clean end: nothing is left to reap
            reaper.kill()
            reaper.wait()
    return list(states.values())


def _slots(ray: Any, resources: Resources) -> int:
    """How many trials the cluster can run at once now (at least 1)."""
    total = ray.cluster_resources()
    slots = [
        int(total.get(key, 0) // need) for key, need in (("CPU", resources.cpu), ("GPU", resources.gpu)) if need > 0
    ]
    return max(1, min(slots, default=1))


def _check_resources(ray: Any, resources: Resources) -> None:
    total = ray.cluster_resources()
    for key, need in (("CPU", resources.cpu), ("GPU", resources.gpu)):
        have = total.get(key, 0)
        if need > have:
            raise ValueError(
                f"resources.{key.lower()} = {need:g}: the Ray cluster has {have:g} {key}s in all, so no trial could "
                "ever start; "
                f"ask for at most {have:g} per trial"
            )


def _update(state: TrialState, run: Location, first_resume: int) -> None:
    now = peek(run)
    if now.record is None:
        return
    if now.status == "running":
        state.status = "running"
    state.total_steps = now.record.total_steps or state.total_steps
    state.retries = max(state.retries, now.record.resumes - first_resume)
    if now.last_step is not None and now.last_step != state.step:
        state.step, state.test_acc = now.last_step, checkpoint_value(run, now.last_file, "test_acc")


def _run_on_ray(
    ray: Any,
    folder: Location,
    todo: list[Trial],
    states: dict[str, TrialState],
    resources: Resources,
    max_failures: int,
    max_concurrent: int | None,
    notify: Callable[[list[TrialState]], None],
    poll: float,
) -> None:
    task = ray.remote(_run_trial).options(
        num_cpus=resources.cpu, num_gpus=resources.gpu, max_retries=max_failures, retry_exceptions=True
    )
    threads = max(1, int(resources.cpu))
    pending: dict[Any, tuple[Trial, int]] = {}
    queue = list(todo)
    while queue or pending:
        # no more trials handed to Ray than the cluster can run now (asked again each round: a cluster may grow), so
        # that each round reads the folders of running trials only, not of thousands waiting in Ray's queue
        limit = max_concurrent or _slots(ray, resources)
        while queue and len(pending) < limit:
            trial = queue.pop(0)
            before = peek(folder.join(trial.name)).record
            # the resume count its first attempt here will write: a later, higher count is a retry
            first = before.resumes + 1 if before is not None else 0
            pending[task.remote(_payload(trial.config), folder.join(trial.name), threads)] = (
                trial,
                first,
            )
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll)
        for ref, (trial, first) in list(pending.items()):
            state = states[trial.name]
            _update(state, folder.join(trial.name), first)
            if ref not in done:
                continue
            del pending[ref]
            try:
                error = ray.get(ref)
                state.status, state.error = ("finished", None) if error is None else ("failed", error)
            except Exception as err:  # noqa: BLE001 - a trial that keeps failing is recorded; the sweep goes on
                state.status, state.error = "failed", _error_line(err)
        notify(list(states.values()))


def _run_here(
    folder: Location, todo: list[Trial], states: dict[str, TrialState], notify: Callable[[list[TrialState]], None]
) -> list[TrialState]:
    for trial in todo:
        state = states[trial.name]
        state.status = "running"

        def progress(step: int, total: int, state: TrialState = state) -> None:
            state.step, state.total_steps = step, total
            notify(list(states.values()))

        try:
            error = _run_trial(_payload(trial.config), folder.join(trial.name), None, progress)
            _update(state, folder.join(trial.name), 0)
            state.status, state.error = ("finished", None) if error is None else ("failed", error)
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
    replace_changed: bool = False,
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
    replace_changed : bool
        Trials whose folders hold runs of another config (the sweep file was edited)
        are moved into ``OUT/NAME/.replaced/`` and run again; without it the sweep is
        refused (:class:`TrialChangedError`, naming the fields that differ).

    Returns
    -------
    folder, states
        The sweep's folder (a Path when it is local, else a
        :class:`~layerscope.store.remote.Location`) and every trial's final state.
    """
    sweep, trials = load_sweep(path)
    folder = location(out, filesystem).join(sweep.name)
    try:
        folder.ensure_folder()
    except ValueError as err:
        raise ValueError(f"--out {out}: {err}") from None
    # before trials.parquet changes: a refused sweep changes nothing
    peeks = reconcile(folder, trials, replace_changed=replace_changed)
    write_trials(folder, sweep.name, trials, {name: peek.status for name, peek in peeks.items()})
    try:
        states = run_trials(
            folder,
            trials,
            resources=sweep.resources,
            max_failures=sweep.max_failures,
            address=address,
            max_concurrent=max_concurrent,
            on_progress=on_progress,
            poll=poll,
            peeks=peeks,
        )
    finally:
        write_trials(folder, sweep.name, trials)
    return (folder.local() if folder.is_local else folder), states


def write_trials(
    folder: Location | Path, sweep: str, trials: list[Trial], statuses: dict[str, str | None] | None = None
) -> None:
    """``trials.parquet``: one row per trial with its axis values (as strings, a column per axis) and its status
    (``statuses`` by trial name, else read from each trial's folder)."""
    folder = location(folder)
    if statuses is None:
        statuses = {t.name: peek(folder.join(t.name)).status for t in trials}
    rows = [
        {
            "run_id": t.name,
            "sweep": sweep,
            "status": statuses.get(t.name) or "pending",
            **{k: str(v) for k, v in t.values.items()},
        }
        for t in trials
    ]
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    folder.write_bytes("trials.parquet", buffer.getvalue())


def measure_on_ray(
    config: MeasureConfig,
    out: str | Path = "runs",
    *,
    parts: int | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    overwrite: bool = False,
    on_progress: Callable[[list[TrialState]], None] | None = None,
) -> Path:
    """:func:`layerscope.measure.measure` with the checkpoints spread over Ray: the series is cut into
    ``parts`` (default: as many as this machine has CPUs, at most one per checkpoint), each a trial of the
    sweep engine measuring its steps into ``OUT/NAME/.parts/part-K`` (retried from its last checkpoint
    on a failure), then merged into the one run folder ``OUT/NAME``. A second call measures nothing again;
    a killed one resumes (finished parts are kept until the merge).
    """
    folder = Path(out) / config.name
    store = RunStore(folder)
    series = find_checkpoints(config.model)
    steps = [s for s, _ in series]
    if store.is_run():
        record = store.read_run()
        same = record.config.get("kind") == "measure" and not config_changes(record.config, config)
        if overwrite:
            with store.lock():
                store.clear()
        elif not same:
            raise FileExistsError(
                f"{folder} holds another run (not this measure config): use --overwrite, or another name"
            )
        elif record.status == "finished" and set(steps) <= set(store.completed_steps()) | _skipped_steps(
            record, series
        ):
            return folder  # everything measured already
    n = max(1, min(len(steps), parts or os.cpu_count() or 1))
    chunks = [steps[k::n] for k in range(n)]  # interleaved: early and late checkpoints in every part
    trials = [
        Trial(
            f"part-{k}",
            {"steps": chunk},
            config.model_copy(
                update={"name": f"part-{k}", "model": config.model.model_copy(update={"only_steps": chunk})}
            ),
        )
        for k, chunk in enumerate(chunks)
    ]
    where = location(str(folder / ".parts"))
    states = run_trials(where, trials, address=address, max_concurrent=max_concurrent, on_progress=on_progress)
    failed = [
        s for s in states if s.status == "failed" and not (s.error or "").startswith("CheckpointError: no checkpoint")
    ]
    if failed:
        raise RuntimeError(f"{len(failed)} part(s) of the measure failed; {failed[0].name}: {failed[0].error}")
    return merge_parts(config, folder, [folder / ".parts" / t.name for t in trials])


def _skipped_steps(record: Any, series: list[tuple[int, Path]]) -> set[int]:
    skipped = set((record.config.get("skipped") or {}).keys())
    return {s for s, p in series if str(p) in skipped}
