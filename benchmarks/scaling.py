"""How TwoNN's time and memory grow with N and with D: layerscope and the peers, one run.

    .venv-peers/bin/python benchmarks/scaling.py              # the tables of docs/benchmarks.md (about 35 minutes)
    .venv-peers/bin/python benchmarks/scaling.py --quick      # small sizes only
    .venv/bin/python benchmarks/scaling.py --subsample 100000  # past exact search: a subsample's block analysis
                                                               # against the full fit

Each (library, N, D) runs in its own process through `benchmarks/estimators.py`
(one fit, after a warm-up on 50 points), with a limit of 10 minutes; a library over
it at some N is not run at larger N. Time and memory come from that one fit with the
default allocator, so the memory is the peak resident set, which glibc's caching of
freed blocks can raise above the live memory (estimators.py measures the live memory
in a second process; here that would double runs of minutes).
The growth exponent is the slope of log(time) against log(N) (or log(D)) fitted over
the sizes where time is above 0.5 s (below it fixed costs dominate).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
LABELS = {
    "layerscope": "layerscope TwoNN(error='closed-form')",
    "torchid": "torchid TwoNN (faiss flat index)",
    "skdim": "scikit-dimension TwoNN",
    "dadapy": "dadapy compute_id_2NN",
}


def measure(library: str, n: int, d: int, timeout: float) -> dict | str:
    try:
        out = subprocess.run(
            [sys.executable, str(HERE / "estimators.py"), "--one", library, str(n), str(d), "--repeats", "1"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"over {timeout / 60:.0f} min"
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return f"failed ({lines[-1][:80] if lines else f'killed, exit {out.returncode}: out of memory?'})"
    return json.loads(out.stdout.strip().splitlines()[-1])


def exponent(sizes: list[int], seconds: list[float]) -> str:
    pairs = [(math.log(s), math.log(t)) for s, t in zip(sizes, seconds) if t >= 0.5]
    if len(pairs) < 2:
        return "-"
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    slope = sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x, _ in pairs)
    return f"{slope:.2f}"


def table(axis: str, sizes: list[int], fixed: int, libraries: list[str], timeout: float) -> None:
    print(f"\n| library | {axis} | " + " | ".join(str(s) for s in sizes) + " | exponent of time |")
    print("|---" * (len(sizes) + 3) + "|")
    for library in libraries:
        cells, xs, ts = [], [], []
        for size in sizes:
            n, d = (size, fixed) if axis == "N" else (fixed, size)
            if cells and cells[-1].startswith("over"):
                cells.append("not run (the smaller N was over the limit)")
                continue
            r = measure(library, n, d, timeout)
            if isinstance(r, str):
                cells.append(r)
                continue
            cells.append(f"{r['seconds']:.2f} s, {r['extra_mib']:.0f} MiB")
            xs.append(size)
            ts.append(r["seconds"])
        print(
            f"| {LABELS[library]} | {'D = ' + str(fixed) if axis == 'N' else 'N = ' + str(fixed)} | "
            + " | ".join(cells)
            + f" | {exponent(xs, ts)} |",
            flush=True,
        )


def subsample_check(n: int, d: int, m: int, blocks: int) -> None:
    """What to do when N is too large for an exact search: TwoNN's block analysis (``twonn_scale``) on a
    random subsample of ``m`` points, timed, against the exact fit on all ``n`` points."""
    import time

    import numpy as np

    from layerscope.data.manifolds import curved_manifold
    from layerscope.estimators import TwoNN, twonn_scale

    X = curved_manifold(n, 10, d, seed=0)
    t = time.perf_counter()
    sample = X[np.random.default_rng(1).choice(n, m, replace=False)]
    scale = twonn_scale(sample, max_blocks=blocks, seed=0)
    t_scale = time.perf_counter() - t
    print(
        f"# curved_manifold(N = {n}, dim=10, D = {d}): twonn_scale on a random subsample of {m} points, {blocks} "
        f"block sizes: {t_scale:.1f} s\n"
    )
    print("| blocks | points per block | TwoNN (mean over blocks) | error (std over blocks; b = 1: the fit's) |")
    print("|---|---|---|---|")
    for row in scale.itertuples():
        print(f"| {row.n_blocks} | {row.block_size:.0f} | {row.dimension:.3f} | {row.error:.3f} |")
    t = time.perf_counter()
    full = TwoNN(error="closed-form").fit(X)
    print(
        f"\nexact TwoNN on all {n} points: {full.dimension_:.3f} +- {full.dimension_err_:.3f}, "
        f"{time.perf_counter() - t:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--subsample",
        type=int,
        metavar="N",
        help="instead: block analysis of a 20,000-point subsample of N points against the exact fit",
    )
    parser.add_argument("--libraries", nargs="+", default=list(LABELS), choices=list(LABELS))
    args = parser.parse_args()
    if args.subsample:
        subsample_check(args.subsample, 512, 20_000, 8)
        return
    timeout = 600.0
    ns = [1000, 3000, 10_000] if args.quick else [1000, 3000, 10_000, 30_000, 100_000, 200_000]
    ds = [64, 512, 2048] if args.quick else [64, 512, 2048, 8192, 20_000]
    print(
        "# TwoNN time (one fit) and peak extra memory against N at D = 512 and against D at N = 10,000;"
        " data curved_manifold(N, dim=10, D), float64"
    )
    table("N", ns, 512, args.libraries, timeout)
    table("D", ds, 10_000, args.libraries, timeout)


if __name__ == "__main__":
    main()
