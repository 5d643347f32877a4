"""Exact linear regions of a piecewise-linear network on a 2-D plane through input space.

The plane is ``x(u, v) = origin + u e1 + v e2`` (e1, e2 orthonormal, so pictures are
not distorted), through three given points or a point and two directions. On it the
network is piecewise affine. Starting from a rectangular window, layer after layer,
every current region (a convex polygon on which all earlier layers are affine) is
cut by the lines where a neuron of the next layer changes sign. On a region the
layer's pre-activations are affine in (u, v), so three non-collinear points of the
region determine them exactly; the model runs in float64 for this. The decision
boundary is found the same way from the logits: in each final region, the
segments where two classes tie at the top.

Supported: networks whose nonlinearities are ReLU or LeakyReLU, as modules or as
functions called in ``forward`` (any architecture, skip connections included; a
nonlinearity called several times in one forward pass counts once per call,
``name#call``, in the order the calls run; see :mod:`.nonlinearities`).
Max-pooling cuts regions along lines between pairs of pooled inputs and is
refused here.

Convex polygons are clipped by half-planes by hand (Sutherland-Hodgman with one
plane): each cut needs the exact sign bookkeeping of the two sides, which is a
few lines of numpy and much cheaper than building a geometry-library object per
cut. All regions of a layer are cut together (:mod:`._polygons`, padded arrays).

Two paths give the same partition: a network that is an ``nn.Sequential`` chain of
modules is cut one segment of modules per layer, from the parent regions' affine maps
(:func:`_chain_partition`); any other runs from the plane to each layer being cut.
"The same" up to the cut's tolerance: a line that passes within 1e-9 (relative to
the region's scale) of a vertex does not cut there. The two paths, and two CPUs'
matrix kernels, round the affine maps differently, so a line that close to a vertex
can cut off a sliver (far thinner than a pixel of any picture) on one and not on the
other: the region counts can then differ by such slivers (benchmarks/partition2d.py
counts them: 128,476 against 128,475 regions on an Intel Xeon, the same count on an
AMD EPYC). Exact agreement would need exact arithmetic.
Timings (10^5 regions of a 784-200x4 MLP in about 2 s and 4 s on 2 cores) and what
made them: docs/benchmarks.md, "Exact 2-D partitions".
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..data.datasets import first_of_each_class
from ..results import MODEL_LEVEL, FigureSpec, Metric, Row
from . import _polygons as polygons
from ._model import NonFiniteOutputError, model_device
from .base import ProbeContext, ProbeSettings, ProbeSpec
from .nonlinearities import Call, nonlinearity_calls, piecewise_calls, refuse_smooth_modules

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_TOL = 1e-9
# Regions are handled in blocks whose (regions, 3, neurons) float64 arrays take about this many
# bytes: small enough to stay in the allocator's heap and in cache (blocks of 8192 regions of a
# 200-wide layer, 39 MB each, made a 150,000-region partition 1.3x slower).
_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class _Rows:
    """An array's rows kept as the blocks they were made in, ``size`` rows each: copying them into one
    array of a few hundred MB cost more (page faults on fresh memory) than the cut that made them."""

    parts: list[np.ndarray]
    size: int

    def take(self, rows: np.ndarray) -> np.ndarray:
        first, last = int(rows.min()) // self.size, int(rows.max()) // self.size
        joined = self.parts[first] if first == last else np.concatenate(self.parts[first : last + 1])
        return joined[rows - first * self.size]


def _blocks(regions: int, neurons: int, size: int | None = None) -> list[slice]:
    """Consecutive blocks of ``regions``, each of ``size`` regions (default: about ``_BLOCK_BYTES``)."""
    size = size or max(1, _BLOCK_BYTES // (24 * max(neurons, 1)))
    return [slice(a, min(a + size, regions)) for a in range(0, regions, size)]


@dataclass(frozen=True)
class Partition:
    """The linear regions of a network on a plane.

    Attributes
    ----------
    origin : numpy.ndarray of shape (input_dim,)
    basis : numpy.ndarray of shape (2, input_dim)
        Orthonormal e1, e2.
    window : tuple of float
        ``(u_min, u_max, v_min, v_max)``.
    layers : list of str
        The nonlinearities in the order they run (``name#call`` for a module called more than once).
    regions_per_layer : list of list of numpy.ndarray
        After each layer, the regions so far: convex polygons, arrays (m, 2) of
        (u, v) vertices counter-clockwise. The last entry is the network's partition.
    patterns : list of numpy.ndarray of bool
        For each final region, the activation pattern (all neurons of all layers,
        concatenated in order) at its interior.
    decision_boundary : list of numpy.ndarray of shape (2, 2)
        Segments (two (u, v) end points) where the predicted class changes.
    points : numpy.ndarray of shape (k, 2)
        (u, v) of the points that defined the plane.
    """

    origin: np.ndarray
    basis: np.ndarray
    window: tuple[float, float, float, float]
    layers: list[str]
    regions_per_layer: list[list[np.ndarray]]
    patterns: list[np.ndarray]
    decision_boundary: list[np.ndarray]
    points: np.ndarray

    @property
    def regions(self) -> list[np.ndarray]:
        return self.regions_per_layer[-1]

    def to_input(self, uv: np.ndarray) -> np.ndarray:
        """Input-space points of plane coordinates ``uv`` (k, 2)."""
        return self.origin + np.asarray(uv) @ self.basis

    def plot(
        self,
        ax: Axes | None = None,
        *,
        layer: int = -1,
        points: np.ndarray | None = None,
        labels: Sequence[int] | None = None,
        title: str | None = None,
    ) -> Axes:
        """Draw the regions (after ``layer``), the decision boundary and the points; returns the axes."""
        import matplotlib
        from matplotlib.collections import LineCollection, PolyCollection

        from .._plotting import subplots

        if ax is None:
            _, ax = subplots(figsize=(5, 5))
        regions = self.regions_per_layer[layer]
        rng = np.random.default_rng(0)
        colours = matplotlib.colormaps["Pastel1"](rng.integers(0, 9, len(regions)))
        width = 0.3 if len(regions) < 5000 else 0.1  # dense partitions: thinner edges
        # one padded array: matplotlib's fast path for arrays of polygons, 3x faster than a list of 10^5
        ax.add_collection(
            PolyCollection(polygons.pad(regions)[0], facecolors=colours, edgecolors="0.35", linewidths=width),
            autolim=False,
        )
        if self.decision_boundary:
            ax.add_collection(
                LineCollection(self.decision_boundary, colors="crimson", linewidths=2, label="decision boundary")
            )
        pts = self.points if points is None else np.asarray(points)
        colour = {"c": "k"} if labels is None else {"c": labels, "cmap": "tab10", "vmin": 0, "vmax": 9}
        ax.scatter(pts[:, 0], pts[:, 1], s=40, zorder=3, edgecolors="white", label="data points", **colour)
        u0, u1, v0, v1 = self.window
        ax.set_xlim(u0, u1)
        ax.set_ylim(v0, v1)
        ax.set_aspect("equal")
        ax.set_xlabel("u (input units along e1)")
        ax.set_ylabel("v (input units along e2)")
        ax.set_title(title or f"{len(regions)} linear regions")
        return ax


def clip(polygon: np.ndarray, line: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """The part of a convex polygon where ``sign * (a u + b v + c) >= 0``, ``line = (a, b, c)``.

    A plain loop over the few vertices: faster here than numpy's vectorised calls.
    """
    s = (sign * (polygon @ line[:2] + line[2])).tolist()
    out = []
    m = len(polygon)
    for i in range(m):
        sp, sq = s[i], s[(i + 1) % m]
        if sp >= 0:
            out.append(polygon[i])
        if (sp > 0 > sq) or (sp < 0 < sq):
            out.append(polygon[i] + (sp / (sp - sq)) * (polygon[(i + 1) % m] - polygon[i]))
    return np.array(out) if len(out) >= 3 and _area(np.array(out)) > 0 else np.empty((0, 2))


def _area(polygon: np.ndarray) -> float:
    u, v = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(u[:-1] @ v[1:] + u[-1] * v[0] - v[:-1] @ u[1:] - v[-1] * u[0])


def _affine(uv: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Coefficients (regions, 3, n) of affine functions of (u, v): rows the coefficients of u, v
    and 1, from their values (regions, 3, n) at three points per region, uv (regions, 3, 2)."""
    # batched 3x3 inverses, then one product (numpy's batched solve with many right-hand sides was far slower)
    return np.matmul(np.linalg.inv(_homogeneous(uv)), values)


@torch.no_grad()
def partition2d(
    model: nn.Module,
    points: torch.Tensor | None = None,
    *,
    origin: torch.Tensor | None = None,
    directions: torch.Tensor | None = None,
    window: tuple[float, float, float, float] | None = None,
    margin: float = 0.5,
    max_regions: int = 200_000,
    progress: Callable[[str], None] | None = None,
) -> Partition:
    """Exact partition of a plane through input space into the network's linear regions.

    Parameters
    ----------
    model : nn.Module
        A ReLU / LeakyReLU network; evaluated in eval mode, as a float64 copy.
    points : torch.Tensor of shape (3, ...), optional
        Three inputs the plane passes through (for instance three data points).
    origin, directions : torch.Tensor, optional
        Instead of ``points``: a point and two directions (shape (2, ...)).
    window : (u_min, u_max, v_min, v_max), optional
        Plane coordinates of the rectangle to partition. Default: the box around the
        three points, widened by ``margin`` of its size on each side.
    max_regions : int
        Stop with an error past this many regions.
    progress : callable, optional
        Called with a line of text after each layer is cut (layer, regions so far) and
        before the decision boundary: for a status display on long partitions.

    Returns
    -------
    Partition
    """
    refuse_smooth_modules(model)
    if points is not None:
        flat = points.flatten(1).double()
        if len(flat) != 3:
            raise ValueError(f"give exactly three points for the plane, got {len(flat)}")
        o = flat[0]
        d = flat[1:] - o
    elif origin is not None and directions is not None:
        o = origin.flatten().double()
        d = directions.flatten(1).double()
        if len(d) != 2:
            raise ValueError(f"give exactly two directions, got {len(d)}")
    else:
        raise ValueError("give three points, or an origin and two directions")
    q, r = torch.linalg.qr(d.T)  # orthonormal basis of the plane
    if abs(float(r[1, 1])) < 1e-12 * max(1.0, abs(float(r[0, 0]))):
        raise ValueError("the points or directions do not span a plane (they are collinear)")
    basis = q.T.numpy()
    origin_np = o.numpy()
    shape = (points if points is not None else origin.unsqueeze(0))[0].shape
    defining = np.vstack([[0.0, 0.0], (d @ q).numpy()]) if points is not None else np.zeros((1, 2))
    if window is None:
        lo, hi = defining.min(0), defining.max(0)
        size = np.maximum(hi - lo, 1e-6)
        lo, hi = lo - margin * size, hi + margin * size
        window = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    u0, u1, v0, v1 = window
    if not (u1 > u0 and v1 > v0):
        raise ValueError(f"window must have u_min < u_max and v_min < v_max, got {window}")

    net = copy.deepcopy(model).double().eval()
    device = model_device(model)
    plane = torch.from_numpy(basis).to(device)
    start = torch.from_numpy(origin_np).to(device)

    pooling = sorted({c.name for c in nonlinearity_calls(net, start.view(1, *shape)) if c.kind.startswith("max_pool")})
    if pooling:
        raise ValueError(
            f"partition2d supports ReLU and LeakyReLU networks; max-pooling is not supported: {', '.join(pooling)}"
        )

    network, plane_inputs = _plane_network(net, start, plane, shape)

    def run(
        uv: np.ndarray, stop: tuple[str, int] | None = None
    ) -> tuple[dict[tuple[str, int], torch.Tensor], torch.Tensor | None]:
        """Pre-activations of the nonlinearities at plane points ``uv``, and the outputs; with ``stop``,
        only up to that nonlinearity (the rest of the network is not run)."""
        sink: dict[tuple[str, int], torch.Tensor] = {}  # in the order the calls run

        def record(c: Call) -> None:
            sink[(c.name, c.call)] = c.pre.flatten(1)
            if (c.name, c.call) == stop:
                raise _Stop

        out = None
        try:
            with piecewise_calls(network, record):
                out = network(plane_inputs(torch.from_numpy(uv).to(device)))
        except _Stop:
            pass
        if out is not None and not bool(torch.isfinite(out).all()):
            raise NonFiniteOutputError(
                "the model's outputs hold NaN or inf on the plane (has it diverged?): its partition is undefined"
            )
        return {k: v.cpu() for k, v in sink.items()}, (None if out is None else out.flatten(1).cpu())

    # The nonlinearities in the order they run; a module called twice is two of them.
    first = run(np.zeros((1, 2)))[0]
    order = list(first)
    repeated = {name for name, call in order if call > 0}
    labels = [f"{name}#{call}" if name in repeated else name for name, call in order]
    P, n = polygons.pad([np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)])
    per_layer = []
    chain = _chain(network, order)
    if chain is None:  # any architecture: each layer's pre-activations by a forward pass from the plane
        widths = [int(v.shape[1]) for v in first.values()]
        width = max(widths, default=1)  # the widest layer sizes the final pass's blocks
        for key, neurons in zip(order, widths, strict=True):
            P, n, _, _ = _cut(
                P,
                n,
                lambda interior, _, key=key: run(interior.reshape(-1, 2), stop=key)[0][key].numpy(),
                neurons,
                max_regions,
            )
            per_layer.append(polygons.unpad(P, n))
            _report(progress, labels, len(per_layer), len(P))
        # one pass over three interior points per region: the first (the vertex mean) gives the
        # activation patterns, all three the affine logits for the decision boundary
        # (a block of regions at a time)
        interior = polygons.interiors(P, n)
        parts = [run(interior[block].reshape(-1, 2)) for block in _blocks(len(P), max(width, 1))]
        patterns = np.concatenate(
            [
                torch.cat([pre[k].view(-1, 3, pre[k].shape[1])[:, 0] > 0 for k in order], dim=1).numpy()
                for pre, _ in parts
            ]
        )
        logits = np.concatenate([out.numpy() for _, out in parts])
    else:
        P, n, per_layer, patterns, logits, interior = _chain_partition(
            P,
            n,
            chain,
            plane_inputs,
            device,
            max_regions,
            lambda done, regions: _report(progress, labels, done, regions),
        )
    boundary = _decision_boundary(P, n, interior, logits)
    return Partition(origin_np, basis, window, labels, per_layer, list(patterns), boundary, defining)


@dataclass(frozen=True)
class _Chain:
    """A network that is a chain of modules, split at its nonlinearities: ``segments[i]`` maps the
    previous nonlinearity's output (the plane coordinates for i = 0) to the i-th nonlinearity's input,
    ``activations[i]`` is that nonlinearity, ``tail`` maps the last one's output to the outputs."""

    segments: list[nn.Module]
    activations: list[nn.Module]
    tail: nn.Module


def _chain(network: nn.Module, order: list[tuple[str, int]]) -> _Chain | None:
    """``network`` as a :class:`_Chain` when it is an ``nn.Sequential`` (nested ones allowed) whose
    nonlinearities are its ReLU / LeakyReLU modules, each run once; else None."""
    if not isinstance(network, nn.Sequential):
        return None
    leaves = []
    for name, module in network.named_modules():
        children = list(module.children())
        if children and not isinstance(module, nn.Sequential):
            return None  # a container with its own forward: not a plain chain
        if not children:
            leaves.append((name, module))
    names = [name for name, _ in leaves]
    activation_names = [name for name, m in leaves if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    if [(name, 0) for name in activation_names] != list(order):
        return None  # functional nonlinearities, or modules called more than once
    cuts = [names.index(name) for name in activation_names]
    bounds = [-1, *cuts]
    segments = [nn.Sequential(*[m for _, m in leaves[a + 1 : b]]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return _Chain(segments, [leaves[i][1] for i in cuts], nn.Sequential(*[m for _, m in leaves[cuts[-1] + 1 :]]))


def _chain_partition(
    P: np.ndarray,
    n: np.ndarray,
    chain: _Chain,
    plane_inputs: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    max_regions: int,
    cut: Callable[[int, int], None] = lambda done, regions: None,
) -> tuple:
    """The partition of a chain network, one layer of modules per cut.

    A region's children (after cutting it by layer i's lines) share its affine map of
    layer i's pre-activations: that map, evaluated at a child's three interior points
    and passed through the nonlinearity (fixed on the child), gives the input of the
    next segment at those points. So each layer costs one segment's forward pass
    instead of one through every layer before it (the general path), and the
    activation patterns come from the same values. Exact in the same sense: float64
    values at interior points, affine maps from three points. Values are made a block
    of regions at a time, as each cut needs them.
    """

    # (called by partition2d, under torch.no_grad)
    def per_region(out: torch.Tensor, regions: int) -> np.ndarray:
        return out.flatten(1).cpu().numpy().reshape(regions, 3, -1)

    shapes = []  # each segment's output shape for one point: the flattened pre-activations get it back (convolutions)
    x = plane_inputs(torch.zeros((1, 2), dtype=torch.float64, device=device))
    for segment, activation in zip(chain.segments, chain.activations, strict=True):
        x = segment(x)
        shapes.append(tuple(x.shape[1:]))
        x = activation(x)
    per_layer, patterns = [], np.zeros((1, 0), dtype=bool)
    parent = coefficients = None
    signs: list[np.ndarray] = []

    def next_values(
        interior: np.ndarray, block: slice, following: nn.Module, activation: nn.Module, shape: tuple[int, ...]
    ) -> np.ndarray:
        """Values at the block's interior points of ``following`` after the previous layer, whose
        pre-activations (of that ``shape`` per point) are the parents' affine maps; the previous
        layer's signs are kept."""
        pre = np.matmul(_homogeneous(interior), coefficients.take(parent[block]))  # (regions, 3, neurons)
        signs.append(pre[:, 0] > 0)
        return per_region(following(activation(torch.from_numpy(pre.reshape(-1, *shape)).to(device))), len(pre))

    for i in range(len(chain.activations)):
        if i == 0:

            def values(interior: np.ndarray, _: slice) -> np.ndarray:
                start = plane_inputs(
                    torch.from_numpy(interior.reshape(-1, 2)).to(device)
                )  # the network's input at these points
                return per_region(chain.segments[0](start), len(interior))
        else:
            values = lambda interior, block, i=i: next_values(
                interior, block, chain.segments[i], chain.activations[i - 1], shapes[i - 1]
            )  # noqa: E731
        signs.clear()
        P, n, new_parent, coefficients_in = _cut(P, n, values, math.prod(shapes[i]), max_regions, keep=True)
        if i > 0:
            patterns = np.concatenate([patterns, np.concatenate(signs)], axis=1)
        patterns = patterns[new_parent]
        parent, coefficients = new_parent, coefficients_in
        per_layer.append(polygons.unpad(P, n))
        cut(len(per_layer), len(P))
    interior = polygons.interiors(P, n)
    signs.clear()
    logits = [
        next_values(interior[block], block, chain.tail, chain.activations[-1], shapes[-1])
        for block in _blocks(len(P), math.prod(shapes[-1]))
    ]
    patterns = np.concatenate([patterns, np.concatenate(signs)], axis=1)
    return P, n, per_layer, patterns, np.concatenate(logits).reshape(len(P) * 3, -1), interior


def _report(progress: Callable[[str], None] | None, labels: list[str], done: int, regions: int) -> None:
    if progress is not None:
        after = "" if done < len(labels) else "; finding the decision boundary"
        progress(f"cut {labels[done - 1]} ({done} of {len(labels)} layers): {regions:,} regions{after}")


def _homogeneous(uv: np.ndarray) -> np.ndarray:
    return np.concatenate([uv, np.ones((*uv.shape[:-1], 1))], axis=-1)


class _Stop(Exception):  # noqa: N818 - control flow, not an error: the layer needed has run
    """Ends a forward pass early, once the nonlinearity needed has been recorded."""


def _plane_network(
    net: nn.Module, start: torch.Tensor, plane: torch.Tensor, shape: torch.Size
) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The network as a function of plane coordinates (u, v), as cheap as it can be made exactly.

    When the first module the input meets is a ``Linear`` (after ``Flatten`` modules),
    the plane is folded into it: ``W (o + u e1 + v e2) + b = (W o + b) + [u v] (W [e1 e2])^T``,
    a 2-input layer, so the 784-wide product and the inputs themselves are never
    formed. The fold is kept only if it gives the network's outputs on test points
    (to 1e-9 relative); otherwise the inputs ``o + u e1 + v e2`` are built and run.
    Returns the network to run (its modules keep their names) and how to make its
    input from (u, v).
    """

    def inputs(uv: torch.Tensor) -> torch.Tensor:
        return (start + uv @ plane).view(len(uv), *shape)

    executed: list[tuple[str, nn.Module]] = []
    modules = [(name, m) for name, m in net.named_modules() if not list(m.children())]
    handles = [
        m.register_forward_pre_hook(lambda m, args, name=name: executed.append((name, m))) for name, m in modules
    ]
    try:
        with torch.no_grad():
            net(start.view(1, *shape))
    finally:
        for h in handles:
            h.remove()
    first = 0
    while first < len(executed) and isinstance(executed[first][1], nn.Flatten):
        first += 1
    if (
        first == len(executed)
        or not isinstance(executed[first][1], nn.Linear)
        or executed[first][1].in_features != start.numel()
    ):
        return net, inputs
    name, linear = executed[first]
    folded_net = copy.deepcopy(net)
    folded = nn.Linear(2, linear.out_features, dtype=plane.dtype, device=plane.device)
    with torch.no_grad():
        folded.weight.copy_(linear.weight @ plane.T)
        folded.bias.copy_(linear.weight @ start + (linear.bias if linear.bias is not None else 0))
    for flatten_name, _ in executed[:first]:
        folded_net.set_submodule(flatten_name, nn.Identity())
    folded_net.set_submodule(name, folded)
    test = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.37, -0.61]], dtype=plane.dtype, device=plane.device)
    try:
        with torch.no_grad():
            same = torch.allclose(folded_net(test), net(inputs(test)), rtol=1e-9, atol=1e-12)
    except RuntimeError:  # the forward reshapes its input in a way the 2-wide input does not allow
        same = False
    return (folded_net, lambda uv: uv) if same else (net, inputs)


def _cut(
    P: np.ndarray,
    n: np.ndarray,
    values_at: Callable[[np.ndarray, slice], np.ndarray],
    neurons: int,
    max_regions: int,
    keep: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Rows | None]:
    """Cut every region by the lines where a neuron of a nonlinearity changes sign.

    On a region the pre-activations are affine in (u, v): their values at three
    interior points give them (``values_at(interior, block)``: (regions, 3, neurons) for the
    regions of a block, called for consecutive blocks; ``neurons`` sizes the blocks). A
    neuron whose line crosses the region (vertices on both sides, beyond round-off)
    cuts it; the cuts of all regions run together, one round per crossing line
    (round t applies each region's t-th crossing line to its pieces so far).

    Returns the pieces (regions in order, each region's pieces together), each
    piece's region, and with ``keep`` the regions' affine maps (rows (3, neurons) per region:
    the coefficients of u, v and 1 of each neuron).
    """
    interior = polygons.interiors(P, n)
    size = polygons.extent(P, n)
    centre = interior[:, 0]
    valid = polygons.valid(P, n)
    radius = np.where(valid, np.linalg.norm(P - centre[:, None], axis=2), 0.0).max(1)
    lines, owners = [], []
    blocks = _blocks(len(P), neurons)
    kept = _Rows([], blocks[0].stop) if keep else None
    for block in blocks:
        a = block.start
        coefficients = _affine(
            interior[block], values_at(interior[block], block).reshape(block.stop - a, 3, -1)
        )  # (b, 3, neurons)
        if kept is not None:
            kept.parts.append(coefficients)
        slope = np.abs(coefficients[:, 0]) + np.abs(coefficients[:, 1])  # >= the gradient's length
        scale = _TOL * (1 + (slope + np.abs(coefficients[:, 2])) * size[block, None])
        # A line can cross a region only if it passes within the region's radius of its centre
        # (|f(v) - f(centre)| <= |grad f| radius at every vertex v): a test on (regions, neurons)
        # that leaves few candidates, checked exactly at the vertices below. Half the tolerance
        # here, so that round-off in either test never drops a line the exact test keeps.
        at_centre = np.matmul(_homogeneous(centre[block])[:, None], coefficients)[:, 0]
        reach = slope * radius[block, None]
        region, neuron = np.nonzero(
            (at_centre - reach < -scale / 2) & (at_centre + reach > scale / 2)
        )  # per region, neurons ascending
        line = coefficients[region, :, neuron]
        s = np.where(valid[a + region], polygons.sides(P[a + region], line), np.nan)
        tol = scale[region, neuron, None]
        crossing = (s > tol).any(1) & (s < -tol).any(1)
        lines.append(line[crossing])
        owners.append(region[crossing] + a)
    lines_all = np.concatenate(lines) if lines else np.zeros((0, 3))
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    counts = np.bincount(owner, minlength=len(P))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Pieces whose region has no line left are set aside (``done``); the others are cut by their
    # region's next line, and only those the line crosses are split (most are not).
    region = np.arange(len(P))
    finished = counts == 0
    done = [(P[finished], n[finished], region[finished])]
    P, n, region = P[~finished], n[~finished], region[~finished]
    total = len(P) + len(done[0][0])
    for t in range(int(counts.max(initial=0))):
        line = lines_all[offsets[region] + t]
        s = polygons.sides(P, line)
        valid = polygons.valid(P, n)
        crossed = np.where(valid, s, -np.inf).max(1) > 0
        crossed &= np.where(valid, s, np.inf).min(1) < 0
        (plus, n_plus), (minus, n_minus) = polygons.split_many(P[crossed], n[crossed], s[crossed])
        width = max(P.shape[1], plus.shape[1], minus.shape[1])
        P = np.concatenate(
            [_widen(P[~crossed], width), _widen(plus[n_plus > 0], width), _widen(minus[n_minus > 0], width)]
        )
        n = np.concatenate([n[~crossed], n_plus[n_plus > 0], n_minus[n_minus > 0]])
        region = np.concatenate([region[~crossed], region[crossed][n_plus > 0], region[crossed][n_minus > 0]])
        total += int((n_plus > 0).sum() + (n_minus > 0).sum() - crossed.sum())
        if total > max_regions:
            raise ValueError(f"more than max_regions={max_regions} regions; use a smaller window")
        finished = counts[region] <= t + 1
        done.append((P[finished], n[finished], region[finished]))
        P, n, region = P[~finished], n[~finished], region[~finished]
    width = max(max(int(part[1].max(initial=0)) for part in done), 1)
    P = np.concatenate([_widen(part[0][:, :width], width) for part in done])
    n = np.concatenate([part[1] for part in done])
    region = np.concatenate([part[2] for part in done])
    by_region = np.argsort(region, kind="stable")  # pieces of one region together, regions in order
    return P[by_region], n[by_region], region[by_region], kept


def _widen(P: np.ndarray, width: int) -> np.ndarray:
    return np.pad(P, ((0, 0), (0, width - P.shape[1]), (0, 0)))


def _decision_boundary(
    P: np.ndarray, n: np.ndarray, interior: np.ndarray, logits: np.ndarray, block: int = 8192
) -> list[np.ndarray]:
    """Segments where the top class changes, region by region (logits are affine on each; ``logits``
    at the three ``interior`` points of each region)."""
    coefs = _affine(interior, logits.reshape(len(P), 3, -1)).transpose(0, 2, 1)  # (regions, classes, 3)
    regions = polygons.unpad(P, n)
    if coefs.shape[1] == 1:  # one output: the boundary is where it crosses 0
        return [seg for polygon, f in zip(regions, coefs) if (seg := _segment(polygon, f[0], [])) is not None]
    # Class i can be on top somewhere in a polygon only if, for every k, f_i >= f_k at some vertex
    # (each f_i - f_k is affine): a filter, for all regions at once, that leaves one class in most.
    # Padding vertices copy each polygon's first vertex, so extremes over all vertices are those
    # over the real ones. Most regions have one class on top at every vertex by more than the
    # tolerance: it is on top in the whole polygon (the differences are affine), so only the
    # other regions need the (vertices, classes, classes) differences.
    valid = polygons.valid(P, n)
    filled = np.where(valid[..., None], P, P[:, :1])
    candidates = np.zeros(coefs.shape[:2], dtype=bool)
    for a in range(0, len(P), block):
        values = (
            np.matmul(filled[a : a + block], coefs[a : a + block, :, :2].transpose(0, 2, 1))
            + coefs[a : a + block, None, :, 2]
        )
        tol = _TOL * (1 + np.abs(values).max(axis=(1, 2)))
        top2 = -np.partition(-values, 1, axis=2)[..., :2]  # (b, vertices, 2): the largest two logits
        top = values.argmax(2)
        mixed = np.flatnonzero(((top != top[:, :1]).any(1)) | ((top2[..., 0] - top2[..., 1]).min(1) <= tol))
        v = values[mixed]
        spread = (v[:, :, :, None] - v[:, :, None, :]).max(axis=1)  # (mixed, classes, classes)
        candidates[a + mixed] = (spread >= -tol[mixed, None, None]).all(axis=2)
    segments = []
    for r in np.flatnonzero(candidates.sum(1) >= 2):
        f, polygon = coefs[r], regions[r]
        for i, j in itertools.combinations(np.flatnonzero(candidates[r]), 2):
            others = [f[i] - f[k] for k in range(len(f)) if k not in (i, j)]
            seg = _segment(polygon, f[i] - f[j], others)
            if seg is not None:
                segments.append(seg)
    return segments


def _segment(polygon: np.ndarray, line: np.ndarray, half_planes: list[np.ndarray]) -> np.ndarray | None:
    """The part of the line ``a u + b v + c = 0`` inside the polygon and where every half-plane >= 0."""
    a, b, c = line
    norm = np.hypot(a, b)
    if norm == 0:
        return None
    p0 = -c * np.array([a, b]) / norm**2  # a point of the line
    direction = np.array([-b, a]) / norm
    lo, hi = -np.inf, np.inf
    m = len(polygon)
    constraints = []
    for i in range(m):  # inside the convex (counter-clockwise) polygon: left of every edge
        p, q = polygon[i], polygon[(i + 1) % m]
        e = q - p
        normal = np.array([-e[1], e[0]])
        constraints.append((normal, -normal @ p))
    constraints += [(h[:2], h[2]) for h in half_planes]
    for normal, offset in constraints:  # normal . (p0 + t d) + offset >= 0
        slope = normal @ direction
        value = normal @ p0 + offset
        if abs(slope) < 1e-15:
            if value < 0:
                return None
            continue
        t = -value / slope
        if slope > 0:
            lo = max(lo, t)
        else:
            hi = min(hi, t)
    if not hi > lo:
        return None
    return np.stack([p0 + lo * direction, p0 + hi * direction])


class PartitionProbe:
    """At each checkpoint: the partition of a fixed plane, drawn to ``folder/step-N.png``; store rows
    with the number of regions (metric ``linear_regions``, layer ``""``, split ``"plane"``)."""

    def __init__(
        self,
        points: torch.Tensor,
        folder: str | Path,
        *,
        labels: Sequence[int] | None = None,
        steps: Sequence[int] | None = None,
        max_regions: int = 200_000,
    ) -> None:
        self.points, self.folder, self.labels, self.max_regions = points, Path(folder), labels, max_regions
        self.steps = None if steps is None else set(steps)  # checkpoints to draw (None: all)
        self.window: tuple[float, float, float, float] | None = None  # fixed at the first drawing

    def __call__(self, model: nn.Module, step: int) -> list[Row]:
        from .._plotting import subplots

        if self.steps is not None and step not in self.steps:
            return []
        try:
            part = partition2d(model, self.points, window=self.window, max_regions=self.max_regions)
        except ValueError as err:  # too many regions: no picture at this step, but the run goes on
            warnings.warn(f"no partition picture at step {step}: {err}", stacklevel=2)
            return []
        self.window = part.window
        self.folder.mkdir(parents=True, exist_ok=True)
        fig, ax = subplots(figsize=(4.2, 4.2))
        part.plot(ax, labels=self.labels, title=f"step {step}: {len(part.regions)} regions")
        fig.tight_layout()
        fig.savefig(self.folder / f"step-{step:09d}.png", dpi=100)
        return [Row("plane", MODEL_LEVEL, "linear_regions", float(len(part.regions)))]


class PartitionSettings(ProbeSettings):
    """Pictures of the linear regions on the plane through three test inputs (indices; default: the first three of
    different classes).
    """

    points: list[int] | None = Field(None, min_length=3, max_length=3)
    pictures: int | None = Field(
        4,
        ge=2,
        description=(
            "checkpoints drawn, spread in log step (None: every checkpoint); each takes seconds for a "
            "784-200x4 MLP (about 2 s per 100,000 regions on 2 cores), longer for wider, deeper or non-chain nets"
        ),
    )


def _build(settings: PartitionSettings, run: ProbeContext) -> PartitionProbe:
    indices = settings.points if settings.points is not None else first_of_each_class(run.test_labels)
    x, y = run.test_examples(indices)
    drawn = None
    if settings.pictures is not None:
        every = run.checkpoints
        drawn = [every[round(i)] for i in np.linspace(0, len(every) - 1, min(settings.pictures, len(every)))]
    return PartitionProbe(x, run.run_dir / "partition", labels=y.tolist(), steps=drawn)


SPEC = ProbeSpec(
    name="partition",
    settings=PartitionSettings,
    build=_build,
    metrics=(Metric("linear_regions", 'regions of the exact partition of the probe plane (split "plane")'),),
    figures=(
        FigureSpec(
            "",
            "Linear regions on a plane through three test inputs, over training",
            ("linear_regions",),
            folder="partition",
        ),
    ),
)
