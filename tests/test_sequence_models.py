"""Outputs that are not one tensor (MODULE:KEY), sequences (tokens), inputs that are dicts or need a forward
function."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from layerscope.probes.capture import capture, resolve_layers
from layerscope.probes.geometry import measure_geometry


def captured(model, inputs, layers, **options):
    return dict(capture(model, inputs, layers, **options))


class Recurrent(nn.Module):
    def __init__(self, batch_first=True):
        super().__init__()
        self.lstm = nn.LSTM(5, 8, batch_first=batch_first)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h, _ = self.lstm(x)
        a, _ = self.attn(h, h, h)
        return self.head(a[:, -1])


def test_tuple_outputs_are_refused_without_a_key_and_picked_with_one():
    torch.manual_seed(0)
    model = Recurrent().eval()
    x = torch.randn(12, 7, 5)
    with pytest.raises(TypeError, match=r"layer 'lstm' returns tuple, not a tensor; pick an element: lstm:0, lstm:1"):
        captured(model, x, ["lstm"])
    got = captured(model, x, ["lstm:0", "attn:0", "attn:1"], tokens="flatten", batch_size=5)
    with torch.no_grad():
        h, _ = model.lstm(x)
        a, w = model.attn(h, h, h)
    torch.testing.assert_close(got["lstm:0"], h.flatten(1))
    torch.testing.assert_close(got["attn:0"], a.flatten(1))
    torch.testing.assert_close(got["attn:1"], w.flatten(1))  # attention weights: (inputs, tokens, tokens)
    mean = captured(model, x, ["lstm:0"])["lstm:0"]  # the default for 3-D outputs: the mean over tokens
    torch.testing.assert_close(mean, h.mean(1))
    with pytest.raises(KeyError, match=r"tuple of 2 has no element '2'; choose from 0, 1"):
        captured(model, x, ["lstm:2"])
    with pytest.raises(
        ValueError,
        match=r"layer 'lstm:1:0' gives an output of shape \(1, 2, 8\) for a batch of 2 inputs: "
        r"its first axis is not the inputs'",
    ):
        captured(model, x, ["lstm:1:0"])
    assert resolve_layers(model, ["lstm:0", "Linear", "output"]) == ["lstm:0", "head", "output"]


def test_a_sequence_first_lstm_is_refused_with_the_reason():
    class SequenceFirst(nn.Module):  # the usual (tokens, inputs, features) layout of batch_first=False
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 8)

        def forward(self, x):
            return self.lstm(x.transpose(0, 1))[0][-1]

    with pytest.raises(
        ValueError,
        match=r"layer 'lstm:0' gives an output of shape \(7, 2, 8\) for a batch of 2 inputs.*need batch_first=True",
    ):
        captured(SequenceFirst(), torch.randn(4, 7, 5), ["lstm:0"])


@dataclass
class Out:
    logits: torch.Tensor
    hidden: torch.Tensor


class Tagger(nn.Module):
    """A token model called as model(input_ids=..., attention_mask=...), returning a dataclass (as Hugging Face models
    do).
    """

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, input_ids, attention_mask=None):
        h = torch.relu(self.mix(self.embed(input_ids)))
        return Out(logits=self.head(h[:, 0]), hidden=h)


def token_batch(n=10, length=6):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 20, (n, length), generator=g)
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_dict_inputs_masks_and_token_reductions():
    torch.manual_seed(0)
    model = Tagger().eval()
    batch = token_batch()
    with torch.no_grad():
        h = model(**batch).hidden
    mask = batch["attention_mask"].bool()
    with pytest.raises(
        TypeError, match=r"layer 'output' returns Out, not a tensor; pick an element: output:logits, output:hidden"
    ):
        captured(model, batch, ["output"])
    mean = captured(model, batch, ["output:hidden"], batch_size=3)["output:hidden"]
    expect = torch.stack([h[i, mask[i]].mean(0) for i in range(len(h))])
    torch.testing.assert_close(mean, expect)
    last = captured(model, batch, ["output:hidden"], tokens="last")["output:hidden"]
    torch.testing.assert_close(last, torch.stack([h[i, mask[i]][-1] for i in range(len(h))]))
    first = captured(model, batch, ["mix"], tokens="first")["mix"]
    with torch.no_grad():
        torch.testing.assert_close(first, model.mix(model.embed(batch["input_ids"]))[:, 0])
    every = captured(model, batch, ["output:hidden"], tokens="all", batch_size=4)["output:hidden"]
    torch.testing.assert_close(every, h[mask])  # every unmasked token, in order
    capped = captured(model, batch, ["output:hidden"], tokens="all", max_token_points=7, seed=1)["output:hidden"]
    assert len(capped) == 7 and all((row == h[mask]).all(1).any() for row in capped)
    torch.testing.assert_close(
        capped, captured(model, batch, ["output:hidden"], tokens="all", max_token_points=7, seed=1)["output:hidden"]
    )
    logits = captured(model, batch, ["output:logits"])["output:logits"]
    with torch.no_grad():
        torch.testing.assert_close(logits, model(**batch).logits)
    with pytest.raises(ValueError, match="tokens must be one of mean, first, last, all, flatten, got 'cls'"):
        captured(model, batch, ["mix"], tokens="cls")
    with pytest.raises(ValueError, match="the inputs' tensors differ in length"):
        captured(model, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"][:3]}, ["mix"])


def test_geometry_of_a_token_model_has_no_input_row():
    torch.manual_seed(0)
    table = measure_geometry(Tagger(), token_batch(60), ["mix", "output:hidden"], ["twonn"])
    assert list(table.layer.unique()) == ["mix", "output:hidden"]
    twonn = table[table.metric == "twonn"]
    assert len(twonn) == 2 and twonn.value.between(1, 6).all() and twonn.error.notna().all()


def test_a_forward_function_for_other_batches():
    torch.manual_seed(0)
    model = Recurrent().eval()
    x = torch.randn(9, 7, 5)

    def forward(m, batch):
        return m(batch["x"] * batch["scale"])

    got = captured(model, {"x": x, "scale": 2.0}, ["head"], forward=forward, batch_size=4)["head"]
    with torch.no_grad():
        torch.testing.assert_close(got, model(2 * x))


def test_classification_probes_take_a_logits_key():
    from layerscope.probes.attacks import robust_accuracy
    from layerscope.probes.csr import critical_sample_ratio

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

        def forward(self, x):
            return self.net(x)

    class Wrapped(Plain):  # the same network, its logits inside an output object
        def forward(self, x):
            return Out(logits=self.net(x), hidden=x)

    torch.manual_seed(0)
    plain, wrapped = Plain(), Wrapped()
    wrapped.load_state_dict(plain.state_dict())
    x, y = torch.rand(80, 4), torch.randint(0, 3, (80,))
    csr = critical_sample_ratio(plain, x, radius=0.2, step=0.05, noise=0.01, seed=1)
    assert 0 < csr <= 1
    assert critical_sample_ratio(wrapped, x, radius=0.2, step=0.05, noise=0.01, seed=1, logits_key="logits") == csr
    robust = robust_accuracy(plain, x, y, eps=0.1, lower=0.0, upper=1.0)
    assert robust_accuracy(wrapped, x, y, eps=0.1, lower=0.0, upper=1.0, logits_key="logits") == robust
    with pytest.raises(KeyError, match="without 'scores'; choose from logits, hidden"):
        robust_accuracy(wrapped, x, y, eps=0.1, logits_key="scores")
