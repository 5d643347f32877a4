"""Wall time of a sweep: the same trials one after another in one process, and on a local Ray.

    python benchmarks/sweep.py                 # 4 quick-preset trials (seeds 0-3), Ray with 2 workers
    python benchmarks/sweep.py --preset smoke --trials 4

Four numbers from one run, on this machine:
- sequential: the trials run one after another in this process (torch with its
  default threads, as `layerscope run` would do in a shell loop);
- sequential, one thread: the same with `torch.set_num_threads(1)`, the per-trial
  setting on Ray (so that trials side by side do not fight for cores);
- Ray: the same trials through `layerscope.sweep.run_trials` on a local Ray with
  `--workers` CPUs, one CPU and one torch thread per trial, Ray's start included;
- Ray's start-up: `ray.init` and a first empty task, measured on its own.
The speed-up is sequential time (default threads) over each row's time. On a
machine where torch already spreads one trial over the cores well, running trials
side by side gains less than the number of cores: compare the one-thread row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

from layerscope.config import parse_config
from layerscope.presets import preset
from layerscope.runner import execute
from layerscope.store.remote import location
from layerscope.sweep import Trial, run_trials


def trials(name: str, n: int) -> list[Trial]:
    base = preset(name).model_dump(mode="json")
    return [
        Trial(f"seed-{s}", {"seed": s}, parse_config({**base, "name": f"seed-{s}", "seed": s}, "benchmark"))
        for s in range(n)
    ]


def ray_start_up(workers: int) -> float:
    import ray

    t = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.get(ray.remote(lambda: None).remote())
    elapsed = time.perf_counter() - t
    ray.shutdown()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    todo = trials(args.preset, args.trials)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        for trial in todo:
            execute(trial.config, Path(tmp) / "sequential" / trial.name)
        sequential = time.perf_counter() - t
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        t = time.perf_counter()
        for trial in todo:
            execute(trial.config, Path(tmp) / "one-thread" / trial.name)
        one_thread = time.perf_counter() - t
        torch.set_num_threads(threads)
        start = ray_start_up(args.workers)
        import ray

        t = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=args.workers,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            states = run_trials(location(Path(tmp) / "ray"), todo, max_concurrent=args.workers, poll=0.2)
        finally:
            ray.shutdown()
        on_ray = time.perf_counter() - t
    failed = [s.name for s in states if s.status != "finished"]
    if failed:
        raise SystemExit(f"trials did not finish on Ray: {failed}")
    print(
        f"# {args.trials} trials of the {args.preset!r} preset (seeds 0-{args.trials - 1}); {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads in the sequential runs, 1 per trial on Ray"
    )
    print("| how | wall time (s) | per trial (s) | speed-up |")
    print("|---|---|---|---|")
    print(
        f"| sequential, one process, {torch.get_num_threads()} threads | {sequential:.1f} | "
        f"{sequential / args.trials:.1f} | 1.00x |"
    )
    print(
        f"| sequential, one process, 1 thread | {one_thread:.1f} | {one_thread / args.trials:.1f} | "
        f"{sequential / one_thread:.2f}x |"
    )
    print(
        f"| local Ray, {args.workers} workers (start included) | {on_ray:.1f} | {on_ray / args.trials:.1f} | "
        f"{sequential / on_ray:.2f}x |"
    )
    print(f"\nRay's start-up alone (ray.init and a first empty task): {start:.1f} s")


if __name__ == "__main__":
    main()
