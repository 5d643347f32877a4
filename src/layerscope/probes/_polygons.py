"""Convex polygons in batches, for the exact partitions: padded arrays and vectorised clipping.

A batch of m convex polygons is ``(P, n)``: ``P`` of shape (m, K, 2) holds the
vertices counter-clockwise, padded past each polygon's ``n[i]`` vertices (the
padding is never read as vertices). Clipping every polygon of a batch by its own line at once
(one numpy pass instead of a Python loop per polygon and line) is what makes
partitions of 10^5 regions take seconds: written by hand because no geometry
library clips many polygons by many different lines in one call.
"""

from __future__ import annotations

import numpy as np


def pad(polygons: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (each (k, 2), k >= 1) as a padded batch; each is padded by repeating its last vertex,
    so that the array drawn as it is (matplotlib) adds only zero-length edges."""
    n = np.array([len(p) for p in polygons], dtype=np.int64)
    if not len(n):
        return np.zeros((0, 1, 2)), n
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    index = starts[:, None] + np.minimum(np.arange(n.max())[None, :], n[:, None] - 1)
    return np.concatenate(polygons)[index].astype(np.float64, copy=False), n


def unpad(P: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    """The polygons of a padded batch, each (k, 2)."""
    return [P[i, :k].copy() for i, k in enumerate(n.tolist())]


def valid(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Which entries of each row are real vertices (m, K)."""
    return np.arange(P.shape[1])[None, :] < n[:, None]


def _next(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Index of each vertex's successor (padding points at vertex 0)."""
    return (np.arange(P.shape[1])[None, :] + 1) % np.maximum(n, 1)[:, None]


def areas(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Signed areas (positive for counter-clockwise polygons), by the shoelace formula."""
    Q = np.take_along_axis(P, _next(P, n)[..., None], axis=1)
    cross = P[..., 0] * Q[..., 1] - Q[..., 0] * P[..., 1]
    return 0.5 * np.where(valid(P, n), cross, 0.0).sum(1)


def sides(P: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """``a u + b v + c`` at every vertex (m, K) of each polygon, for its line ``(a, b, c)`` (lines: (m, 3))."""
    return (P @ lines[:, :2, None])[..., 0] + lines[:, 2:3]


def split_many(
    P: np.ndarray, n: np.ndarray, s: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Vertex by vertex as in :func:`layerscope.probes.partition2d.clip` (a vertex on the kept side
    stays, an edge whose ends lie strictly on opposite sides adds its crossing point; a part with
    fewer than three vertices or no area gets 0 vertices), for many polygons at once: both parts
    of each polygon, where ``s >= 0`` and where ``s <= 0``, from the values ``s`` (m, K) of an
    affine function at its vertices (:func:`sides`); each part as a padded batch ``(P, n)``.

    The two parts share the crossing points, so they are computed once. Each part's kept
    entries (vertex i, then the crossing on edge i) are packed to the front of its rows by
    their running count (a scatter: cheaper than sorting the rows).
    """
    m, K, _ = P.shape
    rows = np.arange(m)
    last = np.maximum(n, 1) - 1
    s_next = np.roll(s, -1, axis=1)  # the successor's value; the last real vertex's successor is vertex 0
    s_next[rows, last] = s[:, 0]
    Q = np.roll(P, -1, axis=1)
    Q[rows, last] = P[:, 0]
    real = valid(P, n)
    cross = real & (((s > 0) & (s_next < 0)) | ((s < 0) & (s_next > 0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, s / (s - s_next), 0.0)
    entries = np.stack([P, P + t[..., None] * (Q - P)], axis=2).reshape(
        m, 2 * K, 2
    )  # vertex i, then the crossing on edge i
    parts = []
    for keep in (real & (s >= 0), real & (s <= 0)):
        mask = np.stack([keep, cross], axis=2).reshape(m, 2 * K)
        count = mask.sum(1)
        out = np.zeros((m, max(int(count.max(initial=0)), 1), 2))
        r, c = np.nonzero(mask)
        out[r, np.cumsum(mask, axis=1)[r, c] - 1] = entries[r, c]
        count = count.astype(np.int64)
        count[(count < 3) | ~(areas(out, count) > 0)] = 0
        parts.append((out, count))
    return parts[0], parts[1]


def interiors(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Three non-collinear points inside each polygon (m, 3, 2): the vertex mean c, and halfway from it
    towards two vertices: a, the farthest from c, and b, the farthest from the line through c and a
    (so the triangle is as wide as the polygon allows: the two farthest vertices can lie on one line
    through c, as the ends of a parallelogram's long diagonal do)."""
    real = valid(P, n)
    c = np.where(real[..., None], P, 0.0).sum(1) / n[:, None]
    d = P - c[:, None]
    far = np.where(real, np.einsum("mkd,mkd->mk", d, d), -np.inf).argmax(1)
    a = np.take_along_axis(d, far[:, None, None], axis=1)  # (m, 1, 2)
    off = np.where(real, np.abs(a[..., 0] * d[..., 1] - a[..., 1] * d[..., 0]), -np.inf).argmax(1)
    b = np.take_along_axis(d, off[:, None, None], axis=1)
    return np.concatenate([c[:, None], c[:, None] + 0.5 * a, c[:, None] + 0.5 * b], axis=1)


def extent(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The largest absolute coordinate of each polygon's vertices (m,)."""
    return np.where(valid(P, n)[..., None], np.abs(P), 0.0).max(axis=(1, 2))
