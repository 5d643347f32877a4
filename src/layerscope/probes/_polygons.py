"""Convex polygons in batches, for the exact partitions: padded arrays and vectorised clipping.

A batch of m convex polygons is ``(P, n)``: ``P`` of shape (m, K, 2) holds the
vertices counter-clockwise, padded past each polygon's ``n[i]`` vertices (the
padding is never read). Clipping every polygon of a batch by its own line at once
(one numpy pass instead of a Python loop per polygon and line) is what makes
partitions of 10^5 regions take seconds: written by hand because no geometry
library clips many polygons by many different lines in one call.
"""

from __future__ import annotations

import numpy as np


def pad(polygons: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (each (k, 2)) as a padded batch."""
    n = np.array([len(p) for p in polygons], dtype=np.int64)
    P = np.zeros((len(polygons), max(int(n.max(initial=0)), 1), 2))
    for i, p in enumerate(polygons):
        P[i, : len(p)] = p
    return P, n


def unpad(P: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    """The polygons of a padded batch, each (k, 2)."""
    return [P[i, :k].copy() for i, k in enumerate(n.tolist())]


def _valid(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.arange(P.shape[1])[None, :] < n[:, None]


def _next(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Index of each vertex's successor (padding points at vertex 0)."""
    return (np.arange(P.shape[1])[None, :] + 1) % np.maximum(n, 1)[:, None]


def areas(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Signed areas (positive for counter-clockwise polygons), by the shoelace formula."""
    Q = np.take_along_axis(P, _next(P, n)[..., None], axis=1)
    cross = P[..., 0] * Q[..., 1] - Q[..., 0] * P[..., 1]
    return 0.5 * np.where(_valid(P, n), cross, 0.0).sum(1)


def clip_many(P: np.ndarray, n: np.ndarray, lines: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Each polygon's part where ``sign * (a u + b v + c) >= 0`` for its line ``(a, b, c)`` (lines: (m, 3)).

    Vertex by vertex as in :func:`layerscope.probes.partition2d.clip`: a vertex on the
    kept side stays, an edge whose ends lie strictly on opposite sides adds its
    crossing point. A part with fewer than three vertices or no area has 0 vertices.
    """
    m, K, _ = P.shape
    s = sign * (P @ lines[:, :2, None])[..., 0] + sign * lines[:, 2:3]
    nxt = _next(P, n)
    s_next = np.take_along_axis(s, nxt, axis=1)
    Q = np.take_along_axis(P, nxt[..., None], axis=1)
    valid = _valid(P, n)
    keep = valid & (s >= 0)
    cross = valid & (((s > 0) & (s_next < 0)) | ((s < 0) & (s_next > 0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, s / (s - s_next), 0.0)
    crossing = P + t[..., None] * (Q - P)
    entries = np.stack([P, crossing], axis=2).reshape(m, 2 * K, 2)  # vertex i, then the crossing on edge i
    mask = np.stack([keep, cross], axis=2).reshape(m, 2 * K)
    order = np.argsort(~mask, axis=1, kind="stable")  # the kept entries first, in their order
    out = np.take_along_axis(entries, order[..., None], axis=1)
    count = mask.sum(1)
    width = max(int(count.max(initial=0)), 1)
    out, count = out[:, :width], count.astype(np.int64)
    count[(count < 3) | ~(areas(out, count) > 0)] = 0
    return out, count


def interiors(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Three non-collinear points inside each polygon (m, 3, 2): the vertex mean, and halfway from it
    towards the two vertices farthest from it."""
    valid = _valid(P, n)
    c = np.where(valid[..., None], P, 0.0).sum(1) / n[:, None]
    distance = np.where(valid, np.linalg.norm(P - c[:, None], axis=2), -np.inf)
    far = np.argsort(-distance, axis=1, kind="stable")[:, :2]
    ends = np.take_along_axis(P, far[..., None], axis=1)
    return np.concatenate([c[:, None], c[:, None] + 0.5 * (ends - c[:, None])], axis=1)


def extent(P: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The largest absolute coordinate of each polygon's vertices (m,)."""
    return np.where(_valid(P, n)[..., None], np.abs(P), 0.0).max(axis=(1, 2))
