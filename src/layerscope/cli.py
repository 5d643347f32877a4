"""The ``layerscope`` command line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .estimators import ESTIMATORS, Estimate

app = typer.Typer(help="Geometry of neural network representations.", no_args_is_help=True, add_completion=False)
console = Console()

#: Estimators whose value is an intrinsic dimension (all but the power-law exponent).
ID_ESTIMATORS = [name for name in ESTIMATORS if name != "alpha"]


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _estimate_all(X: object, names: list[str], device: str | None) -> list[Estimate]:
    results = []
    for name in names:
        cls = ESTIMATORS[name]
        params = {"device": device} if device and "device" in inspect.signature(cls).parameters else {}
        results.append(cls(**params).fit(X).estimate_)
    return results


def _print_table(results: list[Estimate], title: str) -> None:
    table = Table(title=title)
    table.add_column("estimator")
    table.add_column("dimension", justify="right")
    table.add_column("error", justify="right")
    table.add_column("points", justify="right")
    for r in results:
        table.add_row(r.estimator, f"{r.value:.3f}", "-" if r.error is None else f"{r.error:.3f}", str(r.n_points))
    console.print(table)


@app.command("id")
def id_command(
    path: Annotated[Path, typer.Argument(help="Point cloud: .npy, .npz, .csv or .parquet, one row per point.")],
    estimator: Annotated[
        list[str] | None, typer.Option("--estimator", "-e", help=f"Estimator(s) to run: {', '.join(ID_ESTIMATORS)}.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array name inside an .npz file.")] = None,
    device: Annotated[str | None, typer.Option(help="Device for neighbour searches (cpu, cuda).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: a list of {estimator, dimension, error}.")] = False,
) -> None:
    """Estimate the intrinsic dimension of a point cloud stored in a file."""
    from .data.files import load_points

    names = estimator or ID_ESTIMATORS
    unknown = [n for n in names if n not in ID_ESTIMATORS]
    if unknown:
        _fail(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ID_ESTIMATORS)}")
    try:
        X = load_points(path, key=key)
        results = _estimate_all(X, names, device)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    if as_json:
        print(json.dumps([{"estimator": r.estimator, "dimension": r.value, "error": r.error} for r in results]))
    else:
        _print_table(results, f"{path.name} ({X.shape[0]} points x {X.shape[1]} features)")


@app.command()
def demo() -> None:
    """Estimate the intrinsic dimension of a real data set bundled with scikit-learn (8x8 digits)."""
    from sklearn.datasets import load_digits

    X = load_digits().data
    results = _estimate_all(X, ID_ESTIMATORS, None)
    _print_table(results, f"scikit-learn digits ({X.shape[0]} images x {X.shape[1]} pixels)")
    console.print(
        "TwoNN, MLE and GRIDE measure the local dimension of the data manifold; PC-ID (90% variance) and "
        "the participation ratio measure its linear extent, which is larger for a curved manifold."
    )


if __name__ == "__main__":  # pragma: no cover
    app()
