import numpy as np
import pytest
import torch
from torch import nn

from layerscope.models import build_model
from layerscope.probes.attacks import fgsm, pgd, robust_accuracy
from layerscope.probes.csr import critical_sample_ratio
from layerscope.probes.local_complexity import bounding_box_points, local_complexity, random_frames


def one_hidden_layer(weights, biases):
    net = nn.Sequential(nn.Linear(2, len(biases)), nn.ReLU(), nn.Linear(len(biases), 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(weights, dtype=torch.float32))
        net[0].bias.copy_(torch.tensor(biases, dtype=torch.float32))
    return net


def test_lc_equals_a_count_by_hand():
    # In 2-D with P = 2 the polytope is a square of half-diagonal r around x, whatever its
    # rotation: a line at distance < r / sqrt(2) from x always cuts it, one farther than r never.
    r = 1.0
    x = torch.tensor([[0.0, 0.0], [50.0, 50.0]])
    # neuron lines (unit normals): distances from the first point 0.1, 0.5, 0.65 (cut) and 1.2, 3 (not);
    # from the second point all lines are far away
    normals = [[1, 0], [0, 1], [0.6, 0.8], [-0.8, 0.6], [1, 0]]
    distances = [0.1, -0.5, 0.65, 1.2, -3.0]
    net = one_hidden_layer(normals, distances)
    table = local_complexity(net, x[:1], radius=r, n_directions=2)
    assert table.lc.iloc[0] == 3 and table.neurons.iloc[0] == 5
    assert table.lc_norm.iloc[0] == pytest.approx(3 / 5)
    far = local_complexity(net, x[1:], radius=r, n_directions=2)
    assert far.lc.iloc[0] == 0
    both = local_complexity(net, x, radius=r, n_directions=2)
    assert both.lc.iloc[0] == pytest.approx(1.5)  # the mean over points
    assert list(both.layer) == ["1", ""] and both.lc.iloc[-1] == both.lc.iloc[0]


def test_lc_grows_with_radius_and_width():
    torch.manual_seed(0)
    x = torch.randn(200, 10)
    net = build_model("mlp", in_features=10, width=64, depth=3)
    lcs = [local_complexity(net, x, radius=r, n_directions=8).lc.iloc[-1] for r in (0.01, 0.1, 0.5, 2.0)]
    assert np.all(np.diff(lcs) > 0)
    assert local_complexity(net, x, radius=0.0, n_directions=8).lc.iloc[-1] == 0
    narrow = build_model("mlp", in_features=10, width=16, depth=1)
    wide = build_model("mlp", in_features=10, width=256, depth=1)
    lc_narrow = local_complexity(narrow, x, radius=0.5, n_directions=8).lc.iloc[-1]
    lc_wide = local_complexity(wide, x, radius=0.5, n_directions=8).lc.iloc[-1]
    assert lc_wide > 4 * lc_narrow


def test_frames_are_per_point_and_independent_of_global_rng():
    f = random_frames(5, 12, 4, seed=3)
    torch.testing.assert_close(f.transpose(1, 2) @ f, torch.eye(4).expand(5, 4, 4), atol=1e-5, rtol=0)
    assert not torch.allclose(f[0], f[1])  # a fresh frame per point
    torch.testing.assert_close(random_frames(2, 12, 4, seed=3, offset=3), f[3:])  # batching does not matter
    net = build_model("mlp", in_features=12, width=32, depth=2)
    x = torch.randn(30, 12)
    torch.manual_seed(1)
    a = local_complexity(net, x, radius=0.3, n_directions=4, batch_size=7)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = local_complexity(net, x, radius=0.3, n_directions=4, batch_size=30)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not touched
    assert a.equals(b)


def test_lc_on_cnn_and_resnet_with_skips():
    torch.manual_seed(0)
    cnn = build_model("ansuini_cnn", width=0.25)
    table = local_complexity(cnn, torch.randn(6, 1, 28, 28), radius=0.5, n_directions=3)
    assert list(table.layer) == ["relu1", "pool1", "relu2", "pool2", "relu3", ""]
    assert table.neurons.iloc[0] == 8 * 28 * 28 and table.neurons.iloc[1] == 8 * 14 * 14
    resnet = build_model("resnet", width=4, blocks=(1, 1), batch_norm=False, preact=True)
    table = local_complexity(resnet, torch.randn(4, 3, 32, 32), radius=0.5, n_directions=3)
    assert "layer2.0.relu2" in set(table.layer) and table.lc.iloc[-1] > 0


def test_lc_refuses_smooth_networks():
    net = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"piecewise-linear network; these modules are not: 1 \(GELU\)"):
        local_complexity(net, torch.randn(2, 3), radius=0.1)


def test_bounding_box_points():
    data = torch.tensor([[0.0, 10.0], [1.0, 20.0]])
    pts = bounding_box_points(data, 1000, seed=0)
    assert pts[:, 0].min() >= 0 and pts[:, 0].max() <= 1 and pts[:, 1].min() >= 10 and pts[:, 1].max() <= 20
    assert torch.equal(pts, bounding_box_points(data, 1000, seed=0))


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained on digits, and test data."""
    from layerscope.data.datasets import load_dataset

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", in_features=64, width=64, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        idx = torch.randint(0, len(data.x_train), (64,))
        loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data


def test_pgd_robust_accuracy(trained):
    model, data = trained
    x, y = data.x_test[:200], data.y_test[:200]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert clean > 0.9
    kw = {"lower": data.lower, "upper": data.upper}
    assert robust_accuracy(model, x, y, eps=0.0, **kw) == pytest.approx(clean)
    accs = [robust_accuracy(model, x, y, eps=e, **kw) for e in (0.05, 0.2, 0.5)]
    assert clean >= accs[0] >= accs[1] >= accs[2] and accs[0] > accs[2]
    assert robust_accuracy(model, x, y, eps=5.0, **kw) == 0.0
    assert robust_accuracy(model, x, y, eps=0.2, attack="fgsm", **kw) >= accs[1] - 0.05  # PGD is the stronger attack


def test_pgd_stays_in_ball_and_valid_range(trained):
    model, data = trained
    x, y = data.x_test[:50], data.y_test[:50]
    lower = torch.tensor([-0.5])
    upper = torch.tensor([1.0])
    x = x.clamp(-0.5, 1.0)
    adv = pgd(model, x, y, eps=0.3, lower=lower, upper=upper)
    assert (adv - x).abs().max() <= 0.3 + 1e-6
    assert adv.min() >= -0.5 and adv.max() <= 1.0
    one = fgsm(model, x, y, eps=0.3, lower=lower, upper=upper)
    assert (one - x).abs().max() <= 0.3 + 1e-6
    with pytest.raises(ValueError, match="eps must be >= 0"):
        pgd(model, x, y, eps=-1)


def test_pgd_per_channel_clipping():
    net = nn.Sequential(nn.Conv2d(2, 1, 1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.zeros(3, 2, 2, 2)
    adv = pgd(
        net,
        x,
        torch.zeros(3, dtype=torch.long),
        eps=1.0,
        lower=torch.tensor([-0.1, -1.0]),
        upper=torch.tensor([0.1, 1.0]),
    )
    assert adv[:, 0].abs().max() <= 0.1 + 1e-7  # channel 0 has a narrow valid range
    assert adv[:, 1].abs().max() > 0.1


def test_csr_zero_at_zero_radius_and_non_decreasing(trained):
    model, data = trained
    x = data.x_test[:300]
    assert critical_sample_ratio(model, x, radius=0.0) == 0.0
    csr = [critical_sample_ratio(model, x, radius=r, step=r / 4, noise=r / 5) for r in (0.05, 0.3, 1.0, 3.0)]
    assert np.all(np.diff(csr) >= 0) and csr[-1] > csr[0]
    assert 0 <= csr[0] <= csr[-1] <= 1
    assert critical_sample_ratio(model, x, radius=0.3, step=0.075, noise=0.06, seed=1) == critical_sample_ratio(
        model, x, radius=0.3, step=0.075, noise=0.06, seed=1
    )


def test_csr_runs_in_eval_mode():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    net.train()
    before = net[1].running_mean.clone()
    critical_sample_ratio(net, torch.randn(20, 4), radius=0.1)
    assert torch.equal(before, net[1].running_mean)  # BatchNorm statistics untouched
    assert net.training  # mode restored


def test_data_scale_is_half_the_linf_gap_to_the_other_class():
    from layerscope.probes.attacks import data_scale

    # class 0 at 0 and 0.5, class 1 at 3: half L-infinity gaps 1.5 (from 0), 1.25 (from 0.5), 1.25 (from 3)
    x = torch.tensor([[0.0, 0.0], [0.5, -0.2], [3.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    assert data_scale(x, y) == pytest.approx(1.25)
    # the same for images: the L-infinity distance is over every pixel, and the scale follows the units
    images = x.view(3, 1, 1, 2) * 7.0
    assert data_scale(images, y) == pytest.approx(1.25 * 7.0)
    with pytest.raises(ValueError, match="at least two classes"):
        data_scale(x, torch.zeros(3, dtype=torch.long))


def test_pgd_probe_eps_grid_in_units_of_the_data_scale(trained):
    from layerscope.probes.attacks import PGDSettings, RobustnessProbe, _build, data_scale

    model, data = trained
    x, y = data.x_test[:120], data.y_test[:120]

    class Context:
        bounds = (data.lower, data.upper)
        seed, device = 0, "cpu"

        def inputs(self, split, n):
            return x[:n], y[:n]

    settings = PGDSettings(eps=0.25, eps_grid=[0.1, 1.0], eps_unit="data", n_points=120)
    probe = _build(settings, Context())
    rows = {r.split: r for r in probe(model, 0) if r.metric == "robust_acc"}
    scale = data_scale(x, y)
    assert [r.value for r in probe(model, 0) if r.metric == "pgd_data_scale"] == [pytest.approx(scale)]
    kw = {"lower": data.lower, "upper": data.upper, "seed": 0}
    assert rows["test"].value == pytest.approx(robust_accuracy(model, x, y, eps=0.25 * scale, **kw))
    assert rows["test@eps=0.1"].value == pytest.approx(robust_accuracy(model, x, y, eps=0.1 * scale, **kw))
    assert rows["test@eps=0.1"].value >= rows["test"].value >= rows["test@eps=1"].value
    # in input units (the default) no scale is computed or stored
    plain = RobustnessProbe({"test": (x, y)}, eps=0.25)
    assert [r.split for r in plain(model, 0)] == ["test"]
    assert [(r.split, r.metric) for r in _build(PGDSettings(n_points=120), Context())(model, 0)] == [
        ("test", "robust_acc")
    ]
    with pytest.raises(ValueError, match="eps_grid"):
        PGDSettings(eps_grid=[-0.1])


def test_pgd_radius_per_channel():
    # eps_unit = "pixel" gives each channel its own radius (a fraction of that channel's valid range)
    from layerscope.probes.attacks import pgd

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).eval()
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 3, (8,))
    eps = torch.tensor([0.1, 0.2, 0.05])
    adv = pgd(model, x, y, eps=eps, steps=5, lower=torch.zeros(3), upper=torch.ones(3))
    moved = (adv - x).abs().amax(dim=(0, 2, 3))
    assert torch.all(moved <= eps + 1e-6) and torch.all(moved > 0.5 * eps)
    assert adv.min() >= 0 and adv.max() <= 1
    with pytest.raises(ValueError, match="eps must be >= 0"):
        pgd(model, x, y, eps=torch.tensor([0.1, -0.1, 0.1]))
