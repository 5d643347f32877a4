"""Every bad input to the command line ends in one line naming the file or field, exit code 2."""

import warnings

import pytest
import torch
from typer.testing import CliRunner

from layerscope.cli import app
from layerscope.config import parse_config
from layerscope.runner import execute

runner = CliRunner()


def fails(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in result.output, result.output
    return result


@pytest.mark.parametrize(
    "filename,text,message",
    [
        ("bad.yaml", "name: [unclosed\n", "bad.yaml: not valid YAML (line 2"),
        (
            "tag.yaml",
            "name: !!python/object:os.system x\n",
            "tag.yaml: not valid YAML (line 1, column 7): could not determine a constructor",
        ),
        ("empty.yaml", "", "empty.yaml is empty"),
        ("empty.toml", "# nothing\n", "empty.toml is empty"),
        ("list.yaml", "- a\n- b\n", "expected a table of settings"),
        ("bad.toml", "name = \n", "bad.toml: not valid TOML"),
        (
            "params.toml",
            'name = "p"\n[data]\nname = "digits"\n[model]\nname = "mlp"\nparams = {width = "abc"}\n',
            "model.params: bad parameters for model 'mlp': width: Input should be a valid integer",
        ),
        (
            "zero.toml",
            'name = "z"\n[data]\nname = "digits"\n[model]\nname = "mlp"\nparams = {width = 0}\n',
            "model.params: MLP needs depth >= 1 and width >= 1",
        ),
    ],
)
def test_bad_config_files(tmp_path, filename, text, message):
    path = tmp_path / filename
    path.write_text(text)
    fails(["run", str(path), "--out", str(tmp_path / "out")], message)


def test_a_folder_given_as_a_file(tmp_path):
    fails(["run", str(tmp_path)], "is a folder, not a config file")
    fails(["id", str(tmp_path)], "cannot read")
    (tmp_path / "f.txt").write_text("x")
    fails(["report", str(tmp_path / "f.txt")], "is not a layerscope run")
    fails(["runs", str(tmp_path / "f.txt")], "no layerscope runs in")
    fails(["run", "--resume", str(tmp_path / "f.txt")], "nothing to resume")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tmp_path):
    fails(
        ["run", "--preset", "smoke", "--out", str(tmp_path), "--device", "cuda"],
        "device: device 'cuda' asked for, but this torch has no usable CUDA",
    )
    assert not (tmp_path / "smoke").exists()  # refused before anything was written
    path = tmp_path / "p.npy"
    import numpy as np

    np.save(path, np.random.default_rng(0).standard_normal((100, 3)))
    fails(["id", str(path), "--device", "cuda:0", "-e", "twonn"], "no usable CUDA")


@pytest.fixture(scope="module")
def run_with_weights(tmp_path_factory):
    cfg = parse_config(
        {
            "name": "w",
            "data": {"name": "digits", "probe_size": 100},
            "model": {"name": "mlp", "params": {"width": 8, "depth": 1}},
            "train": {"epochs": 1},
            "schedule": {"kind": "log", "num": 2},
            "probes": {"measures": ["twonn"], "save_weights": True},
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return execute(cfg, tmp_path_factory.mktemp("runs") / "w")


@pytest.mark.parametrize(
    "points,message",
    [
        (["99999", "1", "2"], "--point 99999 is not an index of the test set (0 to"),
        (["-1", "1", "2"], "--point -1 is not an index of the test set"),
        (["1", "1", "2"], "give three different --point indices"),
        (["1", "2"], "give exactly three --point indices"),
    ],
)
def test_partition_points_are_checked(run_with_weights, points, message):
    args = ["partition", str(run_with_weights)]
    for p in points:
        args += ["-p", p]
    fails(args, message)


def test_partition_of_corrupt_weights(run_with_weights, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(run_with_weights, copy)
    weights = sorted((copy / "weights").glob("step-*.pt"))[-1]
    weights.write_bytes(weights.read_bytes()[:64])
    result = fails(["partition", str(copy)], "cannot be read as saved weights")
    assert "weights_only=False" not in result.output
