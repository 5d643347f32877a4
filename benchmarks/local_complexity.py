"""Local complexity throughput: points per second for the MLP and the small CNN.

    python benchmarks/local_complexity.py

Each point brings 2P vertices through the network (P = 25, Humayun et al.'s MNIST
setting); the table gives points per second and vertices per second for MNIST-
sized inputs, by architecture and number of nonlinear layers, on this machine's
CPU threads (best of 3).
"""

from __future__ import annotations

import time

import torch

from layerscope.models import build_model
from layerscope.probes.local_complexity import local_complexity


def main() -> None:
    torch.manual_seed(0)
    points = torch.randn(256, 1, 28, 28)
    cases = [(f"MLP 784-200x{d}", build_model("mlp", width=200, depth=d)) for d in (2, 4, 6)]
    cases.append(("Ansuini CNN (conv32-pool-conv64-pool-fc128)", build_model("ansuini_cnn")))
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, 256 points, P = 25 (50 vertices per point), "
        "r = 0.5\n"
    )
    print("| model | nonlinear layers | neurons counted | points/s | vertices/s |")
    print("|---|---|---|---|---|")
    for name, model in cases:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            table = local_complexity(model, points, radius=0.5, n_directions=25, batch_size=64)
            best = min(best, time.perf_counter() - t)
        layers = len(table) - 1  # one row per nonlinearity, and the sum
        print(
            f"| {name} | {layers} | {int(table.neurons.iloc[-1])} | {len(points) / best:.0f} | "
            f"{50 * len(points) / best:.0f} |"
        )


if __name__ == "__main__":
    main()
