"""layerscope measure: checkpoints made elsewhere, measured into a normal run folder."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from layerscope.cli import app
from layerscope.config import ConfigError
from layerscope.measure import (
    CheckpointError,
    MeasureWarning,
    find_checkpoints,
    load_measure_config,
    measure,
    parse_measure_config,
    step_from_name,
)
from layerscope.models import MODELS
from layerscope.probes.geometry import measure_geometry
from layerscope.store import RunStore, load


def _series(folder, steps=(0, 10, 100)):
    """A layerscope CNN's state_dicts at some steps (weights moved between them), and the models."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = MODELS["ansuini_cnn"]()
    models = {}
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        torch.save(model.state_dict(), folder / f"step-{step}.pt")
        copy = MODELS["ansuini_cnn"]()
        copy.load_state_dict(model.state_dict())
        models[step] = copy.eval()
    return models


def _probe(path, n=300):
    x = np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32)
    np.save(path, x)
    return torch.from_numpy(x)


def _config(tmp_path, **model):
    return parse_measure_config(
        {
            "name": "series",
            "model": {"source": "ansuini_cnn", "checkpoints": str(tmp_path / "ckpts"), **model},
            "data": {"kind": "arrays", "path": str(tmp_path / "probe.npy")},
            "probes": {"measures": ["twonn"], "layers": ["relu1", "relu3"]},
        }
    )


def test_steps_are_read_from_the_names():
    assert step_from_name("step-500.pt") == 500
    assert step_from_name("epoch=3-step=1200.ckpt") == 1200
    assert step_from_name("checkpoint-250") == 250
    assert step_from_name("model_7.pth") == 7
    assert step_from_name("final.pt") is None


def test_a_state_dict_series_is_measured_as_a_run_equal_to_direct_measurements(tmp_path):
    models = _series(tmp_path / "ckpts")
    x = _probe(tmp_path / "probe.npy")
    folder = measure(_config(tmp_path), tmp_path / "runs")
    table = load(folder)
    assert sorted(table.step.unique()) == [0, 10, 100]
    assert {"relu1", "relu3"} <= set(table.layer)
    record = RunStore(folder).read_run()
    assert record.status == "finished" and record.checkpoints == [0, 10, 100]
    assert (folder / "report.html").exists()
    direct = measure_geometry(models[10], x, ["relu1", "relu3"], ["twonn"])
    for layer in ("relu1", "relu3"):
        got = table[(table.step == 10) & (table.layer == layer) & (table.metric == "twonn")].value.iloc[0]
        want = direct[(direct.layer == layer) & (direct.metric == "twonn")].value.iloc[0]
        assert got == pytest.approx(want, rel=1e-9)


def test_corrupt_and_pickled_checkpoints_are_skipped_and_listed(tmp_path):
    _series(tmp_path / "ckpts")
    _probe(tmp_path / "probe.npy")
    (tmp_path / "ckpts" / "step-50.pt").write_bytes(b"not a torch file at all")
    torch.save(MODELS["ansuini_cnn"](), tmp_path / "ckpts" / "step-70.pt")  # a whole module: needs pickles
    with pytest.warns(MeasureWarning) as caught:
        folder = measure(_config(tmp_path), tmp_path / "runs")
    messages = " ".join(str(w.message) for w in caught)
    assert "step-50.pt" in messages and "corrupt" in messages
    assert "step-70.pt" in messages and "needs pickles" in messages
    assert sorted(load(folder).step.unique()) == [0, 10, 100]
    skipped = RunStore(folder).read_run().config["skipped"]
    assert sorted(p.rsplit("/", 1)[-1] for p in skipped) == ["step-50.pt", "step-70.pt"]


def test_a_second_call_measures_nothing_and_a_killed_one_resumes(tmp_path, monkeypatch):
    import layerscope.measure as lm

    _series(tmp_path / "ckpts")
    _probe(tmp_path / "probe.npy")
    built = []
    original = lm.build

    def build(spec, path):
        built.append(path.name)
        if path.name == "step-10.pt" and len(built) == 2:
            raise KeyboardInterrupt  # killed while on the second checkpoint
        return original(spec, path)

    monkeypatch.setattr(lm, "build", build)
    with pytest.raises(KeyboardInterrupt):
        measure(_config(tmp_path), tmp_path / "runs")
    folder = tmp_path / "runs" / "series"
    assert RunStore(folder).read_run().status == "interrupted"
    assert RunStore(folder).completed_steps() == [0]
    built.clear()
    measure(_config(tmp_path), tmp_path / "runs")
    assert built == ["step-10.pt", "step-100.pt"]  # step 0 was kept
    built.clear()
    measure(_config(tmp_path), tmp_path / "runs")
    assert built == []  # nothing again
    assert RunStore(folder).read_run().resumes == 2


def test_bad_input_gets_one_line_errors(tmp_path):
    _probe(tmp_path / "probe.npy")
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "notes.txt").write_text("no checkpoints here")
    with pytest.raises(CheckpointError, match="no checkpoints in the folder"):
        measure(_config(tmp_path), tmp_path / "runs")
    # weights of another model: the first missing and unexpected keys are named
    torch.save(MODELS["mlp"]().state_dict(), tmp_path / "mlp.pt")
    cfg = parse_measure_config(
        {
            "name": "x",
            "model": {"source": "ansuini_cnn", "weights": str(tmp_path / "mlp.pt")},
            "data": {"kind": "arrays", "path": str(tmp_path / "probe.npy")},
        }
    )
    with pytest.raises(CheckpointError, match="first missing key 'conv1.weight'.*first unexpected key"):
        measure(cfg, tmp_path / "runs")
    with pytest.raises(ConfigError, match="model.weights .*, model.checkpoints .* or model.untrained"):
        parse_measure_config({"name": "x", "model": {"source": "ansuini_cnn"}, "data": {"kind": "arrays", "path": "p"}})
    with pytest.raises(ConfigError, match="probes.measures: lc need labels"):
        parse_measure_config(
            {
                "name": "x",
                "model": {"source": "ansuini_cnn", "weights": "w.pt"},
                "data": {"kind": "arrays", "path": "p"},
                "probes": {"measures": ["twonn", "lc"]},
            }
        )
    missing_tokenizer = parse_measure_config(
        {
            "name": "x",
            "model": {"source": "ansuini_cnn", "weights": str(tmp_path / "mlp.pt")},
            "data": {"kind": "text", "path": str(tmp_path / "probe.npy"), "tokenizer": str(tmp_path / "nope")},
        }
    )
    with pytest.raises(FileNotFoundError, match="data.tokenizer: no such folder"):
        measure(missing_tokenizer, tmp_path / "runs")
    # probe inputs that are not usable: NaN, or a shape the model does not take
    _series(tmp_path / "ckpts2", steps=(0,))
    bad = np.zeros((50, 1, 28, 28), dtype=np.float32)
    bad[3, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "flat.npy", np.zeros((50, 10), dtype=np.float32))
    for name, message in (
        ("nan.npy", "1 of 50 inputs hold NaN"),
        ("flat.npy", r"cannot take the probe inputs \(shape \(50, 10\)\)"),
    ):
        cfg = parse_measure_config(
            {
                "name": "y",
                "model": {"source": "ansuini_cnn", "checkpoints": str(tmp_path / "ckpts2")},
                "data": {"kind": "arrays", "path": str(tmp_path / name)},
            }
        )
        with pytest.raises(ValueError, match=message):
            measure(cfg, tmp_path / "runs", overwrite=True)


def test_images_from_a_folder_and_the_command_line(tmp_path):
    from PIL import Image

    _series(tmp_path / "ckpts", steps=(0, 5))
    g = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(60):
            Image.fromarray(g.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "images" / label / f"{i}.png")
    (tmp_path / "measure.toml").write_text(
        'name = "imgs"\n[model]\nsource = "ansuini_cnn"\ncheckpoints = "ckpts/step-*.pt"\n'
        '[data]\nkind = "images"\npath = "images"\nimage_size = [28, 28]\ngrayscale = true\n'
        "mean = [0.5]\nstd = [0.25]\n"
        '[probes]\nmeasures = ["twonn"]\n'
    )
    cfg = load_measure_config(tmp_path / "measure.toml")  # paths relative to the config's folder
    assert cfg.data.path == tmp_path / "images"
    result = CliRunner().invoke(app, ["measure", str(tmp_path / "measure.toml"), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    table = load(tmp_path / "runs" / "imgs")
    assert sorted(table.step.unique()) == [0, 5] and set(table.split) == {"probe"}
    again = CliRunner().invoke(app, ["measure", str(tmp_path / "nothing.toml")])
    assert again.exit_code == 2 and "no such measure config file" in again.output


def test_lightning_checkpoints(tmp_path):
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = MODELS["ansuini_cnn"]()

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    saver = lightning.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpts", every_n_train_steps=2, save_top_k=-1, filename="{epoch}-{step}"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning.Trainer(
            max_steps=6, callbacks=[saver], logger=False, enable_progress_bar=False, enable_model_summary=False
        ).fit(Module(), DataLoader(data, batch_size=16))
    names = sorted(p.name for p in (tmp_path / "ckpts").iterdir())
    assert len(names) == 3 and all(n.startswith("epoch=") and n.endswith(".ckpt") for n in names), names
    _probe(tmp_path / "probe.npy")
    assert [s for s, _ in find_checkpoints(_config(tmp_path).model)] == [2, 4, 6]
    folder = measure(_config(tmp_path), tmp_path / "runs")  # the state_dict's "model." prefix is dropped
    assert sorted(load(folder).step.unique()) == [2, 4, 6]


def _text_and_tokenizer(tmp_path, *, n_words, length, n_lines, seed):
    """A text file of random sentences (probe.txt) and a word-level tokenizer trained on it, saved to a folder."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = [f"w{i}" for i in range(n_words)]
    g = np.random.default_rng(seed)
    lines = [" ".join(g.choice(words, length)) for _ in range(n_lines)]
    (tmp_path / "probe.txt").write_text("\n".join(lines) + "\n")
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(lines, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(tmp_path / "tokenizer")
    return lines, fast


def test_hugging_face_checkpoint_folders_and_text(tmp_path):
    transformers = pytest.importorskip("transformers")
    _text_and_tokenizer(tmp_path, n_words=40, length=12, n_lines=200, seed=0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=3, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2Model(config)
    for step in (100, 200):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        model.save_pretrained(tmp_path / "out" / f"checkpoint-{step}")
    (tmp_path / "out" / "checkpoint-300").mkdir()  # a checkpoint whose files are missing
    cfg = parse_measure_config(
        {
            "name": "gpt2",
            "model": {"source": "hf", "checkpoints": str(tmp_path / "out")},
            "data": {
                "kind": "text",
                "path": str(tmp_path / "probe.txt"),
                "tokenizer": str(tmp_path / "tokenizer"),
                "max_length": 16,
            },
            "probes": {"measures": ["twonn"]},
        }
    )
    with pytest.warns(MeasureWarning, match="checkpoint-300: not a Hugging Face model folder"):
        folder = measure(cfg, tmp_path / "runs")
    table = load(folder)
    assert sorted(table.step.unique()) == [100, 200]
    assert [p.rsplit("/", 1)[-1] for p in RunStore(folder).read_run().config["skipped"]] == ["checkpoint-300"]
    assert set(table.layer) == {"h.0", "h.1", "h.2"}  # a transformer's blocks by default
    assert (table[table.metric == "twonn"].value > 0).all()


def test_a_gpt2_trained_by_the_hugging_face_trainer_measured_over_its_checkpoints(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    lines, fast = _text_and_tokenizer(tmp_path, n_words=30, length=10, n_lines=160, seed=1)
    ids = fast(lines, padding="max_length", max_length=12, truncation=True, return_tensors="pt")["input_ids"]
    train = [{"input_ids": row, "labels": row} for row in ids]
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=40, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
        )
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=8,
        save_steps=2,
        per_device_train_batch_size=16,
        learning_rate=1e-2,
        report_to=[],
        logging_strategy="no",
        use_cpu=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.Trainer(model=model, args=args, train_dataset=train).train()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"checkpoint-{s}" for s in (2, 4, 6, 8)]
    cfg = parse_measure_config(
        {
            "name": "trainer",
            "model": {"source": "hf", "task": "AutoModelForCausalLM", "checkpoints": str(tmp_path / "out")},
            "data": {
                "kind": "text",
                "path": str(tmp_path / "probe.txt"),
                "tokenizer": str(tmp_path / "tokenizer"),
                "max_length": 12,
            },
            "probes": {"measures": ["twonn"]},
        }
    )
    table = load(measure(cfg, tmp_path / "runs"))
    assert sorted(table.step.unique()) == [2, 4, 6, 8]
    assert set(table.layer) == {"transformer.h.0", "transformer.h.1"}
    # each row equals a direct measurement of that checkpoint
    lm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "checkpoint-6").eval()
    inputs = fast(lines, padding="max_length", max_length=12, truncation=True, return_tensors="pt")
    batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    direct = measure_geometry(lm, batch, ["transformer.h.0", "transformer.h.1"], ["twonn"])
    for layer in ("transformer.h.0", "transformer.h.1"):
        got = table[(table.step == 6) & (table.layer == layer) & (table.metric == "twonn")].value.iloc[0]
        want = direct[(direct.layer == layer) & (direct.metric == "twonn")].value.iloc[0]
        assert got == pytest.approx(want, rel=1e-9)


def test_probe_data_from_a_saved_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    _series(tmp_path / "ckpts", steps=(0, 3))
    g = np.random.default_rng(2)
    images = [Image.fromarray(g.integers(0, 255, (28, 28), dtype=np.uint8)) for _ in range(120)]
    data = datasets.Dataset.from_dict({"image": images, "label": list(range(120))})
    datasets.DatasetDict({"validation": data, "test": data.select(range(50))}).save_to_disk(tmp_path / "ds")
    raw = {
        "name": "from-ds",
        "model": {"source": "ansuini_cnn", "checkpoints": str(tmp_path / "ckpts")},
        "data": {"kind": "hf_dataset", "path": str(tmp_path / "ds"), "column": "image", "grayscale": True},
        "probes": {"measures": ["twonn"], "layers": ["relu3"]},
    }
    with pytest.raises(ValueError, match="choose data.dataset_split, one of validation, test"):
        measure(parse_measure_config(raw), tmp_path / "runs")
    raw["data"]["dataset_split"] = "validation"
    raw["data"]["n"] = 100
    folder = measure(parse_measure_config(raw), tmp_path / "runs", overwrite=True)
    table = load(folder)
    assert sorted(table.step.unique()) == [0, 3]
    from layerscope.measure import load_probe_data

    x = load_probe_data(parse_measure_config(raw).data, seed=0)
    assert x.shape == (100, 1, 28, 28)  # a seeded sample of 100, one grey channel, in [0, 1]
    kept = np.sort(np.random.default_rng(0).choice(120, 100, replace=False))
    np.testing.assert_allclose(x[0, 0].numpy(), np.asarray(images[kept[0]], dtype=np.float32) / 255)
    raw["data"]["column"] = "nope"
    with pytest.raises(ValueError, match="choose data.column, one of image, label"):
        measure(parse_measure_config(raw), tmp_path / "runs", overwrite=True)


def test_checkpoints_spread_over_ray_give_the_same_run(tmp_path):
    pytest.importorskip("ray")
    from layerscope.sweep import measure_on_ray

    _series(tmp_path / "ckpts", steps=(0, 10, 100, 300))
    _probe(tmp_path / "probe.npy", n=200)
    (tmp_path / "ckpts" / "step-50.pt").write_bytes(b"corrupt")
    with pytest.warns(MeasureWarning):
        alone = load(measure(_config(tmp_path), tmp_path / "alone"))
    folder = measure_on_ray(_config(tmp_path), tmp_path / "runs", parts=2)
    spread = load(folder)
    assert sorted(spread.step.unique()) == [0, 10, 100, 300]
    keys = ["step", "split", "layer", "metric"]
    merged = alone.merge(spread, on=keys, suffixes=("_alone", "_ray"))
    assert len(merged) == len(alone) == len(spread)
    np.testing.assert_allclose(merged.value_ray, merged.value_alone, rtol=1e-9)
    record = RunStore(folder).read_run()
    assert record.status == "finished" and list(record.config["skipped"]) == [str(tmp_path / "ckpts" / "step-50.pt")]
    assert not (folder / ".parts").exists() and (folder / "report.html").exists()
    assert measure_on_ray(_config(tmp_path), tmp_path / "runs", parts=2) == folder  # nothing again
    assert RunStore(folder).read_run().resumes == 0


TINY_NETS = '''
import torch
from torch import nn


def vgg16():
    """torchvision's VGG-16 layout (cfg D: 13 convolutions, 5 max-pools; a 3-layer classifier), 16 channels wide."""
    layers, c = [], 3
    for v in [16, 16, "M", 16, 16, "M", 16, 16, 16, "M", 16, 16, 16, "M", 16, 16, 16, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    net = nn.Module()
    net.features = nn.Sequential(*layers)
    net.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    net.classifier = nn.Sequential(
        nn.Linear(16 * 49, 32), nn.ReLU(True), nn.Dropout(),
        nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(),
        nn.Linear(32, 10),
    )
    for m in net.modules():  # a random net whose ReLUs stay alive through 13 narrow layers
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight, gain=1.4)
            nn.init.constant_(m.bias, 0.05)
    net.forward = lambda x: net.classifier(torch.flatten(net.avgpool(net.features(x)), 1))
    return net


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.conv(x))


def resnet18():
    """torchvision's ResNet-18 layout (stem, max-pool, four stages of two blocks, pooling, fc), 4 channels wide."""
    net = nn.Module()
    net.conv1, net.relu, net.maxpool = nn.Conv2d(3, 4, 7, stride=4, padding=3), nn.ReLU(), nn.MaxPool2d(2)
    for s in range(1, 5):
        setattr(net, f"layer{s}", nn.Sequential(Block(4), Block(4)))
    net.avgpool, net.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 10)

    def forward(x):
        x = net.maxpool(net.relu(net.conv1(x)))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return net.fc(torch.flatten(net.avgpool(x), 1))

    net.forward = forward
    return net
'''


def _stand_in(tmp_path, monkeypatch, arch):
    """A stand-in for torchvision's ``arch`` (the same module names), its weights saved to a file, and a folder
    of generated images in three classes."""
    import importlib

    from PIL import Image

    (tmp_path / "tinynets.py").write_text(TINY_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    torch.manual_seed(0)
    net = getattr(importlib.import_module("tinynets"), arch)()
    torch.save(net.state_dict(), tmp_path / "weights.pth")
    g = np.random.default_rng(3)
    for label in ("a", "b", "c"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(g.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
                tmp_path / "images" / label / f"{i}.jpg"
            )
    return tmp_path / "weights.pth", tmp_path / "images"


@pytest.mark.parametrize("arch", ["vgg16", "resnet18"])
def test_the_ansuini_preset_for_pretrained_nets_on_a_random_net_and_generated_images(tmp_path, monkeypatch, arch):
    # the preset's layers of torchvision's VGG-16 and ResNet-18, on stand-ins with the same module names
    # (torchvision itself does not install beside this CPU torch), weights saved to a file, images generated
    from layerscope.measure import ansuini_layers, ansuini_pretrained

    _stand_in(tmp_path, monkeypatch, arch)
    cfg = ansuini_pretrained(arch, tmp_path / "weights.pth", tmp_path / "images", n=80, source=f"tinynets:{arch}")
    assert cfg.probes.layers == ansuini_layers(arch) and cfg.data.image_size == (224, 224)
    table = load(measure(cfg, tmp_path / "runs"))
    assert set(table.layer[table.metric == "twonn"]) == {"input", *ansuini_layers(arch)}  # the input too, as the paper
    assert set(table.metric) >= {"twonn", "pc_id"} and list(table.step.unique()) == [0]
    widths = table[table.metric == "n_features"].set_index("layer").value
    assert widths["output"] == 10


@pytest.mark.xdist_group("ray")
def test_the_full_ansuini_size_measures_pretrained_nets_beside_their_untrained_twins(tmp_path, monkeypatch):
    # reproduce ansuini2019 --size full --pretrained vgg16=FILE --images FOLDER: the preset measures the pretrained
    # net and the same net untrained as trials of the experiment's sweep, and the findings judge the pretrained
    # profile against the untrained one (here a stand-in with torchvision's VGG-16 module names)
    import json
    import warnings

    from matplotlib.figure import Figure

    import layerscope.experiments
    from layerscope.experiments import EXPERIMENTS, Experiment, ansuini2019
    from layerscope.experiments.base import holm, run_tables
    from layerscope.experiments.reproduce import reproduce

    def tiny_findings(folder):  # the pretrained nets' findings alone
        return holm(ansuini2019._pretrained_findings(run_tables(folder)))

    weights, images = _stand_in(tmp_path, monkeypatch, "vgg16")
    # the "pretrained" weights: another draw than the untrained twin's seeded initialisation (seed 0)
    torch.manual_seed(7)
    torch.save({k: torch.randn_like(v) * v.std() for k, v in torch.load(weights, weights_only=True).items()}, weights)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    measured = ansuini2019.pretrained_configs({"vgg16": weights}, images, n=80, source="tinynets:vgg16")
    assert [c.name for c in measured] == ["pretrained-vgg16", "untrained-vgg16"]
    assert measured[1].model.untrained and measured[1].model.weights is None
    monkeypatch.setitem(
        layerscope.experiments.EXPERIMENTS,
        "tiny",
        Experiment("tiny", "tiny", lambda size, seeds=None: [], tiny_findings, lambda f: Figure()),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = reproduce("tiny", "full", tmp_path / "runs", measured=measured)
    runs = run_tables(folder)
    assert set(runs) == {"pretrained-vgg16", "untrained-vgg16"}
    # the untrained twin is another net (the initialisation, seeded): its profile differs from the saved weights'
    a = runs["pretrained-vgg16"].query("metric == 'twonn' and layer == 'classifier.4'").value.iloc[0]
    b = runs["untrained-vgg16"].query("metric == 'twonn' and layer == 'classifier.4'").value.iloc[0]
    assert a != b
    findings = {f["claim"]: f for f in json.loads((folder / "findings.json").read_text())}
    hunch = next(f for c, f in findings.items() if c.startswith("Training makes the hunchback") and "vgg16" in c)
    assert hunch["verdict"] in ("holds", "contradicted", "inconclusive") and "untrained" in hunch["measured"]
    assert any(c.startswith("Pretrained vgg16: The trained net's profile ends lower") for c in findings)
    assert "ansuini2019" in EXPERIMENTS


def test_measured_runs_sharing_a_name_are_refused_before_anything_runs(tmp_path):
    from layerscope.experiments.reproduce import reproduce

    config = _config(tmp_path)  # parsed only: nothing is read before the names are checked
    with pytest.raises(ValueError, match="share a name: series$"):
        reproduce("ansuini2019", "quick", tmp_path / "runs", measured=[config, config])
    assert not (tmp_path / "runs").exists()


def test_reproduce_pretrained_options_are_checked_before_anything_runs(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    cases = [
        (["tan2024", "--size", "full", "--pretrained", f"vgg16={weights}", "--images", "x"], "measured by ansuini2019"),
        (["ansuini2019", "--size", "full", "--pretrained", f"vgg16={weights}"], "needs --images FOLDER"),
        (["ansuini2019", "--size", "full", "--pretrained", "vgg16", "--images", "x"], "takes ARCH=WEIGHTS_FILE"),
        (["ansuini2019", "--size", "full", "--pretrained", "vgg16=nope.pth", "--images", "x"], "no such weights file"),
        (["ansuini2019", "--size", "full", "--images", "x"], "--images is for --pretrained"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["reproduce", *args, "--out", str(tmp_path / "runs")])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
    assert not (tmp_path / "runs").exists()
