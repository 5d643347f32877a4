"""The Lightning and Hugging Face callbacks, and the TensorBoard mirror, with the real libraries (offline)."""

import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from layerscope.probes.geometry import measure_geometry
from layerscope.store import RunStore, load


def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)


def planned_rows_present(table, layers, steps, metric="twonn"):
    got = table[(table.metric == metric)].groupby(["layer", "step"]).size()
    return all((layer, step) in got.index for layer in layers for step in steps)


def test_lightning_callback_writes_a_run(tmp_path):
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from layerscope.integrations.lightning import LayerscopeCallback
    from layerscope.report import make_report

    class Classifier(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": 0.01})
            self.model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    x, y = digits()
    torch.manual_seed(0)
    module = Classifier()
    initial = measure_geometry(module, x[:300], ["model.1", "model.3"], ["twonn"], include_input=False)
    callback = LayerscopeCallback(tmp_path / "mlp", {"test": x[:300]}, layers=["model.1", "model.3"], checkpoints=5)
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True))
    info = RunStore(tmp_path / "mlp").read_run()
    assert info.status == "finished" and info.total_steps == 58 and info.checkpoints == [0, 1, 4, 15, 58]
    assert info.config["trainer"] == "lightning" and info.config["settings"]["hparams"] == {"lr": 0.01}
    table = load(tmp_path / "mlp")
    assert sorted(table.step.unique()) == [0, 1, 4, 15, 58]
    assert planned_rows_present(table, ["model.1", "model.3"], [0, 1, 4, 15, 58])
    first = table[(table.step == 0) & (table.metric == "twonn")].set_index("layer").value
    assert first.loc["model.1"] == pytest.approx(
        initial[initial.metric == "twonn"].set_index("layer").value.loc["model.1"], rel=1e-12
    )
    loss = table[(table.metric == "train_loss")]
    assert set(loss.step) == {1, 4, 15, 58} and loss.value.iloc[-1] < loss.value.iloc[0]
    assert (tmp_path / "mlp" / "input").exists() is False and make_report(tmp_path / "mlp").exists()


def test_lightning_callback_does_nothing_off_rank_zero(tmp_path):
    pytest.importorskip("lightning")
    from layerscope.integrations.lightning import LayerscopeCallback

    callback = LayerscopeCallback(tmp_path / "r1", {"test": torch.randn(50, 4)})
    trainer = types.SimpleNamespace(is_global_zero=False, global_step=0)
    callback.on_train_start(trainer, nn.Linear(4, 2))
    callback.on_train_batch_end(trainer, nn.Linear(4, 2), None, None, 0)
    assert not callback.run.active and not (tmp_path / "r1").exists()


class TokenTask(torch.utils.data.Dataset):
    """Sequences of random tokens; the label says whether token 7 occurs."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 30, (n, 12), generator=g)
        lengths = torch.randint(4, 13, (n,), generator=g)
        self.mask = (torch.arange(12)[None] < lengths[:, None]).long()
        self.ids = self.ids * self.mask
        self.labels = ((self.ids == 7).any(1)).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def test_transformers_callback_on_a_tiny_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    from layerscope.integrations.transformers import LayerscopeCallback

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    probe = TokenTask(200, seed=1)
    inputs = {"test": {"input_ids": probe.ids, "attention_mask": probe.mask}}
    callback = LayerscopeCallback(tmp_path / "bert", inputs, checkpoints=4, tensorboard=True)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=24,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        logging_steps=4,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.Trainer(model=model, args=args, train_dataset=TokenTask(400), callbacks=[callback]).train()
    info = RunStore(tmp_path / "bert").read_run()
    layers = ["bert.encoder.layer.0", "bert.encoder.layer.1", "output:logits"]
    assert info.status == "finished" and info.config["layers"] == layers and info.config["settings"]["max_steps"] == 24
    table = load(tmp_path / "bert")
    steps = info.checkpoints
    assert steps[0] == 0 and steps[-1] == 24 and sorted(table.step.unique()) == steps
    assert planned_rows_present(table, layers[:2], steps)
    assert table[table.metric == "twonn"].value.notna().all()
    assert set(table[table.metric == "train_loss"].step) >= {24}
    # the stored ID of the last block equals a measurement of the trained model, tokens averaged under the mask
    final = measure_geometry(model.eval(), inputs["test"], ["bert.encoder.layer.1"], ["twonn"])
    last = table[(table.step == 24) & (table.metric == "twonn") & (table.layer == "bert.encoder.layer.1")].value.iloc[0]
    assert last == pytest.approx(final[final.metric == "twonn"].value.iloc[0], rel=1e-6)
    # TensorBoard holds the same numbers
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "bert" / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("layerscope/twonn/test/bert.encoder.layer.1")
    assert [s.step for s in scalars] == steps and scalars[-1].value == pytest.approx(last, rel=1e-6)


class Exploding(TokenTask):
    """A data set whose item ``at`` raises (a corrupt example, a full disk: training stops mid-way)."""

    def __init__(self, n, at):
        super().__init__(n)
        self.at = at

    def __getitem__(self, i):
        if i == self.at:
            raise RuntimeError("example 37 is corrupt")
        return super().__getitem__(i)


def tiny_bert(transformers):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


@pytest.mark.parametrize("attach", ["constructor", "add_callback"])
def test_transformers_callback_records_a_failed_training_and_frees_the_folder(tmp_path, attach):
    transformers = pytest.importorskip("transformers")
    from layerscope.integrations.transformers import LayerscopeCallback

    probe = TokenTask(100, seed=1)
    inputs = {"test": {"input_ids": probe.ids, "attention_mask": probe.mask}}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=12,
        per_device_train_batch_size=8,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        dataloader_drop_last=True,
    )

    def trainer(callback, data):
        if attach == "constructor":
            return transformers.Trainer(
                model=tiny_bert(transformers), args=args, train_dataset=data, callbacks=[callback]
            )
        made = transformers.Trainer(model=tiny_bert(transformers), args=args, train_dataset=data)
        made.add_callback(callback)
        return made

    first = LayerscopeCallback(tmp_path / "bert", inputs, checkpoints=3)
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="example 37 is corrupt"):
        warnings.simplefilter("ignore")
        trainer(first, Exploding(96, at=37)).train()
    if attach == "constructor":  # the callback saw the exception: recorded at once, lock released
        info = RunStore(tmp_path / "bert").read_run()
        assert info.status == "failed" and info.error == "RuntimeError: example 37 is corrupt"
        assert not first.run.active
    # a new callback on the same folder in the same process (a notebook) works
    second = LayerscopeCallback(tmp_path / "bert", inputs, checkpoints=3, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(second, TokenTask(96)).train()
    assert RunStore(tmp_path / "bert").read_run().status == "finished" and not first.run.active
    if attach == "add_callback":  # found only inside its first train(): closed as failed when the next run began
        assert first.run.record.status == "failed" and "without telling the callback" in first.run.record.error
    third = LayerscopeCallback(tmp_path / "bert", inputs, checkpoints=3, overwrite=True)
    made = trainer(third, Exploding(96, at=37))
    with warnings.catch_warnings(), pytest.raises(RuntimeError):
        warnings.simplefilter("ignore")
        made.train()
    with warnings.catch_warnings(), pytest.raises(RuntimeError):
        warnings.simplefilter("ignore")
        made.train()  # the same Trainer again: watched once, recorded again
    info = RunStore(tmp_path / "bert").read_run()
    assert info.status == "failed" and "example 37" in info.error


def test_tracked_run_track_records_how_a_loop_of_ones_own_ends(tmp_path):
    from layerscope.integrations import TrackedRun
    from layerscope.report import make_report

    x = torch.randn(200, 6)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    run = TrackedRun(tmp_path / "mine", {"test": x}, checkpoints=3)
    with run.track(model, total_steps=20):
        for step in range(21):
            if run.due(step):
                run.measure(model, step, metrics={"test_acc": 0.5})
    assert RunStore(tmp_path / "mine").read_run().status == "finished"
    assert sorted(load(tmp_path / "mine").step.unique()) == [0, 1, 20] and make_report(tmp_path / "mine").is_file()
    again = TrackedRun(tmp_path / "mine", {"test": x}, checkpoints=3, overwrite=True)
    with pytest.raises(ZeroDivisionError):
        with again.track(model, total_steps=20):
            run.measure(model, 0)
            1 / 0
    info = RunStore(tmp_path / "mine").read_run()
    assert info.status == "failed" and info.error == "ZeroDivisionError: division by zero" and not again.active
    with pytest.raises(KeyboardInterrupt):
        with TrackedRun(tmp_path / "mine", {"test": x}, overwrite=True).track(model, total_steps=20):
            raise KeyboardInterrupt
    assert RunStore(tmp_path / "mine").read_run().status == "interrupted"


def test_tracked_run_refuses_what_it_cannot_do(tmp_path):
    from layerscope.integrations import TrackedRun

    with pytest.raises(ValueError, match="give probe inputs"):
        TrackedRun(tmp_path / "a", {})
    with pytest.raises(ValueError, match="tokens: Input should be 'mean', 'first', 'last', 'all' or 'flatten'"):
        TrackedRun(tmp_path / "a", {"test": torch.randn(10, 3)}, tokens="cls")
    with pytest.raises(ValueError, match="layer: Extra inputs are not permitted"):  # a typo of layers
        TrackedRun(tmp_path / "a", {"test": torch.randn(10, 3)}, layer=["0"])
    with pytest.raises(ValueError, match="memory_budget_mb: Input should be greater than 0"):
        TrackedRun(tmp_path / "a", {"test": torch.randn(10, 3)}, memory_budget_mb=0)
    with pytest.raises(ValueError, match="unknown estimator 'twonnn'"):
        TrackedRun(tmp_path / "a", {"test": torch.randn(10, 3)}, estimators=["twonnn"])
    with pytest.raises(ValueError, match="name must start with a letter"):
        TrackedRun(tmp_path / "..", {"test": torch.randn(10, 3)})
    run = TrackedRun(tmp_path / "a", {"test": torch.randn(100, 3)})
    with pytest.raises(ValueError, match="does not know its number of steps"):
        run.begin(nn.Linear(3, 2), float("inf"), resuming=False, trainer="x", settings={})
    run.begin(nn.Linear(3, 2), 10, resuming=False, trainer="x", settings={})
    run.measure(nn.Linear(3, 2), 0, 0.0, {"val_acc": torch.tensor(0.5), "junk": torch.ones(3), "nan": float("nan")})
    run.end()
    table = load(tmp_path / "a")
    assert set(table[table.layer == ""].metric) == {"val_acc"}
    again = TrackedRun(tmp_path / "a", {"test": torch.randn(100, 3)})
    with pytest.raises(FileExistsError, match="holds a run already"):
        again.begin(nn.Linear(3, 2), 10, resuming=False, trainer="x", settings={})
    assert not again.active
    resumed = TrackedRun(tmp_path / "a", {"test": torch.randn(100, 3)})
    resumed.begin(nn.Linear(3, 2), 10, resuming=True, trainer="x", settings={})
    assert resumed.measured == {0} and not resumed.due(0) and resumed.due(10)
    resumed.end("failed", "boom")
    assert RunStore(tmp_path / "a").read_run().resumes == 1 and RunStore(tmp_path / "a").read_run().error == "boom"
    assert np.isfinite(pd.read_parquet(tmp_path / "a" / "run.parquet").total_steps.iloc[0])


def fake_timm():
    """A stand-in for timm (its real wheel needs torchvision, whose PyPI build does not load beside a CPU torch here):
    what layerscope calls of it, list_models and create_model with timm's argument names."""
    module = types.ModuleType("timm")
    module.list_models = lambda: ["tiny_cnn"]
    module.calls = []

    def create_model(name, num_classes=1000, in_chans=3, pretrained=False):
        module.calls.append({"name": name, "num_classes": num_classes, "in_chans": in_chans})
        return nn.Sequential(
            nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, num_classes)
        )

    module.create_model = create_model
    return module


def test_library_models_by_name(tmp_path, monkeypatch):
    import sys

    from layerscope.config import ConfigError, parse_config
    from layerscope.runner import execute

    timm = fake_timm()
    monkeypatch.setitem(sys.modules, "timm", timm)
    raw = {
        "name": "t",
        "data": {"name": "digits", "probe_size": 100},
        "model": {"name": "timm:tiny_cnn"},
        "train": {"epochs": 1, "batch_size": 128},
        "schedule": {"kind": "log", "num": 3},
        "probes": {"measures": ["twonn"], "layers": ["1"]},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(parse_config(raw, "test"), tmp_path / "t")
    table = load(tmp_path / "t")
    assert timm.calls == [{"name": "tiny_cnn", "num_classes": 10, "in_chans": 1}]  # filled in from the data
    assert set(table[table.metric == "twonn"].layer) == {"input", "1"} and len(table[table.metric == "test_acc"]) == 3
    with pytest.raises(ConfigError, match="timm has no model 'tiny_cn'; did you mean tiny_cnn"):
        parse_config({**raw, "model": {"name": "timm:tiny_cn"}}, "test")
    with pytest.raises(ConfigError, match="unknown model library 'keras'"):
        parse_config({**raw, "model": {"name": "keras:resnet"}}, "test")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ConfigError, match="models named torchvision:NAME need torchvision: pip install torchvision"):
        parse_config({**raw, "model": {"name": "torchvision:resnet18"}}, "test")
