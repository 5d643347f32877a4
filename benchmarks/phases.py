"""Phase detection on simulated curves: false positives on every null shape, power against the pattern's size.

    .venv/bin/python benchmarks/phases.py [--curves 200] [--jobs 2] [--seed 0] [--save FILE.npz]

Every null shape of :data:`layerscope.analysis.calibration.NULLS` (a constant,
monotone curves straight, with plateaus and as sigmoid steps, and each pattern with
one phase flat or missing) at 3, 5 and 10 error bars, at the checkpoint counts the
presets use (10, 12, 29), with the four kinds of noise of
:mod:`layerscope.analysis.calibration` (errors given exactly, estimated from 20
replicates, correlated across checkpoints with joint replicates, not given).

The detector's nominal p (its parametric bootstrap, ``calibration=1``) is read on
every curve, and the table gives, per row, the rate at which the reported
confidence (``1 - min(1, factor * p)``, the factor of the noise's kind) reaches the
findings' threshold; the summary gives, per kind, the highest rate over all rows for
several factors, from which :data:`layerscope.analysis.phases.LEVEL_INFLATION` was
chosen. ``--seed``
draws fresh curves (the choice is confirmed on a seed it was not made on).
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per process: the processes run side by side

import numpy as np  # noqa: E402

from layerscope.analysis.calibration import NOISE_KINDS, NULLS, PATTERNS, confidences, log_steps  # noqa: E402
from layerscope.analysis.phases import ID_PATTERN, LEVEL_INFLATION, THRESHOLD  # noqa: E402

SIZES = (3, 5, 10)
CHECKPOINTS = (10, 12, 29)
FACTORS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
#: The detector's kind of noise for each simulated kind (errors estimated from replicates are given errors).
KIND = {"given": "independent", "estimated": "independent", "joint": "joint", "none": "residuals"}
LABEL = {ID_PATTERN: "ID: up, down"}


def label(pattern: tuple[str, ...]) -> str:
    return LABEL.get(pattern, "LC: down, up, down")


def _shape(key: str | tuple):  # noqa: ANN202 - jobs name their shape (lambdas do not pickle)
    return PATTERNS[key] if isinstance(key, tuple) else next(s for s in NULLS if s.name == key)


def _row(args: tuple) -> tuple[tuple, np.ndarray]:
    key, size, pattern, n, noise, curves, seed = args
    shape = _shape(key)
    nominal = confidences(shape, size, pattern, log_steps(n), noise, curves, seed=seed, n_boot=400, calibration=1.0)
    return args, 1 - nominal  # nominal p (1 where no fit of the pattern's signs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--curves", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None)
    parser.add_argument("--power-only", action="store_true")
    parser.add_argument("--noise", nargs="*", default=list(NOISE_KINDS), help="only these kinds of noise")
    args = parser.parse_args()
    curves, seed = args.curves, args.seed
    start = time.time()
    level = 1 - THRESHOLD
    null_jobs = [
        (shape.name, size, pattern, n, noise, curves, seed)
        for n in CHECKPOINTS
        for shape in NULLS
        for size in ((1,) if shape.name == "flat" else SIZES)
        for pattern in shape.lacks
        for noise in NOISE_KINDS
        if noise in args.noise
    ]
    power_jobs = [
        (pattern, size, pattern, n, noise, curves, seed)
        for n in CHECKPOINTS
        for pattern in PATTERNS
        for size in (2, 3, 4, 6)
        for noise in ("given", "estimated", "joint")
        if noise in args.noise
    ]
    jobs = power_jobs if args.power_only else null_jobs + power_jobs
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_row, jobs, chunksize=1))
    nulls = [(a, p) for a, p in results if not isinstance(a[0], tuple)]
    powers = [(a, p) for a, p in results if isinstance(a[0], tuple)]
    if args.save:
        np.savez_compressed(
            args.save,
            keys=np.array(
                [
                    "|".join(
                        map(
                            str,
                            (
                                "power" if isinstance(a[0], tuple) else "null",
                                _shape(a[0]).name,
                                a[1],
                                label(a[2]),
                                a[3],
                                a[4],
                            ),
                        )
                    )
                    for a, _ in results
                ]
            ),
            p=np.stack([p for _, p in results]),
        )
    if nulls:
        print(
            f"False positives: confidence >= {THRESHOLD} (nominal p <= {level:.2f} / the factor of the noise's kind, "
            f"{LEVEL_INFLATION}) on curves without "
            f"the pattern, {curves} curves each (seed {seed}); a rate's standard error is about "
            f"{np.sqrt(level * (1 - level) / curves):.3f}"
        )
        print(
            "| null curve | size (error bars) | pattern | checkpoints | noise | false positives | nominal p <= 0.04 |"
        )
        print("|---|---|---|---|---|---|---|")
        for (name, size, pattern, n, noise, _, _), p in nulls:
            size_text = "-" if name == "flat" else size
            print(
                f"| {name} | {size_text} | {label(pattern)} | {n} | {noise} | "
                f"{np.mean(p <= level / LEVEL_INFLATION[KIND[noise]]):.3f} | {np.mean(p <= level):.3f} |"
            )
        print()
        print("Highest false-positive rate over the rows above, by kind of noise and inflation factor (reported p =")
        print("factor x nominal p); a rate above 0.05 by less than 2 standard errors (0.03 at 200 curves) is chance")
        print("| noise | factor | highest rate | its row | rows above 0.05 | pooled rate |")
        print("|---|---|---|---|---|---|")
        for kind in dict.fromkeys(KIND[noise] for noise in args.noise):
            rows = [(a, p) for a, p in nulls if KIND[a[4]] == kind]
            for factor in FACTORS:
                rates = np.array([np.mean(p <= level / factor) for _, p in rows])
                worst = int(np.argmax(rates))
                a = rows[worst][0]
                print(
                    f"| {kind} | {factor} | {rates[worst]:.3f} | {a[0]}, {a[1]} error bars, {label(a[2])}, {a[3]} "
                    f"checkpoints, {a[4]} | {np.sum(rates > 0.05)} of {len(rates)} | {rates.mean():.4f} |"
                )
        print()
    print(f"Power: curves with the pattern, confidence >= {THRESHOLD}, {curves} curves each")
    print("| pattern | size (error bars) | checkpoints | noise | found |")
    print("|---|---|---|---|---|")
    for (_, size, pattern, n, noise, _, _), p in powers:
        print(
            f"| {label(pattern)} | {size} | {n} | {noise} | {np.mean(p <= level / LEVEL_INFLATION[KIND[noise]]):.3f} |"
        )
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
