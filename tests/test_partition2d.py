import itertools

import numpy as np
import pytest
import torch
from torch import nn

from layerscope.models import build_model
from layerscope.probes.partition2d import clip, partition2d


def test_clip_half_plane():
    square = np.array([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    left = clip(square, np.array([1.0, 0, -0.25]), -1.0)  # u <= 0.25
    assert len(left) == 4 and left[:, 0].max() == pytest.approx(0.25)
    assert len(clip(square, np.array([1.0, 0, -2.0]), 1.0)) == 0  # u >= 2: nothing


def general_position_net(n, seed=0):
    """One hidden ReLU layer on R^2 whose n lines all cross inside [-1, 1]^2, no three through a point."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, np.pi, n))
    normals = np.column_stack([np.cos(angles), np.sin(angles)])
    offsets = rng.uniform(-0.3, 0.3, n)
    net = nn.Sequential(nn.Linear(2, n), nn.ReLU(), nn.Linear(n, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(normals))
        net[0].bias.copy_(torch.from_numpy(offsets))
    # all pairwise intersections, to size the window
    crossings = [np.linalg.solve(normals[[i, j]], -offsets[[i, j]]) for i, j in itertools.combinations(range(n), 2)]
    return net, np.abs(crossings).max() if crossings else 1.0


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_one_hidden_layer_region_count(n):
    net, extent = general_position_net(n, seed=n)
    w = float(extent) * 1.5 + 1
    part = partition2d(net, origin=torch.zeros(2), directions=torch.eye(2), window=(-w, w, -w, w))
    assert len(part.regions) == 1 + n + n * (n - 1) // 2
    total = sum(
        abs(0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - p[:, 1] * np.roll(p[:, 0], -1))) for p in part.regions
    )
    assert total == pytest.approx((2 * w) ** 2)  # the regions tile the window


def patterns_on(net, part, uv):
    sink = {}
    handles = [
        m.register_forward_pre_hook(lambda _m, i, k=k: sink.__setitem__(k, i[0].flatten(1) > 0))
        for k, m in ((name, net.get_submodule(name)) for name in part.layers)
    ]
    with torch.no_grad():
        net(torch.from_numpy(part.to_input(uv)).float())
    for h in handles:
        h.remove()
    return torch.cat([sink[name] for name in part.layers], dim=1).numpy()


def test_deep_net_regions_agree_with_activation_patterns():
    torch.manual_seed(3)
    net = build_model("mlp", in_features=5, width=12, depth=3, num_classes=3).eval()
    pts = torch.randn(3, 5)
    part = partition2d(net, pts)
    assert len(part.regions) > 20
    rng = np.random.default_rng(0)
    # every region's pattern is the one at random interior points (convex combinations of its vertices)
    for polygon, pattern in zip(part.regions, part.patterns):
        weights = rng.dirichlet(np.ones(len(polygon)), size=3)
        inner = weights @ polygon
        assert (patterns_on(net, part, inner) == pattern).all()
    # a fine grid of the window finds no activation pattern that the partition lacks
    u0, u1, v0, v1 = part.window
    grid = np.stack(np.meshgrid(np.linspace(u0, u1, 300), np.linspace(v0, v1, 300)), -1).reshape(-1, 2)
    grid_patterns = {p.tobytes() for p in patterns_on(net, part, grid)}
    exact = {p.tobytes() for p in part.patterns}
    assert grid_patterns <= exact
    # layer by layer the partition only refines
    counts = [len(r) for r in part.regions_per_layer]
    assert counts == sorted(counts)


def test_decision_boundary_separates_predicted_classes():
    torch.manual_seed(4)
    net = build_model("mlp", in_features=4, width=16, depth=2, num_classes=3).eval()
    part = partition2d(net, torch.randn(3, 4))
    assert part.decision_boundary
    with torch.no_grad():
        for seg in part.decision_boundary[:50]:
            mid = seg.mean(0)
            logits = net(torch.from_numpy(part.to_input(mid[None])).float())[0]
            top2 = logits.topk(2).values
            assert float(top2[0] - top2[1]) < 1e-3  # two classes tie at the top on the boundary


def test_works_through_skip_connections_and_refuses_pooling():
    torch.manual_seed(5)
    resnet = build_model("resnet", in_channels=1, width=1, blocks=(1,), batch_norm=False, preact=True).eval()
    pts = torch.randn(3, 1, 4, 4)
    part = partition2d(resnet, pts)
    assert len(part.regions) > 50
    u0, u1, v0, v1 = part.window  # the exact partition misses no pattern of a grid, through the skips too
    grid = np.stack(np.meshgrid(np.linspace(u0, u1, 200), np.linspace(v0, v1, 200)), -1).reshape(-1, 2)
    sink = {}
    hooks = [
        resnet.get_submodule(n).register_forward_pre_hook(lambda _m, i, n=n: sink.__setitem__(n, i[0].flatten(1) > 0))
        for n in part.layers
    ]
    with torch.no_grad():
        resnet(torch.from_numpy(part.to_input(grid)).float().view(-1, 1, 4, 4))
    for h in hooks:
        h.remove()
    grid_patterns = {p.tobytes() for p in torch.cat([sink[n] for n in part.layers], 1).numpy()}
    assert grid_patterns <= {p.tobytes() for p in part.patterns}
    cnn = build_model("ansuini_cnn", width=0.1)
    with pytest.raises(ValueError, match="max-pooling is not supported: pool1, pool2"):
        partition2d(cnn, torch.randn(3, 1, 28, 28))
    with pytest.raises(ValueError, match="collinear"):
        partition2d(build_model("mlp", in_features=3), torch.tensor([[0.0, 0, 0], [1, 1, 1], [2, 2, 2]]))


def test_plot(tmp_path):
    net, _ = general_position_net(4)
    part = partition2d(net, origin=torch.zeros(2), directions=torch.eye(2), window=(-3, 3, -3, 3))
    ax = part.plot()
    ax.figure.savefig(tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 5000


def test_probe_skips_a_picture_with_too_many_regions(tmp_path):
    from layerscope.probes.partition2d import PartitionProbe

    net, _ = general_position_net(6)
    probe = PartitionProbe(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), tmp_path, max_regions=3, steps=[0, 10])
    with pytest.warns(UserWarning, match="no partition picture at step 0: more than max_regions=3"):
        assert probe(net, 0) == []
    assert probe(net, 5) == []  # not a drawing step
    big = PartitionProbe(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), tmp_path, steps=[10])
    rows = big(net, 10)
    assert rows[0].metric == "linear_regions" and rows[0].value > 1
    assert (tmp_path / "step-000000010.png").exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_model("mlp", in_features=20, width=24, depth=3, num_classes=4),  # folded plane, ReLU
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Sequential(nn.Linear(20, 16), nn.LeakyReLU(0.1)),
            nn.Linear(16, 16),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(16, 3),
        ),  # nested, leaky, dropout (eval)
        lambda: nn.Sequential(
            nn.Unflatten(1, (4, 5)), nn.Flatten(), nn.Linear(20, 12), nn.ReLU(), nn.Linear(12, 2)
        ),  # not folded
        lambda: nn.Sequential(
            nn.Unflatten(1, (1, 4, 5)),
            nn.Conv2d(1, 3, 2),
            nn.ReLU(),
            nn.Conv2d(3, 2, 2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(12, 3),
        ),  # convolutions: the pre-activations keep their (channels, height, width) shape
    ],
)
def test_chain_networks_give_the_general_paths_partition(make, monkeypatch):
    # a chain of modules is partitioned one segment per layer from the parents' affine maps; the
    # general path runs the network from the plane for every layer: both must give the same partition
    import layerscope.probes.partition2d as p2d

    monkeypatch.setattr(p2d, "_BLOCK_BYTES", 24 * 16 * 7)  # blocks of 7 regions of 16 neurons: many blocks
    torch.manual_seed(5)
    net = make().eval()
    pts = torch.randn(3, 20) * 2
    assert (
        p2d._chain(net, [(name, 0) for name, m in net.named_modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))])
        is not None
    )
    fast = partition2d(net, pts)
    monkeypatch.setattr(p2d, "_chain", lambda network, order: None)
    general = partition2d(net, pts)
    assert len(fast.regions) == len(general.regions) > 10
    for layer_fast, layer_general in zip(fast.regions_per_layer, general.regions_per_layer, strict=True):
        assert len(layer_fast) == len(layer_general)
        for a, b in zip(layer_fast, layer_general, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(np.array(fast.patterns), np.array(general.patterns))
    assert len(fast.decision_boundary) == len(general.decision_boundary)
    np.testing.assert_allclose(
        np.array(fast.decision_boundary), np.array(general.decision_boundary), rtol=1e-9, atol=1e-9
    )
    # and the patterns are the network's own at the regions' interiors
    centres = np.array([r.mean(0) for r in fast.regions])
    np.testing.assert_array_equal(patterns_on(net, fast, centres), np.array(fast.patterns))


def test_a_module_reused_or_a_custom_container_takes_the_general_path():
    import layerscope.probes.partition2d as p2d

    relu = nn.ReLU()
    reused = nn.Sequential(nn.Linear(4, 6), relu, nn.Linear(6, 6), relu, nn.Linear(6, 2))
    assert p2d._chain(reused, [("1", 0), ("1", 1)]) is None
    assert p2d._chain(build_model("resnet", in_channels=1, width=4, blocks=(1,)), [("relu", 0)]) is None
    functional = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2))
    assert p2d._chain(functional, [("relu", 0)]) is None  # a nonlinearity that is not one of its modules


def reference_partition(net, part):
    """The partition by the slowest independent route: region by region, neuron by neuron, with the
    one-polygon ``clip``; pre-activations from float64 forward passes at three interior points."""
    net = net.double()
    u0, u1, v0, v1 = part.window
    regions = [np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])]
    for layer in part.layers:
        refined = []
        for polygon in regions:
            c = polygon.mean(0)
            uv = np.stack([c, c + 0.3 * (polygon[0] - c), c + 0.3 * (polygon[1] - c)])
            sink = {}
            handle = net.get_submodule(layer).register_forward_pre_hook(
                lambda _m, i: sink.__setitem__("pre", i[0].flatten(1))
            )
            with torch.no_grad():
                net(torch.from_numpy(part.to_input(uv)))
            handle.remove()
            coefficients = np.linalg.solve(np.column_stack([uv, np.ones(3)]), sink["pre"].numpy())  # (3, neurons)
            pieces = [polygon]
            for line in coefficients.T:
                s = polygon @ line[:2] + line[2]
                tol = 1e-9 * (1 + np.abs(line).sum() * np.abs(polygon).max())
                if s.max() > tol and s.min() < -tol:
                    pieces = [q for p in pieces for q in (clip(p, line, 1.0), clip(p, line, -1.0)) if len(q)]
            refined += pieces
        regions = refined
    return regions


@pytest.mark.parametrize("seed", [0, 1])
def test_partition_equals_a_region_by_region_reference(seed):
    # the batched cut (candidate lines by a radius bound, only crossed pieces split, pieces of
    # finished regions set aside) against the plain loop over regions and neurons
    torch.manual_seed(seed)
    net = build_model("mlp", in_features=6, width=10, depth=3, num_classes=3).eval()
    part = partition2d(net, torch.randn(3, 6) * 2)
    expected = reference_partition(net, part)
    assert len(part.regions) == len(expected) > 50

    def key(polygons):
        return np.array(sorted(tuple(np.round(p.mean(0), 7)) + (len(p),) for p in polygons))

    np.testing.assert_allclose(key(part.regions), key(expected), atol=1e-6)


def test_split_many_equals_clip_polygon_by_polygon():
    from layerscope.probes import _polygons as polygons

    rng = np.random.default_rng(0)
    shapes = []
    for k in rng.integers(3, 9, 200):  # random convex polygons, counter-clockwise
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        shapes.append(rng.normal(size=2) + rng.uniform(0.5, 2) * np.column_stack([np.cos(angles), np.sin(angles)]))
    lines = rng.normal(size=(200, 3))
    for i in range(0, 200, 5):  # some lines through a vertex exactly
        v = shapes[i][i % len(shapes[i])]
        lines[i, 2] = -(v @ lines[i, :2])
    P, n = polygons.pad(shapes)
    (plus, n_plus), (minus, n_minus) = polygons.split_many(P, n, polygons.sides(P, lines))
    for i, shape in enumerate(shapes):
        for (out, count), sign in (((plus, n_plus), 1.0), ((minus, n_minus), -1.0)):
            np.testing.assert_allclose(
                out[i, : count[i]], clip(shape, lines[i], sign).reshape(-1, 2), rtol=0, atol=1e-12
            )


def test_interior_points_of_a_parallelogram_are_not_collinear():
    # its two farthest vertices from the centre are the ends of one diagonal: three points on a line
    # made the affine solve singular (an MLP's partition failed with "Singular matrix")
    from layerscope.probes import _polygons as polygons

    P, n = polygons.pad(
        [np.array([[0.0, 0.0], [3.0, 0.0], [4.0, 1.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])]
    )
    for points in polygons.interiors(P, n):
        assert abs(np.linalg.det(np.column_stack([points, np.ones(3)]))) > 0.05  # a sixth of the area or more


@pytest.mark.parametrize("chain", [True, False])
def test_progress_names_each_layer_and_its_regions(chain, monkeypatch):
    import layerscope.probes.partition2d as p2d

    if not chain:
        monkeypatch.setattr(p2d, "_chain", lambda network, order: None)
    torch.manual_seed(0)
    net = build_model("mlp", in_features=6, width=10, depth=3, num_classes=3).eval()
    lines = []
    part = partition2d(net, torch.randn(3, 6), progress=lines.append)
    assert lines == [
        f"cut {name} ({i + 1} of 3 layers): {len(regions):,} regions"
        + ("; finding the decision boundary" if i == 2 else "")
        for i, (name, regions) in enumerate(zip(part.layers, part.regions_per_layer, strict=True))
    ]
