"""Point clouds of known intrinsic dimension, for tests, benchmarks and calibration.

Every generator takes the number of points, the intrinsic dimension (where it is
free), the ambient dimension and a seed, and returns a float64 array of shape
(n_points, ambient_dim). The manifold is placed in the ambient space by a random
rotation (so no coordinate is special) and a random offset (so the data are not
centred at the origin).
"""

from __future__ import annotations

import numpy as np


def _check(n_points: int, dim: int, ambient_dim: int, needed: int) -> None:
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if ambient_dim < needed:
        raise ValueError(f"ambient_dim must be >= {needed} for this manifold of dimension {dim}, got {ambient_dim}")


def _place(Z: np.ndarray, ambient_dim: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate points given in their first coordinates into ``ambient_dim`` dimensions, and shift them."""
    q, _ = np.linalg.qr(rng.standard_normal((ambient_dim, Z.shape[1])))
    return Z @ q.T + rng.standard_normal(ambient_dim)


def hypersphere(n_points: int, dim: int, ambient_dim: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Uniform points on the unit sphere S^dim (a ``dim``-manifold in R^(dim+1))."""
    ambient_dim = dim + 1 if ambient_dim is None else ambient_dim
    _check(n_points, dim, ambient_dim, dim + 1)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_points, dim + 1))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    return _place(Z, ambient_dim, rng)


def flat_torus(n_points: int, dim: int, ambient_dim: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Uniform points on the flat torus (S^1)^dim, each circle in its own plane of R^(2 dim).

    No boundary and no curvature of the metric: the easiest case for local estimators.
    """
    ambient_dim = 2 * dim if ambient_dim is None else ambient_dim
    _check(n_points, dim, ambient_dim, 2 * dim)
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 2 * np.pi, size=(n_points, dim))
    Z = np.concatenate([np.cos(theta), np.sin(theta)], axis=1)
    return _place(Z, ambient_dim, rng)


def hypercube(n_points: int, dim: int, ambient_dim: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Uniform points in the unit cube [0, 1]^dim."""
    ambient_dim = dim if ambient_dim is None else ambient_dim
    _check(n_points, dim, ambient_dim, dim)
    rng = np.random.default_rng(seed)
    return _place(rng.uniform(size=(n_points, dim)), ambient_dim, rng)


def affine_subspace(n_points: int, dim: int, ambient_dim: int, *, seed: int = 0) -> np.ndarray:
    """Standard Gaussian points in a random ``dim``-dimensional affine subspace."""
    _check(n_points, dim, ambient_dim, dim)
    rng = np.random.default_rng(seed)
    return _place(rng.standard_normal((n_points, dim)), ambient_dim, rng)


def swiss_roll(n_points: int, ambient_dim: int = 3, *, seed: int = 0) -> np.ndarray:
    """The swiss roll: a rolled-up rectangle, intrinsic dimension 2."""
    _check(n_points, 2, ambient_dim, 3)
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n_points))
    h = 21 * rng.uniform(size=n_points)
    Z = np.column_stack([t * np.cos(t), h, t * np.sin(t)])
    return _place(Z, ambient_dim, rng)


def curved_manifold(n_points: int, dim: int, ambient_dim: int, *, seed: int = 0) -> np.ndarray:
    """A smooth, curved embedding of the cube: ``tanh(z A + b)`` for z uniform in [0, 1]^dim.

    A is a random full-rank (dim x ambient_dim) matrix, so the map is one-to-one and
    the image has dimension ``dim``; unlike the other generators it is not flat.
    """
    _check(n_points, dim, ambient_dim, dim)
    rng = np.random.default_rng(seed)
    z = rng.uniform(size=(n_points, dim))
    A = rng.standard_normal((dim, ambient_dim)) * 2.0 / np.sqrt(dim)
    b = rng.standard_normal(ambient_dim) * 0.5
    return np.tanh(z @ A + b)


#: Generators whose dimension is a parameter, by name: ``MANIFOLDS[name](n, dim, ambient_dim, seed=...)``.
MANIFOLDS = {
    "hypersphere": hypersphere,
    "flat_torus": flat_torus,
    "hypercube": hypercube,
    "affine_subspace": affine_subspace,
    "curved_manifold": curved_manifold,
}
