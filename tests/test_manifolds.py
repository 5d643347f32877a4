import numpy as np
import pytest

from layerscope.data.manifolds import MANIFOLDS, flat_torus, hypersphere, swiss_roll


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_shapes_seeds_and_rank(name):
    X = MANIFOLDS[name](300, 3, 12, seed=1)
    assert X.shape == (300, 12) and X.dtype == np.float64
    np.testing.assert_array_equal(X, MANIFOLDS[name](300, 3, 12, seed=1))
    assert not np.array_equal(X, MANIFOLDS[name](300, 3, 12, seed=2))
    assert np.abs(X.mean(0)).max() > 1e-3 or name == "curved_manifold"  # placed off the origin


def test_geometry():
    S = hypersphere(500, 4, 9, seed=0)
    centre = S.mean(0)  # the sphere is shifted; distances to its centre are all equal
    radii = np.linalg.norm(S - np.linalg.lstsq(np.c_[2 * S, np.ones(500)], (S**2).sum(1), rcond=None)[0][:9], axis=1)
    assert np.ptp(radii) < 1e-8 and centre.shape == (9,)
    assert np.linalg.matrix_rank(S - S.mean(0), tol=1e-8) == 5  # S^4 spans 5 dimensions
    T = flat_torus(500, 3, seed=0)
    assert np.linalg.matrix_rank(T - T.mean(0), tol=1e-8) == 6
    assert swiss_roll(100).shape == (100, 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ambient_dim must be >= 5"):
        hypersphere(10, 4, 4)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        MANIFOLDS["hypercube"](10, 0, 3)
