"""Phase detection on simulated curves: false positives on curves without the pattern, power against the turn's size.

    .venv/bin/python benchmarks/phases.py [--curves 400]

Checkpoints log-spaced over 1..1000 steps (and step 0), noise N(0, 1) on every
value with its error given as 1 (``errors=``) or not given (estimated from the
residuals). A curve "has the pattern" when the confidence is at least the findings'
threshold (:data:`layerscope.analysis.phases.THRESHOLD`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from layerscope.analysis.phases import ID_PATTERN, LC_PATTERN, THRESHOLD, detect_phases


def log_steps(n: int) -> np.ndarray:
    return np.unique(np.round(np.concatenate([[0], np.logspace(0, 3, n - 1)])).astype(int))


def rate(curves: int, steps: np.ndarray, make, pattern, known: bool) -> float:  # noqa: ANN001
    rng = np.random.default_rng(0)
    x = np.log1p(steps) / np.log1p(steps[-1])  # 0 .. 1
    hits = 0
    for i in range(curves):
        y = make(x) + rng.standard_normal(len(x))
        try:
            phases = detect_phases(steps, y, pattern, errors=np.ones(len(x)) if known else None, seed=i)
            hits += phases[0].confidence >= THRESHOLD
        except ValueError:
            pass
    return hits / curves


def hunch(size: float):  # noqa: ANN201
    return lambda x: size * np.minimum(x / 0.5, (1 - x) / 0.5)


def wave(size: float):  # noqa: ANN201 - down, up, down: LC's three phases
    return lambda x: size * np.interp(x, [0, 0.33, 0.67, 1], [1, 0, 1, 0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--curves", type=int, default=400)
    curves = parser.parse_args().curves
    start = time.time()
    nulls = {
        "flat": lambda x: 0 * x,
        "monotone fall (5 error bars)": lambda x: -5 * x,
        "monotone rise (5 error bars)": lambda x: 5 * x,
        # flat for the first half of log-steps, then a fall of 5 error bars: no turn, but its first
        # phase's unconstrained fit tilts up half the time (the null must be fitted with a flat phase)
        "plateau, then a fall (5 error bars)": lambda x: -5 * np.clip(2 * x - 1, 0, None),
        # one phase of a pattern flat (2026-12-01): each must count as "the pattern is not there"
        "rise, then a plateau (5 error bars)": lambda x: 5 * np.clip(2 * x, None, 1),
    }
    # nulls of the LC pattern only (they hold the ID pattern's rise and fall, or none of it)
    lc_nulls = {
        "flat, rise, fall (5 error bars)": lambda x: 5 * np.interp(x, [0, 0.33, 0.67, 1], [0, 0, 1, 0]),
        "flat, rise, fall (10 error bars)": lambda x: 10 * np.interp(x, [0, 0.33, 0.67, 1], [0, 0, 1, 0]),
        "fall, rise, flat (5 error bars)": lambda x: 5 * np.interp(x, [0, 0.33, 0.67, 1], [1, 0, 1, 1]),
        "fall, rise, flat (10 error bars)": lambda x: 10 * np.interp(x, [0, 0.33, 0.67, 1], [1, 0, 1, 1]),
    }
    print(f"False positives (confidence >= {THRESHOLD}) on curves without the pattern, {curves} curves each")
    print("| null curve | pattern | checkpoints | errors given | false-positive rate |")
    print("|---|---|---|---|---|")
    for n in (10, 29):
        for name, make in {**nulls, **lc_nulls}.items():
            for pattern, label in ((ID_PATTERN, "ID: up, down"), (LC_PATTERN, "LC: down, up, down")):
                if name in lc_nulls and pattern is ID_PATTERN:
                    continue
                for known in (True, False):
                    fp = rate(curves, log_steps(n), make, pattern, known)
                    print(f"| {name} | {label} | {n} | {'yes' if known else 'no'} | {fp:.3f} |")
    print()
    print(f"Power: curves with the pattern, its size in error bars, 12 checkpoints, {curves} curves each")
    print("| pattern | size (error bars) | errors given | found |")
    print("|---|---|---|---|")
    for size in (1, 2, 3, 4, 6):
        for pattern, make, label in (
            (ID_PATTERN, hunch(size), "ID: up, down"),
            (LC_PATTERN, wave(size), "LC: down, up, down"),
        ):
            for known in (True, False):
                found = rate(curves, log_steps(12), make, pattern, known)
                print(f"| {label} | {size} | {'yes' if known else 'no'} | {found:.3f} |")
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
