"""How TwoNN's time and memory grow with N and with D: layerscope and the peers, one run.

    .venv-peers/bin/python benchmarks/scaling.py              # the tables of docs/benchmarks.md (about 10 minutes)
    .venv-peers/bin/python benchmarks/scaling.py --quick      # small sizes only

Each (library, N, D) runs in its own process through `benchmarks/estimators.py`
(one fit, after a warm-up on 50 points; time and peak extra memory as there), with
a limit of 10 minutes. scikit-dimension is run up to `--skdim-max-n` points (it holds
an N x N matrix: 1.5 GB at N = 10,000 and 3 GB at 30,000 at D = 512, so 100,000 would not
fit in this machine's memory); layerscope, torchid and dadapy go on to 200,000.
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
LABELS = {"layerscope": "layerscope TwoNN(n_subsamples=0)", "torchid": "torchid TwoNN (faiss flat index)",
          "skdim": "scikit-dimension TwoNN", "dadapy": "dadapy compute_id_2NN"}


def measure(library: str, n: int, d: int, timeout: float) -> dict | str:
    try:
        out = subprocess.run([sys.executable, str(HERE / "estimators.py"), "--one", library, str(n), str(d), "--repeats", "1"],
                             capture_output=True, text=True, timeout=timeout, check=False)
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


def table(axis: str, sizes: list[int], fixed: int, libraries: list[str], skdim_max_n: int, timeout: float) -> None:
    print(f"\n| library | {axis} | " + " | ".join(str(s) for s in sizes) + " | exponent of time |")
    print("|---" * (len(sizes) + 3) + "|")
    for library in libraries:
        cells, xs, ts = [], [], []
        for size in sizes:
            n, d = (size, fixed) if axis == "N" else (fixed, size)
            if library == "skdim" and n > skdim_max_n:
                cells.append("not run (memory: N x N)")
                continue
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
        print(f"| {LABELS[library]} | {'D = ' + str(fixed) if axis == 'N' else 'N = ' + str(fixed)} | " + " | ".join(cells) + f" | {exponent(xs, ts)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skdim-max-n", type=int, default=30_000)
    parser.add_argument("--libraries", nargs="+", default=list(LABELS), choices=list(LABELS))
    args = parser.parse_args()
    timeout = 600.0
    ns = [1000, 3000, 10_000] if args.quick else [1000, 3000, 10_000, 30_000, 100_000, 200_000]
    ds = [64, 512, 2048] if args.quick else [64, 512, 2048, 8192, 20_000]
    print("# TwoNN time (one fit) and peak extra memory against N at D = 512 and against D at N = 10,000;"
          " data curved_manifold(N, dim=10, D), float64")
    table("N", ns, 512, args.libraries, args.skdim_max_n, timeout)
    table("D", ds, 10_000, args.libraries, args.skdim_max_n, timeout)


if __name__ == "__main__":
    main()
