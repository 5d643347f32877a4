"""Are the error bars standard errors? Reported error against the spread over independent samples.

    .venv/bin/python benchmarks/error_bars.py [--samples 200] [--only twonn,mle]

For each estimator and point cloud of known law, ``samples`` independent clouds are
drawn (seeds 0, 1, ...); each is fitted with the estimator's default error and with
its older or alternative errors. ``ratio`` is the mean reported error over the
spread (standard deviation) of the estimate over the clouds: 1 for a standard
error. ``+-`` is two standard errors of the ratio from the spread's own sampling
noise, ``1 / sqrt(2 (samples - 1))`` relative. Issue 22 asks 0.8-1.25 for the
default error.

Clouds: Gaussians with a power-law covariance spectrum (``lambda_n ~ n^-a``, so that
no estimator sits at a degenerate point: an isotropic Gaussian is where the
participation ratio is largest, its first-order fluctuation vanishes and its
variance falls as 1/N^2, not 1/N), isotropic Gaussians and spheres (for the
neighbour estimators). LC: the local complexity of one fixed random ReLU network
at independent sets of Gaussian probe points.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from layerscope.data.manifolds import hypersphere
from layerscope.estimators import ESTIMATORS


def power_law_cloud(n: int, dim: int, a: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)) * np.arange(1, dim + 1) ** (-a / 2)


def gaussian(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


#: (label, cloud maker(seed)) per family of estimators.
NEIGHBOUR_CLOUDS = [
    ("Gaussian, d = 12, N = 500", lambda s: gaussian(500, 12, s)),
    ("sphere d = 6 in 12, N = 1000", lambda s: hypersphere(1000, 6, 12, seed=s)),
    ("Gaussian, d = 8, N = 2000", lambda s: gaussian(2000, 8, s)),
    ("power law a = 1, D = 40, N = 1000", lambda s: power_law_cloud(1000, 40, 1.0, s)),
]
#: PC-ID counts components: on most clouds it hardly varies (a spread of 0 has no ratio); these are clouds where
#: its threshold falls among many small components.
COUNT_CLOUDS = [
    ("power law a = 0.3, D = 200, N = 300", lambda s: power_law_cloud(300, 200, 0.3, s)),
    ("power law a = 1, D = 100, N = 200", lambda s: power_law_cloud(200, 100, 1.0, s)),
    ("power law a = 0.3, D = 300, N = 1000", lambda s: power_law_cloud(1000, 300, 0.3, s)),
]
SPECTRAL_CLOUDS = [
    ("power law a = 1, D = 40, N = 500", lambda s: power_law_cloud(500, 40, 1.0, s)),
    ("power law a = 0.5, D = 100, N = 1000", lambda s: power_law_cloud(1000, 100, 0.5, s)),
    ("power law a = 1.5, D = 200, N = 2000", lambda s: power_law_cloud(2000, 200, 1.5, s)),
]
#: estimator -> (clouds, [(label, params)]): the default error first, then the alternatives.
CASES = {
    "twonn": (NEIGHBOUR_CLOUDS, [("halves (default)", {}), ("subsets (Ansuini)", {"error": "subsets"})]),
    "mle": (NEIGHBOUR_CLOUDS, [("halves (default)", {}), ("delta", {"error": "delta"})]),
    "gride": (NEIGHBOUR_CLOUDS, [("halves (default)", {}), ("fisher", {"error": "fisher"})]),
    "pc_id": (COUNT_CLOUDS, [("halves (default)", {}), ("bootstrap", {"error": "bootstrap"})]),
    "participation_ratio": (SPECTRAL_CLOUDS, [("halves (default)", {}), ("bootstrap", {"error": "bootstrap"})]),
    "alpha": (SPECTRAL_CLOUDS, [("halves (default)", {}), ("slope", {"error": "slope"})]),
}


def calibrate(name: str, make, params: dict, samples: int) -> tuple[float, float, float]:  # noqa: ANN001
    """(mean estimate, spread over clouds, mean reported error)."""
    values, errors = [], []
    for seed in range(samples):
        est = ESTIMATORS[name](**params).fit(make(seed)).estimate_
        values.append(est.value)
        errors.append(est.error)
    return float(np.mean(values)), float(np.std(values, ddof=1)), float(np.mean(errors))


def lc_calibration(samples: int) -> tuple[float, float, float]:
    from layerscope.probes.local_complexity import local_complexity

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
    )
    values, errors = [], []
    for seed in range(samples):
        points = torch.from_numpy(gaussian(200, 10, seed).astype(np.float32))
        row = local_complexity(net, points, radius=0.3, n_directions=10, seed=seed).iloc[-1]
        values.append(row["lc"])
        errors.append(row["lc_err"])
    return float(np.mean(values)), float(np.std(values, ddof=1)), float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated estimators (and/or lc)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    only = set(filter(None, args.only.split(",")))
    band = 2 / np.sqrt(2 * (args.samples - 1))
    print(f"independent clouds per row: {args.samples}; +- is two standard errors of the ratio ({band:.2f} relative)")
    print("| estimator | error | cloud | mean | spread | mean error | ratio | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (clouds, errors) in CASES.items():
        if only and name not in only:
            continue
        for cloud, make in clouds:
            for label, params in errors:
                start = time.perf_counter()
                mean, spread, err = calibrate(name, make, params, args.samples)
                ratio = err / spread
                print(
                    f"| {name} | {label} | {cloud} | {mean:.3f} | {spread:.4f} | {err:.4f} | "
                    f"{ratio:.2f} +- {ratio * band:.2f} | {time.perf_counter() - start:.0f} |",
                    flush=True,
                )
    if not only or "lc" in only:
        start = time.perf_counter()
        mean, spread, err = lc_calibration(args.samples)
        ratio = err / spread
        print(
            f"| lc | std / sqrt(n) (default) | random ReLU net 10-32-32-1, 200 Gaussian points | {mean:.3f} | "
            f"{spread:.4f} | {err:.4f} | {ratio:.2f} +- {ratio * band:.2f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
