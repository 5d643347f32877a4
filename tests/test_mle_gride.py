import warnings

import numpy as np
import pytest
from scipy.special import betaln

from layerscope.data.manifolds import affine_subspace, flat_torus, hypersphere
from layerscope.estimators import GRIDE, MLE, gride_scale, mle, nearest_neighbors
from layerscope.estimators.gride import gride_from_ratios
from layerscope.estimators.mle import mle_from_distances


def naive_mle(distances, k1, k2):
    """Levina-Bickel with MacKay-Ghahramani averaging, written as loops from the papers' formulas."""
    per_k = []
    for k in range(k1, k2 + 1):
        inverses = []
        for row in distances:
            inverses.append(sum(np.log(row[k - 1] / row[j]) for j in range(k - 1)) / (k - 1))
        per_k.append(1.0 / np.mean(inverses))
    return np.mean(per_k)


def test_mle_matches_naive_formula():
    X = hypersphere(400, 3, 7, seed=0)
    nb = nearest_neighbors(X, 12)
    ours, err = mle_from_distances(nb.distances, 5, 12)
    assert ours == pytest.approx(naive_mle(nb.distances, 5, 12), rel=1e-12)
    assert err > 0


@pytest.mark.parametrize("generator,d", [(affine_subspace, 2), (affine_subspace, 6), (hypersphere, 4), (flat_torus, 3)])
def test_mle_known_dimension(generator, d):
    assert mle(generator(5000, d, 2 * d + 4, seed=1)).value == pytest.approx(d, rel=0.07)


def test_mle_bad_parameters():
    X = hypersphere(100, 2, 3)
    with pytest.raises(ValueError, match="k2 must be an integer >= 10"):
        MLE(k1=10, k2=5).fit(X)
    with pytest.raises(ValueError, match=r"has 100 points \(n_samples = 100\); this method needs at least 201"):
        MLE(k1=10, k2=200).fit(X)


def log_likelihood(d, mu, n1, n2):
    return np.sum(np.log(d) + (n2 - n1 - 1) * np.log(mu**d - 1) - ((n2 - 1) * d + 1) * np.log(mu) - betaln(n2 - n1, n1))


def test_gride_maximises_the_likelihood():
    X = hypersphere(3000, 4, 9, seed=3)
    nb = nearest_neighbors(X, 8)
    mu = nb.distances[:, 7] / nb.distances[:, 3]
    d, err = gride_from_ratios(mu, 4, 8)
    ll = log_likelihood(d, mu, 4, 8)
    assert ll > log_likelihood(d * 1.001, mu, 4, 8) and ll > log_likelihood(d * 0.999, mu, 4, 8)
    # the error is the curvature of the log-likelihood: check by finite differences
    h = 1e-3
    curvature = (log_likelihood(d + h, mu, 4, 8) - 2 * ll + log_likelihood(d - h, mu, 4, 8)) / h**2
    assert err == pytest.approx(1 / np.sqrt(-curvature), rel=1e-3)


def test_gride_1_2_is_the_twonn_likelihood():
    X = hypersphere(2000, 3, 9, seed=4)
    est = GRIDE(1, 2).fit(X)
    nb = nearest_neighbors(X, 2)
    mu = nb.distances[:, 1] / nb.distances[:, 0]
    assert est.dimension_ == pytest.approx(len(mu) / np.log(mu).sum(), rel=1e-9)


def test_gride_scale_known_dimension():
    table = gride_scale(flat_torus(4000, 2, 6, seed=5), max_rank=32)
    assert list(table.n2) == [2, 4, 8, 16, 32]
    assert np.all(np.diff(table.scale) > 0)
    assert np.allclose(table.dimension, 2, rtol=0.06)
    assert (table.error > 0).all()


def test_gride_sees_noise_at_small_scale_only():
    # a 2-D plane with tiny isotropic noise in 10-D: high ID at the smallest scales, ~2 at large ones
    rng = np.random.default_rng(6)
    X = affine_subspace(4000, 2, 10, seed=6) + 0.01 * rng.standard_normal((4000, 10))
    table = gride_scale(X, max_rank=128)
    assert table.dimension.iloc[0] > 4
    assert np.all(np.diff(table.dimension) < 0)
    assert table.dimension.iloc[-1] == pytest.approx(2, rel=0.1)


@pytest.mark.peers
def test_gride_agrees_with_dadapy():
    dadapy = pytest.importorskip("dadapy")
    X = hypersphere(2000, 4, 9, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = dadapy.Data(X, maxk=8)
        ids, errs, scales = data.return_id_scaling_gride(range_max=8)
    ours = gride_scale(X, max_rank=8)
    np.testing.assert_allclose(ours.dimension.to_numpy(), ids, rtol=1e-3)
