import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from layerscope.cli import app
from layerscope.data.files import load_points
from layerscope.data.manifolds import hypersphere
from layerscope.estimators import twonn

runner = CliRunner()
X = hypersphere(1500, 3, 8, seed=0)


def write(path, array):
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".npz":
        np.savez(path, points=array)
    elif suffix == ".csv":
        pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])]).to_csv(path, index=False)
    elif suffix == ".parquet":
        pd.DataFrame(array, columns=[f"f{i}" for i in range(array.shape[1])]).to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".parquet"])
def test_id_json_for_every_format(tmp_path, suffix):
    path = write(tmp_path / f"points{suffix}", X)
    result = runner.invoke(app, ["id", str(path), "--estimator", "twonn", "-e", "mle", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["estimator"] for r in rows] == ["twonn", "mle"]
    assert set(rows[0]) == {"estimator", "dimension", "error"}
    assert rows[0]["dimension"] == pytest.approx(twonn(X).value, rel=1e-9 if suffix != ".csv" else 1e-6)
    assert rows[1]["dimension"] == pytest.approx(3, rel=0.1)


def test_id_table_has_every_estimator(tmp_path):
    path = write(tmp_path / "points.npy", X)
    result = runner.invoke(app, ["id", str(path)])
    assert result.exit_code == 0, result.output
    for name in ["twonn", "mle", "gride", "pc_id", "participation_ratio"]:
        assert name in result.stdout
    assert "points.npy (1500 points x 8 features)" in " ".join(result.stdout.split())


def test_csv_without_header(tmp_path):
    path = tmp_path / "plain.csv"
    np.savetxt(path, X, delimiter=",")
    np.testing.assert_allclose(load_points(path), X, rtol=1e-15)


@pytest.mark.parametrize(
    "make,args,message",
    [
        (lambda p: p / "missing.npy", [], "no such file"),
        (lambda p: write(p / "a.npy", X), ["-e", "magic"], "unknown estimator 'magic'"),
        (lambda p: (p / "a.txt").write_text("1 2") and p / "a.txt", [], "unknown file type '.txt'"),
        (lambda p: write(p / "n.npy", np.full((10, 3), np.nan)), [], "contains NaN"),
        (lambda p: write(p / "one.npy", np.arange(10.0)), [], "must be a 2-D array"),
    ],
)
def test_errors_are_clear(tmp_path, make, args, message):
    result = runner.invoke(app, ["id", str(make(tmp_path)), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=X, b=X[:, :4])
    result = runner.invoke(app, ["id", str(path)])
    assert result.exit_code == 2 and "choose one with key" in result.output
    result = runner.invoke(app, ["id", str(path), "--key", "b", "-e", "pc_id", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["error"] >= 0  # the spread over bootstrap resamples (a count: often 0)


def test_non_numeric_columns_are_refused(tmp_path):
    path = tmp_path / "mixed.parquet"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "c"]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"columns \['label'\] are not numeric"):
        load_points(path)


def test_demo_runs_on_digits():
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "digits (1797 images x 64 pixels)" in result.stdout


def test_the_command_line_starts_without_torch_or_pandas():
    """`layerscope --help` answers at once: the heavy libraries load only in the commands that use them."""
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import layerscope.cli, sys; print([m for m in ('torch', 'pandas', 'numpy', 'sklearn') if m in "
            "sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
    from typer.testing import CliRunner

    from layerscope.cli import app, id_estimators

    help_text = " ".join(CliRunner().invoke(app, ["id", "--help"], env={"COLUMNS": "200"}).output.split())
    assert (
        f"Estimator(s) to run: {', '.join(id_estimators())} (default: all)" in help_text
    )  # the help's list is the registry's
