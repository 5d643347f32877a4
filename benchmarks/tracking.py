"""Time spent in probes as a fraction of a whole run, for a preset.

    python benchmarks/tracking.py              # the quick preset
    python benchmarks/tracking.py --preset smoke

Runs the preset into a temporary folder, timing every Tracker.measure call (the
probes: activation capture and estimators, all splits) and the whole run
(training, evaluation of accuracy and loss, probes, writing the store). Prints a
table per checkpoint and the overall fraction.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from layerscope.presets import preset
from layerscope.runner import execute
from layerscope.tracker import Tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    args = parser.parse_args()
    timings: list[tuple[int, float]] = []
    original = Tracker.measure

    def timed(self, model, step, epoch=None, metrics=None):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        rows = original(self, model, step, epoch, metrics)
        timings.append((step, time.perf_counter() - t))
        return rows

    Tracker.measure = timed
    cfg = preset(args.preset)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        execute(cfg, Path(tmp) / cfg.name)
        total = time.perf_counter() - t0
    probes = sum(t for _, t in timings)
    print(
        f"# preset {args.preset!r}: {cfg.data.name}, {cfg.model.name}, {len(timings)} checkpoints, "
        f"probe sets {cfg.data.probe_splits} x {cfg.data.probe_size} inputs, estimators {cfg.probes.estimators}"
    )
    print("| step | probe time (s) |")
    print("|---|---|")
    for step, t in timings:
        print(f"| {step} | {t:.2f} |")
    print(
        f"\ntotal run {total:.1f} s, probes {probes:.1f} s ({100 * probes / total:.0f}% of the run), "
        f"everything else (training, evaluation, store) {total - probes:.1f} s"
    )


if __name__ == "__main__":
    main()
