"""LC and partition2d see nonlinearities called as functions in forward, and give the module version's numbers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerscope.probes.local_complexity import local_complexity, nonlinear_layers
from layerscope.probes.nonlinearities import SmoothNonlinearityError
from layerscope.probes.partition2d import partition2d


class ModuleMLP(nn.Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.out = (
            nn.Linear(6, 12),
            nn.Linear(12, 12),
            nn.Linear(12, 12),
            nn.Linear(12, 3),
        )
        self.act1, self.act2, self.act3 = nn.ReLU(inplace=inplace), nn.LeakyReLU(0.1), nn.ReLU()

    def forward(self, x):
        return self.out(self.act3(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))))


class FunctionalMLP(ModuleMLP):
    """The same layers, nonlinearities called as functions (three spellings of ReLU)."""

    def __init__(self, relu: str) -> None:
        super().__init__()
        self.relu = relu

    def forward(self, x):
        h = self.fc1(x)
        h = {
            "torch.relu": torch.relu,
            "F.relu": F.relu,
            "clamp": lambda t: t.clamp(min=0),
            "inplace": lambda t: F.relu(t, inplace=True),
            "method": lambda t: t.relu(),
        }[self.relu](h)
        h = F.leaky_relu(self.fc2(h), 0.1)
        return self.out(torch.clamp_min(self.fc3(h), 0))


def copies():
    torch.manual_seed(0)
    reference = ModuleMLP()
    return reference, {name: FunctionalMLP(name) for name in ("torch.relu", "F.relu", "clamp", "inplace", "method")}


@pytest.mark.parametrize("spelling", ["torch.relu", "F.relu", "clamp", "inplace", "method"])
def test_lc_of_functional_relus_equals_the_module_version(spelling):
    reference, nets = copies()
    net = nets[spelling]
    net.load_state_dict(reference.state_dict())
    points = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    a = local_complexity(reference, points, radius=0.3, n_directions=4, seed=3)
    b = local_complexity(net, points, radius=0.3, n_directions=4, seed=3)
    assert list(a.layer) == ["act1", "act2", "act3", ""]
    assert list(b.layer) == [f"{spelling_name(spelling)}()", "leaky_relu()", "clamp_min()", ""]
    assert a.lc.sum() > 0
    np.testing.assert_array_equal(a[["neurons", "lc", "lc_err"]].to_numpy(), b[["neurons", "lc", "lc_err"]].to_numpy())


def spelling_name(spelling):
    return {"torch.relu": "relu", "F.relu": "relu", "clamp": "clamp", "inplace": "relu", "method": "relu"}[spelling]


def test_an_inplace_relu_module_keeps_its_pre_activation():
    torch.manual_seed(0)
    a, b = ModuleMLP(inplace=False), ModuleMLP(inplace=True)
    b.load_state_dict(a.state_dict())
    points = torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    pd_a = local_complexity(a, points, radius=0.3, n_directions=4)
    pd_b = local_complexity(b, points, radius=0.3, n_directions=4)
    assert pd_a.lc.iloc[0] > 0
    np.testing.assert_array_equal(pd_a.lc.to_numpy(), pd_b.lc.to_numpy())


def test_partition2d_of_a_functional_net_equals_the_module_version():
    reference, nets = copies()
    net = nets["torch.relu"]
    net.load_state_dict(reference.state_dict())
    points = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))
    a, b = partition2d(reference, points), partition2d(net, points)
    assert len(a.regions) == len(b.regions) > 10
    np.testing.assert_array_equal(np.array(a.patterns), np.array(b.patterns))
    assert b.layers == ["relu()", "leaky_relu()", "clamp_min()"]


class Pool(nn.Module):
    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 4 * 4, 3)
        self.act, self.pool = nn.ReLU(), nn.MaxPool2d(2)

    def forward(self, x):
        h = self.conv(x)
        h = F.max_pool2d(torch.relu(h), 2) if self.functional else self.pool(self.act(h))
        return self.head(h.flatten(1))


def test_functional_max_pool_counts_like_the_module():
    torch.manual_seed(0)
    a, b = Pool(False), Pool(True)
    b.load_state_dict(a.state_dict())
    points = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    ta = local_complexity(a, points, radius=0.5, n_directions=3)
    tb = local_complexity(b, points, radius=0.5, n_directions=3)
    assert list(ta.layer) == ["act", "pool", ""] and list(tb.layer) == ["relu()", "max_pool2d()", ""]
    assert ta.lc.iloc[1] > 0
    np.testing.assert_array_equal(ta[["neurons", "lc"]].to_numpy(), tb[["neurons", "lc"]].to_numpy())
    with pytest.raises(ValueError, match=r"max-pooling is not supported: max_pool2d\(\)"):
        partition2d(b, points[:3])


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.block(x))
        x = torch.relu(self.block(x))
        return self.fc(x)


def test_names_of_functions_called_twice():
    assert nonlinear_layers(Reused(), torch.randn(2, 4)) == ["relu()#0", "relu()#1"]


def test_smooth_functions_are_refused_like_smooth_modules():
    class Gelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.gelu(self.fc(x))

    with pytest.raises(SmoothNonlinearityError, match=r"gelu\(\) in the model's forward is a smooth nonlinearity"):
        local_complexity(Gelu(), torch.randn(5, 4), radius=0.1, n_directions=2)
    with pytest.raises(SmoothNonlinearityError, match=r"these modules are not: 1 \(GELU\)"):
        local_complexity(nn.Sequential(nn.Linear(4, 4), nn.GELU()), torch.randn(5, 4), radius=0.1, n_directions=2)
    with pytest.raises(ValueError, match="runs no ReLU, LeakyReLU or max-pooling"):
        local_complexity(nn.Linear(4, 2), torch.randn(5, 4), radius=0.1, n_directions=2)


def test_other_clamps_are_not_relus():
    class Clamps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x)
            return torch.relu(h.clamp(min=1e-6) + h.clamp(0, 6) + torch.clamp(h, max=0))

    assert nonlinear_layers(Clamps(), torch.randn(2, 4)) == ["relu()"]


def test_positional_inplace_relu_keeps_its_pre_activation():
    class Positional(ModuleMLP):
        def forward(self, x):
            h = F.relu(self.fc1(x), True)
            h = F.leaky_relu(self.fc2(h), 0.1, True)
            return self.out(self.fc3(h).relu_())

    torch.manual_seed(0)
    a, b = ModuleMLP(), Positional()
    b.load_state_dict(a.state_dict())
    points = torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    ta = local_complexity(a, points, radius=0.3, n_directions=4)
    tb = local_complexity(b, points, radius=0.3, n_directions=4)
    assert list(tb.layer) == ["relu()", "leaky_relu()", "relu_()", ""]
    np.testing.assert_array_equal(ta.lc.to_numpy(), tb.lc.to_numpy())
