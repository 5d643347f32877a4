"""The run record (run.parquet): one schema for every writer, typed when read, older files still read."""

import json
import warnings

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from layerscope.config import parse_config
from layerscope.integrations import TrackedRun
from layerscope.runner import execute
from layerscope.store import RUN_SCHEMA, CorruptRunError, RunRecord, RunStore, peek
from layerscope.store.remote import location


def tiny(name):
    return parse_config(
        {
            "name": name,
            "data": {"name": "digits", "probe_size": 100},
            "model": {"name": "mlp", "params": {"width": 16, "depth": 1}},
            "train": {"epochs": 1, "batch_size": 128},
            "schedule": {"kind": "log", "num": 3},
            "probes": {"measures": ["twonn"]},
        }
    )


def test_every_writer_writes_the_one_schema(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        execute(tiny("cli"), tmp_path / "cli")
    run = TrackedRun(tmp_path / "callback", {"test": torch.randn(50, 4)}, checkpoints=2)
    with run.track(nn.Linear(4, 2), total_steps=3, trainer="mine", settings={"lr": 0.1}):
        run.measure(nn.Linear(4, 2), 0)
    for name in ("cli", "callback"):
        table = pq.read_table(tmp_path / name / "run.parquet")
        assert table.schema.equals(RUN_SCHEMA), (name, table.schema)
        record = RunStore(tmp_path / name).read_run()
        assert record.status == "finished" and record.end_time >= record.start_time and record.resumes == 0
        assert set(record.versions) == {"layerscope", "torch", "numpy", "python"}
    cli, callback = RunStore(tmp_path / "cli").read_run(), RunStore(tmp_path / "callback").read_run()
    assert cli.config == tiny("cli").model_dump(mode="json") and cli.total_steps == 11 and cli.checkpoints == [0, 1, 11]
    assert (
        callback.config["trainer"] == "mine"
        and callback.config["settings"] == {"lr": 0.1}
        and callback.checkpoints == [0, 1, 3]
    )
    # DuckDB and pandas read it as a plain table
    frame = pd.read_parquet(tmp_path / "cli" / "run.parquet")
    assert json.loads(frame.config.iloc[0])["name"] == "cli" and frame.status.iloc[0] == "finished"


def test_a_record_round_trips_and_ends_once():
    record = RunRecord.begin("r", {"a": 1}, seed=3)
    assert record.status == "running" and record.end_time is None
    assert RunRecord.from_table(record.to_table()) == record
    planned = record.planned(10, [0, 5, 10])
    ended = planned.ended("failed", "ValueError: x")
    assert RunRecord.from_table(ended.to_table()) == ended and ended.checkpoints == [0, 5, 10] and ended.end_time
    with pytest.raises(ValueError, match="ends finished, failed or interrupted"):
        planned.ended("running")
    with pytest.raises(ValueError, match="status must be one of"):
        RunRecord("r", {}, status="done")


def test_records_written_before_the_schema_are_read(tmp_path):
    """run.parquet as pandas wrote it before RUN_SCHEMA: no resumes, no plan, NaN for a missing seed."""
    (tmp_path / "old").mkdir()
    pd.DataFrame(
        [
            {
                "run_id": "old",
                "config": json.dumps({"name": "old"}),
                "seed": float("nan"),
                "versions": json.dumps({"torch": "2.1"}),
                "git_revision": None,
                "start_time": "2026-01-01T00:00:00",
                "end_time": None,
                "status": "running",
                "error": None,
            }
        ]
    ).to_parquet(tmp_path / "old" / "run.parquet")
    record = RunStore(tmp_path / "old").read_run()
    assert record == RunRecord("old", {"name": "old"}, None, {"torch": "2.1"}, None, "2026-01-01T00:00:00")
    assert peek(location(tmp_path / "old")).status == "running"


@pytest.mark.parametrize(
    "content,message",
    [
        (b"garbage", "run.parquet cannot be read"),
        (pd.DataFrame([{"x": 1}]), "is not a layerscope run record"),
        (pd.DataFrame([{"run_id": "a", "config": "{not json"}]), "its config is not valid JSON"),
        (pd.DataFrame([{"run_id": "a", "config": "{}", "status": "weird"}]), "status must be one of"),
    ],
)
def test_a_bad_record_is_a_one_line_error_and_peek_does_not_raise(tmp_path, content, message):
    (tmp_path / "r").mkdir()
    if isinstance(content, bytes):
        (tmp_path / "r" / "run.parquet").write_bytes(content)
    else:
        content.to_parquet(tmp_path / "r" / "run.parquet")
    with pytest.raises(CorruptRunError, match=message):
        RunStore(tmp_path / "r").read_run()
    assert peek(location(tmp_path / "r")).record is None


def test_end_run_survives_a_full_disk(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "r")
    record = store.start_run(RunRecord.begin("r", {}, seed=0))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "update_run", full)
    ended = store.end_run(record, "failed", "RuntimeError: boom")  # the error that ended the run is not hidden
    assert ended.status == "failed" and RunStore(tmp_path / "r").read_run().status == "running"


def test_saved_weights_by_step(tmp_path):
    store = RunStore(tmp_path / "r")
    store.create()
    for step in (0, 12, 3):
        store.save_weights(step, nn.Linear(2, 2))
    (tmp_path / "r" / "weights" / "step-7-old.pt").write_bytes(b"")  # not layerscope's name: not a checkpoint
    assert list(store.saved_weights()) == [0, 3, 12]
    assert RunStore(tmp_path / "none").saved_weights() == {}
