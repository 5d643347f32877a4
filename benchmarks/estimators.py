"""TwoNN: layerscope against torchid, scikit-dimension and dadapy, on the same arrays, in one run.

    python benchmarks/estimators.py                       # N in {2000, 10000}, D in {100, 1000, 10000}
    python benchmarks/estimators.py --n 2000 --d 100 1000  # a subset
    python benchmarks/estimators.py --scaling              # the scaling tables instead (benchmarks/scaling.py)

Each (library, N, D) runs in a fresh subprocess: the data are made (a 10-dimensional
curved manifold, float64), then the library's fit is timed `--repeats` times (the
minimum is reported: the first call pays one-off set-up such as kernel JIT); the
peak memory is measured in another process, over one fit, as the peak resident set
minus the resident set just before it, with glibc told to hand freed blocks back
(``MALLOC_MMAP_THRESHOLD_``: see ``LIVE_MEMORY``), so that it is the live memory and
not the allocator's caching, which varied 3x between runs of the same fit. Every
library runs in the same environment and thread count.
Two floors are timed the same way: half the product X X^T (its upper triangle, in
1024-row blocks) in bfloat16 and in float32 (torch), the products an exact search
by products cannot avoid; every row's time is also given as a multiple of the bf16
floor. For layerscope the time spent outside its matrix products is given too (the
products timed as they run): the rest that a faster product unit leaves, so that its
time on a CPU with AMX is about the bf16 floor there plus this rest (a projection; the
rest's own speed differs between CPUs). The header names the CPU, its matrix features
and the bf16 / float32 speed-up layerscope measured on it (which decides its search
precision).
Prints a markdown table with the ratios peer / layerscope and each estimate's relative
difference from dadapy's (float64 throughout).

torchid declares an old Python range but runs here; in the benchmark's environment:
    pip install --ignore-requires-python torchid faiss-cpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

LIBRARIES = [
    "layerscope-nn",
    "layerscope",
    "layerscope+err",
    "torchid",
    "skdim",
    "dadapy",
    "gemm-f32",
    "gemm-bf16",
]
PEERS = ("torchid", "skdim", "dadapy", "gemm-f32", "gemm-bf16")
LABELS = {
    "layerscope-nn": "layerscope nearest_neighbors(X, 2)",
    "layerscope": "layerscope TwoNN(error='closed-form')",
    "layerscope+err": "layerscope TwoNN() (default: + 20 half-split errors)",
    "torchid": "torchid TwoNN (faiss flat index)",
    "skdim": "scikit-dimension TwoNN",
    "dadapy": "dadapy compute_id_2NN",
    "gemm-f32": "floor: half X X^T in float32",
    "gemm-bf16": "floor: half X X^T in bfloat16",
}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def fit_once(library: str, X):  # noqa: ANN001 - any array
    if library == "layerscope-nn":
        from layerscope.estimators import nearest_neighbors

        nearest_neighbors(X, 2)
        return float("nan")
    if library.startswith("layerscope"):
        from layerscope.estimators import TwoNN

        return (TwoNN(error="closed-form") if library == "layerscope" else TwoNN()).fit(X).dimension_
    if library == "skdim":
        import skdim

        return skdim.id.TwoNN().fit(X).dimension_
    if library == "dadapy":
        from dadapy import Data

        return Data(X, verbose=False).compute_id_2NN()[0]
    if library == "torchid":
        import torch
        import torchid

        return torchid.estimators.TwoNN().fit(torch.from_numpy(X)).dimension_
    if library.startswith("gemm"):
        import torch

        T = torch.from_numpy(X).to(torch.float32 if library == "gemm-f32" else torch.bfloat16)
        for a in range(0, len(T), 1024):
            T[a : a + 1024] @ T[a:].T  # the upper triangle: what a symmetric search must multiply
        return float("nan")
    raise ValueError(library)


def _time_products() -> list[float]:
    """Make every ``a @ b`` of torch tensors add its wall time to the returned one-element list.

    The search's matrix products are all ``@``; the time outside them is what a faster product unit
    (AMX) leaves: layerscope's time on such a CPU is about its floor there plus this rest.
    """
    import torch

    spent = [0.0]
    product = torch._C.TensorBase.__matmul__

    def timed(a, b):  # noqa: ANN001, ANN202 - torch's operator signature
        t = time.perf_counter()
        out = product(a, b)
        spent[0] += time.perf_counter() - t
        return out

    torch.Tensor.__matmul__ = timed
    return spent


def cpu_description() -> str:
    """The CPU's model name and its matrix-product features (from /proc/cpuinfo; platform elsewhere)."""
    import platform

    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx2")
    return f"{name} ({', '.join(f for f in wanted if f in flags) or 'no AVX2/AVX-512/AMX'})"


def run_one(library: str, n: int, d: int, repeats: int) -> dict:
    import numpy as np

    from layerscope.data.manifolds import curved_manifold

    X = np.ascontiguousarray(curved_manifold(n, 10, d, seed=0))
    warnings.simplefilter("ignore")
    fit_once(library, X[:50])  # import and warm the library on a tiny array
    before = _rss_kib()
    # The process's peak so far includes making the data (at D = 20,000 that peaks 1.5 GB above
    # the array itself): reset the high-water mark (Linux) so that only the fits count.
    reset = Path("/proc/self/clear_refs")
    if reset.exists():
        reset.write_text("5")
    inside = _time_products() if library.startswith("layerscope") else [0.0]
    times, rests = [], []
    for _ in range(repeats):
        inside[0] = 0.0
        t = time.perf_counter()
        estimate = fit_once(library, X)
        times.append(time.perf_counter() - t)
        rests.append(times[-1] - inside[0])
    peak = _hwm_kib() if reset.exists() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "library": library,
        "n": n,
        "d": d,
        "seconds": min(times),
        "outside_products": rests[times.index(min(times))] if library.startswith("layerscope") else None,
        "extra_mib": max(peak - before, 0) / 1024,
        "estimate": float(estimate),
    }


# glibc keeps freed memory for reuse and grows its threshold for handing large blocks back
# (up to 32 MB), so a process's peak resident set depends on the order of its allocations
# and frees: the same fit measured 114-323 MiB over runs. A fixed threshold returns every
# block above 64 KiB when it is freed, and the peak is then the live memory (119-120 MiB in
# three runs); but it also makes each large allocation fault its pages in anew, so the
# times come from another process with the default allocator.
LIVE_MEMORY = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}


def measure(library: str, n: int, d: int, repeats: int) -> dict | str:
    """Time (default allocator, min of ``repeats``) and peak extra memory (fixed threshold, one fit)
    of one library, each in a fresh process; a one-line reason if it failed."""
    command = [sys.executable, __file__, "--one", library, str(n), str(d)]
    result = {}
    for times, env in ((repeats, None), (1, LIVE_MEMORY)):
        run = [*command, "--repeats", str(times)]
        out = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            lines = out.stderr.strip().splitlines()
            last = lines[-1] if lines else f"exit {out.returncode} (killed: out of memory?)"
            if "ModuleNotFoundError" in last:
                last += " (not installed here; the peers' environment: see this script's docstring)"
            return f"failed: {last}"
        one = json.loads(out.stdout.strip().splitlines()[-1])
        result = one if env is None else result | {"extra_mib": one["extra_mib"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--d", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--libraries", nargs="+", default=LIBRARIES, choices=LIBRARIES)
    parser.add_argument("--one", nargs=3, metavar=("LIBRARY", "N", "D"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--scaling", action="store_true", help="time and memory against N and D (runs benchmarks/scaling.py)"
    )
    args = parser.parse_args()
    if args.scaling:
        raise SystemExit(
            subprocess.run([sys.executable, str(Path(__file__).with_name("scaling.py"))], check=False).returncode
        )
    if args.one:
        library, n, d = args.one
        print(json.dumps(run_one(library, int(n), int(d), args.repeats)))
        return

    import numpy as np
    import threadpoolctl
    import torch

    blas = {i["internal_api"]: i.get("architecture") for i in threadpoolctl.threadpool_info()}
    from layerscope.estimators.neighbors import bf16_from, bf16_speedup

    print(
        f"# CPU: {cpu_description()}; bf16 / float32 product speed-up measured by layerscope: {bf16_speedup():.2f}; "
        f"bf16 search from {bf16_from(8)} features (nearest_neighbors(X, 2), TwoNN(error='closed-form')) and "
        f"{bf16_from(0)} (TwoNN())"
    )
    print(
        f"# TwoNN benchmark: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__} BLAS {blas}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}"
    )
    print(
        f"# data: curved_manifold(N, dim=10, D), float64; time = min of {args.repeats} fit calls; "
        "memory = peak RSS during one fit minus RSS before, in another process with MALLOC_MMAP_THRESHOLD_=65536 "
        "(the live memory)\n"
    )
    header = (
        "| N | D | library | time (s) | x bf16 floor | outside products (s) | peak extra memory (MiB) | estimate "
        "(relative difference from dadapy) | time ratio peer/layerscope | memory ratio |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for n in args.n:
        for d in args.d:
            rows = {}
            for library in args.libraries:
                rows[library] = measure(library, n, d, args.repeats)
            base = rows.get("layerscope") if isinstance(rows.get("layerscope"), dict) else None
            reference = rows["dadapy"].get("estimate") if isinstance(rows.get("dadapy"), dict) else None
            floor = rows["gemm-bf16"]["seconds"] if isinstance(rows.get("gemm-bf16"), dict) else None
            for library, r in rows.items():  # in the order asked for, failures in their place
                if isinstance(r, str):
                    print(f"| {n} | {d} | {LABELS[library]} | {r} | | | | | | |")
                    continue
                times_floor = f"{r['seconds'] / floor:.2f}" if floor else ""
                ratio_t = ratio_m = ""
                if base and library in PEERS:
                    ratio_t = f"{r['seconds'] / base['seconds']:.2f}x"
                    ratio_m = f"{r['extra_mib'] / max(base['extra_mib'], 1):.1f}x"
                rest = "" if r.get("outside_products") is None else f"{r['outside_products']:.2f}"
                estimate = "" if r["estimate"] != r["estimate"] else f"{r['estimate']:.6f}"
                if estimate and reference:
                    estimate += f" ({abs(r['estimate'] / reference - 1):.0e})"
                print(
                    f"| {n} | {d} | {LABELS[library]} | {r['seconds']:.2f} | {times_floor} | {rest} | "
                    f"{r['extra_mib']:.0f} | {estimate} | {ratio_t} | {ratio_m} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
