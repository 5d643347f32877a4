"""Run a config end to end: data, model, training, probes at checkpoints, store; resumable."""

from __future__ import annotations

import datetime as dt
import inspect
import math
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .config import ConfigError, RunConfig, parse_config
from .data.datasets import Dataset, first_of_each_class, load_dataset, probe_indices, train_subset, with_label_noise
from .models import build_model
from .probes.capture import resolve_layers
from .store import RunStore
from .tracker import Tracker
from .train import TrainSettings, checkpoint_steps, scale_parameters, train


def prepare_data(cfg: RunConfig) -> Dataset:
    data = load_dataset(cfg.data.name, cfg.data.data_dir, download_missing=cfg.data.download)
    if cfg.data.n_train is not None:
        data = train_subset(data, cfg.data.n_train, seed=cfg.seed)
    if cfg.data.label_noise > 0:
        data = with_label_noise(data, cfg.data.label_noise, seed=cfg.seed)
    return data


def prepare_model(cfg: RunConfig, data: Dataset) -> nn.Module:
    """Build the model, filling in the input geometry and class count from the data."""
    shape = data.input_shape
    known = {"in_features": math.prod(shape), "in_channels": shape[0], "image_size": shape[-1], "num_classes": data.num_classes}
    params = dict(cfg.model.params)
    from .models import MODELS

    accepted = inspect.signature(MODELS[cfg.model.name]).parameters
    for key, value in known.items():
        if key in accepted and key not in params:
            params[key] = value
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(cfg.model.name, **params)
    except ValueError as err:
        raise ConfigError(f"model.params: {err}") from None
    if cfg.model.init_scale != 1:
        scale_parameters(model, cfg.model.init_scale)
    return model


def model_probes(cfg: RunConfig, data: Dataset, store: RunStore) -> list:
    """The probes beyond the per-layer estimators that ``cfg.probes.measures`` asks for."""
    from .probes.attacks import RobustnessProbe
    from .probes.csr import CSRProbe
    from .probes.local_complexity import LocalComplexityProbe, bounding_box_points
    from .probes.partition2d import PartitionProbe

    p = cfg.probes
    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}

    def fixed(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = splits[split]
        idx = probe_indices(len(x), n, seed=cfg.seed + 1)
        return x[idx], y[idx]

    probes: list = []
    if "lc" in p.measures:
        sets = {s: (bounding_box_points(data.x_train, p.lc.n_points, seed=cfg.seed) if s == "random" else fixed(s, p.lc.n_points)[0]) for s in p.lc.splits}
        probes.append(LocalComplexityProbe(sets, radius=p.lc.radius, n_directions=p.lc.n_directions, seed=cfg.seed, device=cfg.device))
    if "csr" in p.measures:
        sets = {s: fixed(s, p.csr.n_points)[0] for s in p.csr.splits}
        probes.append(CSRProbe(sets, radius=p.csr.radius, step=p.csr.step, noise=p.csr.noise, steps=p.csr.steps, seed=cfg.seed, device=cfg.device))
    if "pgd" in p.measures:
        sets = {s: fixed(s, p.pgd.n_points) for s in p.pgd.splits}
        probes.append(RobustnessProbe(sets, eps=p.pgd.eps, attack=p.pgd.attack, steps=p.pgd.steps, lower=data.lower, upper=data.upper, seed=cfg.seed, device=cfg.device))
    if "partition" in p.measures:
        if p.partition.points is not None:
            idx = torch.tensor(p.partition.points)
        else:
            idx = torch.tensor(first_of_each_class(data.y_test))
        drawn = None
        if p.partition.pictures is not None:
            per_epoch = math.ceil(len(data.x_train) / cfg.train.batch_size)
            total = cfg.train.steps or (cfg.train.epochs or 1) * per_epoch
            every = checkpoint_steps(total, cfg.schedule.kind, num=cfg.schedule.num, every=cfg.schedule.every, steps_per_epoch=per_epoch)
            drawn = [every[round(i)] for i in np.linspace(0, len(every) - 1, min(p.partition.pictures, len(every)))]
        probes.append(PartitionProbe(data.x_test[idx], store.run_dir / "partition", labels=data.y_test[idx].tolist(), steps=drawn))
    return probes


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False)
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
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> Path:
    """Run ``cfg`` into ``run_dir`` (a new folder).

    ``progress(step, total)`` is called after every training step and ``status(text)``
    when the run switches between training and probing.

    Raises
    ------
    FileExistsError
        ``run_dir`` holds a run already (resume it with :func:`resume`).
    ConfigError
        A config value that only shows as wrong against the data or the model
        (an unknown layer, bad model parameters).
    """
    run_dir = Path(run_dir)
    if (run_dir / "run.parquet").exists():
        raise FileExistsError(f"{run_dir} holds a run already: resume it with --resume, or choose another --out or name")
    return _run(cfg, RunStore(run_dir), None, dt.datetime.now(dt.timezone.utc).isoformat(), progress, status)


def resume(
    run_dir: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> Path:
    """Go on with the run in ``run_dir`` from its last finished checkpoint, with its stored config."""
    store = RunStore(run_dir)
    if not (store.run_dir / "run.parquet").exists():
        raise FileNotFoundError(f"nothing to resume in {run_dir} (no run.parquet)")
    info = store.read_run()
    cfg = parse_config(info["config"], f"{run_dir}/run.parquet")
    return _run(cfg, store, store.load_state(), info["start_time"], progress, status)


def _run(
    cfg: RunConfig,
    store: RunStore,
    state: dict[str, Any] | None,
    start_time: str,
    progress: Callable[[int, int], None] | None,
    status: Callable[[str], None] | None,
) -> Path:
    data = prepare_data(cfg)
    model = prepare_model(cfg, data)
    if cfg.probes.layers is not None:
        try:
            resolve_layers(model, cfg.probes.layers)
        except ValueError as err:
            raise ConfigError(f"probes.layers: {err}") from None
    splits = {"train": data.x_train, "test": data.x_test}
    probe_sets = {s: splits[s][probe_indices(len(splits[s]), cfg.data.probe_size, seed=cfg.seed)] for s in cfg.data.probe_splits}
    run_id = cfg.name
    tracker = Tracker(
        store,
        probe_sets,
        run_id=run_id,
        layers=cfg.probes.layers,
        estimators=cfg.probes.estimators,
        estimator_params=cfg.probes.estimator_params,
        memory_budget=cfg.probes.memory_budget_mb * 2**20,
        batch_size=cfg.probes.batch_size,
        device=cfg.device,
        save_weights=cfg.probes.save_weights,
        model_probes=model_probes(cfg, data, store),
    )
    info: dict[str, Any] = {
        "run_id": run_id,
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "versions": {"layerscope": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "git_revision": _git_revision(),
        "start_time": start_time,
        "end_time": None,
        "status": "running",
    }
    store.create()
    store.write_run(info)
    settings = TrainSettings(
        optimizer=cfg.train.optimizer,
        lr=cfg.train.lr,
        momentum=cfg.train.momentum,
        weight_decay=cfg.train.weight_decay,
        batch_size=cfg.train.batch_size,
        epochs=cfg.train.epochs,
        steps=cfg.train.steps,
        loss=cfg.train.loss,
        schedule=cfg.schedule.kind,
        num_checkpoints=cfg.schedule.num,
        every=cfg.schedule.every,
        eval_size=cfg.train.eval_size,
        seed=cfg.seed,
    )
    try:
        train(
            model,
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            settings,
            callbacks=[tracker if status is None else _Announced(tracker, status)],
            device=cfg.device,
            resume=state,
            on_state=store.save_state,
            progress=progress,
        )
    except KeyboardInterrupt:
        store.write_run({**info, "status": "interrupted"})
        raise
    store.write_run({**info, "status": "finished", "end_time": dt.datetime.now(dt.timezone.utc).isoformat()})
    return store.run_dir
