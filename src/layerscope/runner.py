"""Run a config end to end: data, model, training, probes at checkpoints, store; resumable."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import math
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError, RunConfig, parse_config
from .data.datasets import Dataset, load_dataset, probe_indices, train_subset, with_label_noise
from .estimators import check_device
from .models import build_model
from .probes.base import Probe, ProbeContext
from .probes.capture import resolve_layers
from .probes.registry import probes
from .store import CorruptRunError, RunRecord, RunStore, ending, location
from .tracker import Tracker
from .train import TrainingPlan, scale_parameters, train, training_plan


def prepare_data(cfg: RunConfig) -> Dataset:
    """The run's data set: loaded, subset to ``data.n_train`` and with label noise, as the config says (seeded)."""
    data = load_dataset(cfg.data.name, cfg.data.data_dir, download_missing=cfg.data.download)
    if cfg.data.n_train is not None:
        data = train_subset(data, cfg.data.n_train, seed=cfg.seed)
    if cfg.data.label_noise > 0:
        data = with_label_noise(data, cfg.data.label_noise, seed=cfg.seed)
    return data


def probe_seed(cfg: RunConfig) -> int:
    """The seed of the run's probe set: ``data.probe_seed``, else the run's seed."""
    return cfg.seed if cfg.data.probe_seed is None else cfg.data.probe_seed


def prepare_model(cfg: RunConfig, data: Dataset) -> nn.Module:
    """Build the model, filling in the input geometry and class count from the data."""
    shape = data.input_shape
    params = dict(cfg.model.params)
    library = cfg.model.name.partition(":")[0] if ":" in cfg.model.name else None
    if library is None:
        known = {
            "in_features": math.prod(shape),
            "in_channels": shape[0],
            "image_size": shape[-1],
            "num_classes": data.num_classes,
        }
        from .models import MODELS

        accepted = inspect.signature(MODELS[cfg.model.name]).parameters
        for key, value in known.items():
            if key in accepted and key not in params:
                params[key] = value
    else:  # a library's model: its own argument names
        params.setdefault("num_classes", data.num_classes)
        if library == "timm" and len(shape) == 3:
            params.setdefault("in_chans", shape[0])
        elif library == "torchvision" and len(shape) == 3 and shape[0] != 3 and "in_channels" not in params:
            raise ConfigError(
                f"model.name: {cfg.model.name} takes 3-channel images and {cfg.data.name} has {shape[0]}; "
                "use a timm model (in_chans is set from the data) or a 3-channel data set"
            )
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(cfg.model.name, **params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model.params: {err}") from None
    if cfg.model.init_scale != 1:
        scale_parameters(model, cfg.model.init_scale)
    return model


def model_probes(cfg: RunConfig, data: Dataset, store: RunStore, plan: TrainingPlan) -> list[Probe]:
    """The registered model-level probes that ``cfg.probes.measures`` asks for, built from the run."""

    def inputs(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        idx = probe_indices(len(x), n, seed=probe_seed(cfg))  # nested in the geometry probes' set: the same inputs
        return x[idx], y[idx]

    def test_examples(indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(list(indices))
        return data.x_test[idx], data.y_test[idx]

    context = ProbeContext(
        inputs=inputs,
        bounds=(data.lower, data.upper),
        train_inputs=data.x_train,
        test_examples=test_examples,
        test_labels=data.y_test,
        seed=cfg.seed,
        device=cfg.device,
        run_dir=store.run_dir,
        checkpoints=plan.checkpoints,
    )
    return [probes()[name].build(cfg.probes.settings(name), context) for name in cfg.probes.model_probes]


def _tensorboard(store: RunStore) -> Callable[[Any], None]:
    from .integrations.tensorboard import TensorBoardMirror

    return TensorBoardMirror(store.run_dir / "tensorboard")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class _Announced:
    """Wraps the tracker so that a status line says when probes run."""

    def __init__(self, tracker: Tracker, status: Callable[[str], None]) -> None:
        self.tracker, self.status = tracker, status

    def on_checkpoint(self, model: nn.Module, step: int, epoch: float, metrics: dict[str, float]) -> None:
        self.status(f"probing step {step}")
        self.tracker.on_checkpoint(model, step, epoch, metrics)
        self.status("training")


def execute(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> Path:
    """Run ``cfg`` into ``run_dir``, holding the folder's lock for the run's life.

    ``progress(step, total)`` is called after every training step and ``status(text)``
    when the run switches between training and probing.

    A folder whose earlier run failed or was interrupted before its first
    checkpoint is started afresh; ``overwrite`` deletes any earlier run there
    first (only ever a layerscope run: a folder without ``run.parquet`` is never
    deleted).

    Raises
    ------
    FileExistsError
        ``run_dir`` holds a run already (resume it with :func:`resume`), or is a
        folder with other files in it.
    RunLockedError
        Another process is writing a run into ``run_dir``.
    ConfigError
        A config value that only shows as wrong against the data or the model
        (an unknown layer, bad model parameters).
    """
    run_dir = Path(run_dir)
    _check_device(cfg.device)
    if run_dir.is_symlink():
        raise FileExistsError(f"{run_dir} is a symbolic link; give a run folder that is a plain folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} is a file, not a run folder")
    location(run_dir).ensure_folder()  # made, and writable: a ValueError naming the folder otherwise
    store = RunStore(run_dir)
    with store.lock():
        if store.is_run():
            if overwrite or _failed_at_start(store):
                store.clear()
            else:
                raise FileExistsError(
                    f"{run_dir} holds a run already: resume it with --resume {run_dir}, or start it again with "
                    "--overwrite"
                )
        elif any(entry.name != ".lock" for entry in run_dir.iterdir()):
            raise FileExistsError(
                f"{run_dir} exists and is not a layerscope run: choose another --out or name (nothing was deleted)"
            )
        return _run(cfg, store, None, dt.datetime.now(dt.timezone.utc).isoformat(), progress, status, resumes=0)


def _check_device(device: str) -> None:
    try:
        check_device(device)
    except ValueError as err:
        raise ConfigError(f"device: {err}") from None


def _failed_at_start(store: RunStore) -> bool:
    """A run that ended (failed or interrupted) before its first checkpoint: nothing in it to keep."""
    try:
        ended = store.read_run().status in ("failed", "interrupted")
    except CorruptRunError:
        return False
    return ended and not store.completed_steps()


def resume(
    run_dir: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> Path:
    """Go on with the run in ``run_dir`` from its last finished checkpoint, with its stored config."""
    store = RunStore(run_dir)
    if not store.is_run():
        raise FileNotFoundError(f"nothing to resume in {run_dir} (no run.parquet)")
    with store.lock():
        record = store.read_run()
        cfg = parse_config(record.config, f"{run_dir}/run.parquet")
        _check_device(cfg.device)
        store.remove_temporaries()
        return _run(cfg, store, store.load_state(), record.start_time, progress, status, resumes=record.resumes + 1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops after keeping its finished checkpoints."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the block, so it ends as Ctrl-C does.

    Code that turns a signal's exception into a plain KeyboardInterrupt (Ray's
    ``wait`` does) still ends in Terminated: the handler remembers that it ran.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except KeyboardInterrupt as err:
        if received and not isinstance(err, Terminated):
            raise Terminated(f"signal {received[0]}") from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(
    cfg: RunConfig,
    store: RunStore,
    state: dict[str, Any] | None,
    start_time: str,
    progress: Callable[[int, int], None] | None,
    status: Callable[[str], None] | None,
    *,
    resumes: int,
) -> Path:
    """Train and probe, keeping ``run.parquet``'s status true: running, then finished, failed (with the error)
    or interrupted.

    ``run.parquet`` also says how many times the run was resumed and, once the data
    are loaded, its plan (``total_steps``, ``checkpoints``), so that a sweep's driver
    can show a trial's progress from its folder alone.
    """
    record = store.start_run(
        RunRecord.begin(
            cfg.name,
            cfg.model_dump(mode="json"),
            seed=cfg.seed,
            resumes=resumes,
            start_time=start_time,
            git_revision=_git_revision(),
        )
    )

    def planned(plan: TrainingPlan) -> None:
        nonlocal record
        record = record.planned(plan.total_steps, list(plan.checkpoints))
        store.update_run(record)

    try:
        with sigterm_as_interrupt():
            _train(cfg, store, state, progress, status, planned)
    except BaseException as err:
        store.end_run(record, *ending(err))
        raise
    store.end_run(record, "finished")
    return store.run_dir


def _train(
    cfg: RunConfig,
    store: RunStore,
    state: dict[str, Any] | None,
    progress: Callable[[int, int], None] | None,
    status: Callable[[str], None] | None,
    planned: Callable[[TrainingPlan], None],
) -> None:
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    if cfg.probes.layers is not None:
        try:
            resolve_layers(model, cfg.probes.layers)
        except ValueError as err:
            raise ConfigError(f"probes.layers: {err}") from None
    splits = {"train": data.x_train, "test": data.x_test}
    seed, size = probe_seed(cfg), cfg.data.probe_size
    inputs = {s: splits[s][probe_indices(len(splits[s]), size, seed=seed)] for s in cfg.data.probe_splits}
    plan = training_plan(cfg.train, cfg.schedule, len(data.x_train))
    planned(plan)
    tracker = Tracker(
        store,
        inputs,
        run_id=cfg.name,
        geometry=cfg.probes.geometry,
        device=cfg.device,
        seed=cfg.seed,
        save_weights=cfg.probes.save_weights,
        model_probes=model_probes(cfg, data, store, plan),
        on_frame=_tensorboard(store) if cfg.probes.tensorboard else None,
    )
    train(
        model,
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        cfg.train,
        plan,
        seed=cfg.seed,
        callbacks=[tracker if status is None else _Announced(tracker, status)],
        device=cfg.device,
        resume=state,
        on_state=store.save_state,
        progress=progress,
    )
