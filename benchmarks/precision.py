"""TwoNN where float32 distances fail: a 2-D subspace of R^1000, centred and shifted far away.

    python benchmarks/precision.py

10,000 Gaussian points on a random 2-D linear subspace of R^1000 (so the true ID
is 2), and the same cloud shifted by 1e3 in every coordinate. For each, prints the
estimate of: a naive float32 TwoNN (distances from |x|^2 + |y|^2 - 2 x.y, as a
plain GEMM search does), layerscope on float64 and on float32 input, dadapy and
scikit-dimension (float64), with the number of points whose nearest-neighbour
distance came out as 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def naive_float32_twonn(X: np.ndarray) -> tuple[float, int]:
    """Blocked float32 GEMM distances, r1 and r2 from them, the usual regression."""
    t = torch.from_numpy(X.astype(np.float32))
    sq = (t * t).sum(1)
    r = []
    for a in range(0, len(t), 1024):
        d2 = (sq[a : a + 1024, None] + sq[None, :] - 2 * t[a : a + 1024] @ t.T).clamp_min(0)
        d2[torch.arange(d2.shape[0]), torch.arange(a, a + d2.shape[0])] = float("inf")
        r.append(d2.topk(2, dim=1, largest=False).values.sqrt())
    r = torch.cat(r).double().numpy()
    zeros = int((r[:, 0] == 0).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.sort(r[:, 1] / r[:, 0])
    n = len(mu)
    keep = int(n * 0.9)
    x = np.log(mu[:keep])
    y = -np.log(1 - np.arange(1, keep + 1) / n)
    with np.errstate(invalid="ignore"):
        return float(np.dot(x, y) / np.dot(x, x)), zeros


def main() -> None:
    import skdim
    from dadapy import Data

    from layerscope.estimators import TwoNN

    rng = np.random.default_rng(0)
    base = rng.standard_normal((10_000, 2)) @ rng.standard_normal((2, 1000))
    print("| data | method | estimate | points with r1 = 0 |")
    print("|---|---|---|---|")
    for label, X in [("2-D subspace, centred", base), ("same, shifted by 1e3", base + 1e3)]:
        naive, zeros = naive_float32_twonn(X)
        print(f"| {label} | naive float32 GEMM TwoNN | {naive:.4f} | {zeros} |")
        for name, data in [
            ("layerscope TwoNN, float64 input", X),
            ("layerscope TwoNN, float32 input", X.astype(np.float32)),
        ]:
            est = TwoNN(error="closed-form").fit(data)
            print(f"| {label} | {name} | {est.dimension_:.4f} | 0 (duplicates dropped: {est.n_duplicates_}) |")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            print(f"| {label} | dadapy compute_id_2NN (float64) | {Data(X, verbose=False).compute_id_2NN()[0]:.4f} | |")
            print(f"| {label} | scikit-dimension TwoNN (float64) | {skdim.id.TwoNN().fit(X).dimension_:.4f} | |")


if __name__ == "__main__":
    main()
