"""What each full size costs: training steps per second and probe time per checkpoint, measured on this machine,
and the total it implies.

    .venv/bin/python benchmarks/full_sizes.py [--steps 5] [--only tan2024] [--probe-fraction 0.1]

For every full config of the papers' experiments (``layerscope.experiments``): the config's net, batch, optimizer,
loss and augmentation trained ``--steps`` steps on random inputs of the data set's shape (after one warm-up step),
and one checkpoint's probes on random inputs (the geometry with the config's estimators, layers and BatchNorm
readings; CSR, PGD and LC) on ``--probe-fraction`` of their points, scaled back up linearly: the nets' forward
passes, which dominate, are linear in the points (TwoNN's neighbour search is not, but on these layers it is a
small part). Configs that share a net, batch and optimizer (or a net and probes) are measured once. Forward
FLOPs per example come from ``torch.utils.flop_counter``; a training step is counted as 3 forward passes.

Prints, per config: steps, checkpoints, seconds per step and per checkpoint here, the hours this CPU would take,
and the PFLOPs of training and probes (forward-pass equivalents of the probes: the probe sets through the net
in each BatchNorm reading, PGD's and CSR's steps, LC's cross-polytope vertices), with a GPU estimate at an assumed
sustained rate (``--gpu-tflops``, default 10: an assumption, not a measurement; a recent data-centre GPU's fp32
peak is 20-70 TFLOP/s, and small convolutional nets at these batch sizes sustain a fraction of it). Nothing here
is asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from layerscope.experiments import EXPERIMENTS
from layerscope.probes.geometry import GeometryProbe
from layerscope.runner import prepare_model
from layerscope.train.loop import augment, loss_fn, make_optimizer
from layerscope.train.schedule import training_plan

SHAPES = {"cifar10": ((3, 32, 32), 50000, 10000), "mnist": ((1, 28, 28), 60000, 10000)}


def forward_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    x = torch.zeros(2, *shape)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


def train_seconds(cfg, model: torch.nn.Module, shape: tuple[int, ...], steps: int) -> float:  # noqa: ANN001
    t = cfg.train
    optimizer = make_optimizer(model, t)
    x = torch.randn(t.batch_size, *shape)
    y = torch.randint(0, 10, (t.batch_size,))
    model.train()

    def step(i: int) -> None:
        xb = augment(x, t.augment, torch.Generator().manual_seed(i)) if t.augment else x
        optimizer.zero_grad(set_to_none=True)
        loss_fn(t.loss, model(xb), y).backward()
        optimizer.step()

    step(0)  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    return (time.perf_counter() - start) / steps


def checkpoint_seconds(cfg, model: torch.nn.Module, shape: tuple[int, ...], fraction: float) -> float:  # noqa: ANN001
    """One checkpoint's probes on a fraction of the probe sets, scaled back up."""
    from layerscope.probes.attacks import robust_accuracy
    from layerscope.probes.csr import critical_sample_ratio
    from layerscope.probes.local_complexity import local_complexity

    n = max(int(cfg.data.probe_size * fraction), 50)
    inputs = {split: torch.randn(n, *shape) for split in cfg.data.probe_splits}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cfg.probes.estimators:
            GeometryProbe(inputs, cfg.probes.geometry)(model, 1)
        geometry = (time.perf_counter() - start) * cfg.data.probe_size / n
        rest = 0.0
        model.eval()
        for name in cfg.probes.model_probes:
            s = cfg.probes.settings(name)
            m = max(int(getattr(s, "n_points", 0) * fraction), 20)
            x, y = torch.randn(m, *shape), torch.randint(0, 10, (m,))
            t0 = time.perf_counter()
            if name == "pgd":
                for _ in range(1 + len(s.eps_grid)):
                    robust_accuracy(model, x, y, eps=0.1, steps=s.steps)
            elif name == "csr":
                critical_sample_ratio(model, x, radius=s.radius, step=s.step, noise=s.noise, steps=s.steps)
            elif name == "lc":
                for _ in s.splits:
                    local_complexity(model, x, radius=s.radius, n_directions=s.n_directions)
            else:
                continue
            rest += (time.perf_counter() - t0) * s.n_points / m
    return geometry + rest


def probe_passes(cfg, model: torch.nn.Module) -> float:  # noqa: ANN001
    """Forward-pass equivalents of one checkpoint's probes (a backward pass counted as two forward ones)."""
    from layerscope.probes.geometry import has_batchnorm

    readings = 2 if cfg.probes.batchnorm == "both" and has_batchnorm(model) else 1
    passes = cfg.data.probe_size * len(cfg.data.probe_splits) * (readings + (readings > 1))
    for name in cfg.probes.model_probes:
        s = cfg.probes.settings(name)
        if name == "pgd":
            passes += s.n_points * len(s.splits) * (1 + len(s.eps_grid)) * (3 * s.steps + 2)
        elif name == "csr":
            passes += s.n_points * len(s.splits) * 3 * s.steps
        elif name == "lc":
            passes += s.n_points * len(s.splits) * 2 * s.n_directions
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--only", default="")
    parser.add_argument("--probe-fraction", type=float, default=0.1)
    parser.add_argument("--gpu-tflops", type=float, default=10.0)
    args = parser.parse_args()
    torch.manual_seed(0)
    from estimators import cpu_description  # benchmarks/estimators.py: the CPU's name and features

    print(
        f"# {cpu_description()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; CSR, PGD and LC measured on {args.probe_fraction:.0%} of their points"
    )
    print(
        "| experiment | config | steps | checkpoints | s/step here | s/checkpoint here | CPU hours here | "
        "PFLOP (training + probes) | GPU hours at the assumed rate |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[float]] = {}
    step_cache: dict[str, float] = {}
    checkpoint_cache: dict[str, float] = {}
    for name, experiment in EXPERIMENTS.items():
        if args.only and name not in args.only.split(","):
            continue
        for cfg in experiment.configs("full"):
            shape, n_train, _ = SHAPES[cfg.data.name]
            n_train = cfg.data.n_train or n_train
            model = prepare_model(cfg, SimpleNamespace(input_shape=shape, num_classes=10))
            plan = training_plan(cfg.train, cfg.schedule, n_train)
            net = repr((cfg.model.name, cfg.model.params, cfg.data.name))
            train_key = net + repr((cfg.train.batch_size, cfg.train.optimizer, cfg.train.loss, cfg.train.augment))
            probe_key = net + repr((cfg.probes.model_dump(mode="json"), cfg.data.probe_size, cfg.data.probe_splits))
            if train_key not in step_cache:
                step_cache[train_key] = train_seconds(cfg, model, shape, args.steps)
            if probe_key not in checkpoint_cache:
                checkpoint_cache[probe_key] = checkpoint_seconds(cfg, model, shape, args.probe_fraction)
            per_step, per_ckpt = step_cache[train_key], checkpoint_cache[probe_key]
            hours = (plan.total_steps * per_step + len(plan.checkpoints) * per_ckpt) / 3600
            forward = forward_flops(model, shape)
            pflop = (
                forward
                * (3 * plan.total_steps * cfg.train.batch_size + len(plan.checkpoints) * probe_passes(cfg, model))
                / 1e15
            )
            gpu = pflop * 1e3 / args.gpu_tflops / 3600
            totals.setdefault(name, [0.0, 0.0])
            totals[name][0] += hours
            totals[name][1] += gpu
            print(
                f"| {name} | {cfg.name} | {plan.total_steps} | {len(plan.checkpoints)} | {per_step:.3f} | "
                f"{per_ckpt:.1f} | {hours:.1f} | {pflop:.2f} | {gpu:.2f} |",
                flush=True,
            )
    for name, (cpu, gpu) in totals.items():
        print(f"| {name} | all full configs | | | | | {cpu:.0f} | | {gpu:.1f} |")


if __name__ == "__main__":
    main()
