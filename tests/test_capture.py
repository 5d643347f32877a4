from pathlib import Path

import pytest
import torch
from torch import nn

from layerscope.models import MODELS, build_model
from layerscope.probes.capture import capture, resolve_layers


def test_resolve_by_name_pattern_and_type():
    model = build_model("ansuini_cnn")
    assert resolve_layers(model, ["fc1"]) == ["fc1"]
    assert resolve_layers(model, ["relu*"]) == ["relu1", "relu2", "relu3"]
    assert resolve_layers(model, ["Conv2d", "fc2"]) == ["conv1", "conv2", "fc2"]
    resnet = build_model("resnet", width=4, blocks=(1, 1))
    assert "layer2.0.relu2" in resolve_layers(resnet, ["layer*.relu2"])


def test_unknown_layer_names_close_matches():
    model = build_model("ansuini_cnn")
    with pytest.raises(
        ValueError, match="unknown layer .fc3.: no module name, pattern or type matches it; did you mean fc2, fc1"
    ):
        resolve_layers(model, ["fc3"])


def test_capture_equals_manual_forward():
    torch.manual_seed(0)
    model = build_model("mlp", in_features=20, width=16, depth=3).eval()
    x = torch.randn(50, 20)
    got = dict(capture(model, x, ["relu*", "out"], batch_size=7))
    assert list(got) == ["relu0", "relu1", "relu2", "out"]
    h = x
    with torch.no_grad():
        for i in range(3):
            h = torch.relu(getattr(model, f"fc{i}")(h))
            torch.testing.assert_close(got[f"relu{i}"], h)
        torch.testing.assert_close(got["out"], model(x))


class SharedReLU(nn.Module):
    """One ReLU module used twice per forward, as in torchvision's ResNet blocks."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.b(self.relu(self.a(x))))


def test_module_called_twice_is_captured_per_call():
    model = SharedReLU()
    x = torch.randn(10, 4)
    got = dict(capture(model, x, ["relu"], batch_size=3))
    assert list(got) == ["relu#0", "relu#1"]
    assert got["relu#0"].shape == (10, 6) and got["relu#1"].shape == (10, 3)
    torch.testing.assert_close(got["relu#1"], model(x).detach())


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.fc(x)
        if self.calls > 1:
            raise RuntimeError("boom")
        return out


def test_hooks_removed_even_when_the_model_raises():
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        list(capture(model, torch.randn(8, 3), ["fc"]))
    assert not model.fc._forward_hooks


def test_memory_budget_splits_into_passes_and_is_respected():
    torch.manual_seed(1)
    model = build_model("mlp", in_features=10, width=32, depth=4).eval()
    x = torch.randn(100, 10)
    layer_bytes = 4 * 100 * 32
    forwards = 0

    def count(*_):
        nonlocal forwards
        forwards += 1

    model.register_forward_pre_hook(count)
    held = 0
    got = {}
    for name, act in capture(model, x, ["fc*"], batch_size=100, memory_budget=2 * layer_bytes):
        held = max(held, act.numel() * 4)
        got[name] = act
    assert list(got) == ["fc0", "fc1", "fc2", "fc3"]
    assert forwards == 1 + 2  # one shape pass, then two passes of two layers each
    full = dict(capture(model, x, ["fc*"], batch_size=100))
    for name in got:
        torch.testing.assert_close(got[name], full[name])
    with pytest.raises(ValueError, match="layer 'fc0' needs .* over the memory budget"):
        list(capture(model, x, ["fc0"], memory_budget=layer_bytes - 1))


@pytest.mark.parametrize(
    "name,shape",
    [("mlp", (2, 1, 28, 28)), ("ansuini_cnn", (2, 1, 28, 28)), ("vgg", (2, 3, 32, 32)), ("resnet", (2, 3, 32, 32))],
)
def test_models_build_and_run(name, shape):
    kwargs = {"width": 8} if name in ("vgg", "resnet") else {}
    model = build_model(name, **kwargs)
    assert model(torch.randn(shape)).shape == (2, 10)


def test_resnet_variants():
    plain = build_model("resnet", width=8, blocks=(1, 1, 1, 1))
    humayun = build_model("resnet", width=16, batch_norm=False, preact=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in humayun.modules())
    assert humayun(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert plain(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model 'lenet'; choose from"):
        build_model("lenet")
    with pytest.raises(ValueError, match="bad parameters for model 'mlp'"):
        build_model("mlp", colour="red")
    assert set(MODELS) == {"mlp", "ansuini_cnn", "vgg", "resnet"}


def test_capture_copies_what_an_inplace_op_later_overwrites():
    # torchvision's ResNets and VGGs put ReLU(inplace=True) after a layer: its output must be kept as it was
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 200), nn.ReLU(inplace=True), nn.Linear(200, 3)).eval()
    x = torch.randn(500, 20)
    acts = dict(capture(model, x, ["0", "1"]))
    with torch.no_grad():
        truth = model[0](x)
    torch.testing.assert_close(acts["0"], truth)
    assert 0.4 < float((acts["0"] < 0).float().mean()) < 0.6
    torch.testing.assert_close(acts["1"], truth.clamp_min(0))


def test_float64_model_is_captured_in_float64():
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU()).double().eval()
    x = torch.randn(30, 5, dtype=torch.float64)
    acts = dict(capture(model, x, ["0"]))
    assert acts["0"].dtype == torch.float64
    torch.testing.assert_close(acts["0"], model[0](x).detach(), rtol=0, atol=0)


def test_float64_model_takes_float32_inputs():
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU()).double().eval()
    x = torch.randn(30, 5)  # float32, as probe sets usually are
    acts = dict(capture(model, x, ["0", "output"]))
    assert acts["0"].dtype == torch.float64
    torch.testing.assert_close(acts["0"], model[0](x.double()).detach(), rtol=0, atol=0)


class Squeezed(nn.Module):
    """A regression net whose output is one number per input, shape (N,)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


def test_a_layer_output_of_shape_n_is_one_feature_per_input():
    from layerscope.probes.geometry import default_layers, measure_geometry

    model = Squeezed().eval()
    x = torch.randn(300, 4)
    acts = dict(capture(model, x, default_layers(model)))
    assert acts["output"].shape == (300, 1)
    torch.testing.assert_close(acts["output"][:, 0], model(x).detach())
    table = measure_geometry(model, x, default_layers(model), ["twonn", "participation_ratio"])
    pr = table[(table.layer == "output") & (table.metric == "participation_ratio")].value.iloc[0]
    assert pr == pytest.approx(1.0)  # one feature: a participation ratio of exactly 1


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 12)
        self.mix = nn.Linear(12, 12)

    def forward(self, input_ids, attention_mask):
        return self.mix(self.emb(input_ids))


def test_fully_masked_sequences_are_left_out_of_the_cloud_with_a_count():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (90, 7), generator=g)
    mask = (torch.arange(7)[None] < torch.randint(1, 8, (90, 1), generator=g)).long()
    mask[::3] = 0  # every third sequence has no token at all
    model = Embedder().eval()
    keep = mask.any(1)
    for tokens in ("mean", "last"):
        with pytest.warns(UserWarning, match=r"30 of 90 sequences have no unmasked token .*left out"):
            got = dict(
                capture(model, {"input_ids": ids, "attention_mask": mask}, ["mix"], tokens=tokens, batch_size=16)
            )["mix"]
        want = dict(capture(model, {"input_ids": ids[keep], "attention_mask": mask[keep]}, ["mix"], tokens=tokens))[
            "mix"
        ]
        assert got.shape == (60, 12)
        torch.testing.assert_close(got, want)
    # "first" (a CLS token) and "flatten" read no mask: every input keeps its point, and nothing is said
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dict(capture(model, {"input_ids": ids, "attention_mask": mask}, ["mix"], tokens="first"))[
            "mix"
        ].shape == (90, 12)
    with pytest.raises(ValueError, match="every one of the 3 inputs has an attention_mask of all zeros"):
        list(capture(model, {"input_ids": ids[:3], "attention_mask": mask[:3] * 0}, ["mix"]))


PEAK = """
import sys, torch
from torch import nn
from layerscope.probes.capture import capture
from layerscope.probes.geometry import measure_geometry
torch.set_num_threads(1)
mode, budget = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 6000), nn.ReLU(), nn.Linear(6000, 6000), nn.ReLU()).eval()
x = torch.randn(2000, 64)
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with torch.no_grad():
    model(x[:256])  # the forward pass on one batch is outside the budget: warm it up
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark
base = rss("VmRSS:")
if mode == "capture":
    for name, acts in capture(model, x, ["0", "1", "2", "3"], memory_budget=budget):
        del acts
else:
    measure_geometry(
        model, x, ["1", "3"], ["pc_id", "participation_ratio"], include_input=False, memory_budget_mb=budget // 2**20
    )
print(rss("VmHWM:") - base)
"""


@pytest.mark.parametrize("mode", ["capture", "geometry"])
def test_memory_budget_bounds_the_peak(mode):
    import os
    import subprocess
    import sys

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc to read the peak memory")
    layer = 2000 * 6000 * 4  # 48 MB per layer
    budget = int(2.5 * layer) if mode == "capture" else int(5 * layer)
    # Large blocks straight from mmap, so that a freed block leaves the resident set at once
    # (glibc's growing threshold would otherwise keep freed blocks and blur the peak).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(
        [sys.executable, "-c", PEAK, mode, str(budget)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    peak = int(out.stdout.split()[-1])
    # what the budget does not cover: one batch's forward pass (256 x 6000 x 4 bytes, a few times)
    assert peak < budget + 16 * 2**20, f"peak {peak / 2**20:.0f} MiB over the budget of {budget / 2**20:.0f} MiB"
