"""The report of a sweep: figures across its trials, read from the merged table and ``trials.parquet``."""

from __future__ import annotations

import html
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from .._plotting import layer_order, subplots
from ..store import load, load_runs, sweep_members

#: The axis that is averaged over (mean and spread), not compared.
SEED = "seed"
_SKIP = {"n_features"}  # a width, not a measurement that moves


def axes_of(table: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    """The sweep's axes that take more than one value, the seed axis left out."""
    fixed = {"run_id", "sweep", "status"}
    return [c for c in trials.columns if c not in fixed and c != SEED and trials[c].nunique() > 1]


def last_hidden(results: pd.DataFrame) -> str:
    """The last hidden layer: the last measured layer before the model's output (the output itself if it is the only
    one).
    """
    layers = [layer for layer in layer_order(results) if layer != "input"]
    if not layers:
        raise ValueError("the sweep's table has no layer measurements")
    return layers[-2] if len(layers) >= 2 else layers[-1]


def _split(results: pd.DataFrame, layer: str) -> str:
    splits = set(results[results.layer == layer].split)
    return "test" if "test" in splits else sorted(splits)[0]


def curve_metrics(results: pd.DataFrame, layer: str) -> list[str]:
    """What the over-training figure draws: test accuracy, then each metric measured on ``layer``."""
    model = [m for m in ("test_acc",) if m in set(results.metric)]
    geometry = sorted(set(results[results.layer == layer].metric) - _SKIP)
    return model + geometry


def _curves(results: pd.DataFrame, metric: str, layer: str, axis: str | None) -> pd.DataFrame:
    """Mean, standard deviation and count over trials (seeds, other axes) per axis value and step."""
    rows = results[(results.metric == metric) & (results.layer == ("" if metric == "test_acc" else layer))]
    if metric != "test_acc":
        rows = rows[rows.split == _split(results, layer)]
    key = [axis] if axis else []
    return rows.groupby([*key, "step"], dropna=False).value.agg(["mean", "std", "count"]).reset_index()


def figure_sweep_over_training(results: pd.DataFrame, axes: list[str], layer: str) -> Figure:
    """Each metric over training, one line per value of each axis: the mean over the other trials
    (seeds and other axes) with a band of one standard deviation."""
    metrics = curve_metrics(results, layer)
    rows = axes or [None]
    fig, grid = subplots(len(rows), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(rows)), squeeze=False)
    for i, axis in enumerate(rows):
        values = sorted(results[axis].dropna().unique(), key=_natural) if axis else [None]
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(values)))
        for j, metric in enumerate(metrics):
            ax = grid[i][j]
            curves = _curves(results, metric, layer, axis)
            for colour, value in zip(colours, values):
                c = curves if axis is None else curves[curves[axis] == value]
                n = int(c["count"].max()) if len(c) else 0
                ax.plot(
                    c.step,
                    c["mean"],
                    color=colour,
                    marker="o",
                    ms=2.5,
                    label=f"{value if axis else 'all trials'} (n={n})",
                )
                ax.fill_between(
                    c.step,
                    c["mean"] - c["std"].fillna(0),
                    c["mean"] + c["std"].fillna(0),
                    color=colour,
                    alpha=0.2,
                    lw=0,
                )
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlabel("training step (log)")
            where = "" if metric == "test_acc" else f", {layer} ({_split(results, layer)})"
            ax.set_title(f"{metric}{where}", fontsize=10)
            ax.grid(alpha=0.3)
        grid[i][0].set_ylabel(f"by {axis}" if axis else "all trials")
        grid[i][-1].legend(fontsize=7, title=axis or None, title_fontsize=7)
    fig.suptitle("mean over trials per axis value; band: one standard deviation over seeds and other axes", fontsize=9)
    fig.tight_layout()
    return fig


def final_table(results: pd.DataFrame, layer: str, metric: str = "twonn") -> pd.DataFrame:
    """One row per trial at its last checkpoint: test accuracy and ``metric`` of ``layer``, with errors."""
    rows = []
    split = _split(results, layer)
    for run, r in results.groupby("run_id"):
        last = r[r.step == r.step.max()]
        acc = last[(last.metric == "test_acc") & (last.layer == "")]
        geo = last[(last.metric == metric) & (last.layer == layer) & (last.split == split)]
        rows.append(
            {
                "run_id": run,
                "step": int(last.step.iloc[0]),
                "test_acc": float(acc.value.iloc[0]) if len(acc) else np.nan,
                "test_acc_error": float(acc.error.iloc[0]) if len(acc) else np.nan,
                metric: float(geo.value.iloc[0]) if len(geo) else np.nan,
                f"{metric}_error": float(geo.error.iloc[0]) if len(geo) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """Pearson's r with its 95% confidence interval (Fisher's z), or None with fewer than 4 trials or no spread."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    result = stats.pearsonr(x, y)
    interval = result.confidence_interval(0.95)
    return float(result.statistic), float(interval.low), float(interval.high)


def figure_id_vs_accuracy(
    final: pd.DataFrame, trials: pd.DataFrame, axes: list[str], layer: str, metric: str = "twonn"
) -> tuple[Figure, str]:
    """The last hidden layer's ID against test accuracy, one point per trial (with error bars), and the correlation."""
    fig, ax = subplots(figsize=(6.5, 4.8))
    data = final.merge(trials, on="run_id", how="left")
    colour_by = axes[0] if axes else None
    groups = data.groupby(colour_by) if colour_by else [("all trials", data)]
    colours = matplotlib.colormaps["tab10"](np.arange(10))
    for k, (value, g) in enumerate(groups):
        ax.errorbar(
            g[metric],
            g.test_acc,
            xerr=g[f"{metric}_error"].fillna(0),
            yerr=g.test_acc_error.fillna(0),
            fmt="o",
            ms=5,
            capsize=2,
            color=colours[k % 10],
            label=str(value),
        )
    r = correlation(data[metric].to_numpy(float), data.test_acc.to_numpy(float))
    text = (
        f"Pearson r = {r[0]:.2f} (95% CI {r[1]:.2f} to {r[2]:.2f}), {int(np.isfinite(data[metric]).sum())} trials"
        if r
        else "correlation not computed (fewer than 4 trials, or no spread)"
    )
    ax.set_xlabel(f"{metric} of {layer} at the last checkpoint")
    ax.set_ylabel("test accuracy at the last checkpoint")
    ax.set_title(text, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title=colour_by, title_fontsize=7)
    fig.tight_layout()
    return fig, text


def _natural(value: object) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _trials_html(final: pd.DataFrame, trials: pd.DataFrame, metric: str) -> str:
    data = trials.merge(final, on="run_id", how="left")
    axes = [c for c in trials.columns if c not in ("run_id", "sweep", "status")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["trial", *axes, "status", "step", "test acc", metric])

    def pm(v: float, e: float) -> str:
        return "-" if not np.isfinite(v) else (f"{v:.3f}" if not np.isfinite(e) else f"{v:.3f} &plusmn; {e:.3f}")

    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in ["run_id", *axes, "status"])
        + f"<td>{'-' if pd.isna(r['step']) else int(r['step'])}</td><td>{pm(r['test_acc'], r['test_acc_error'])}</td>"
        + f"<td>{pm(r[metric], r[metric + '_error'])}</td></tr>"
        for r in data.to_dict("records")
    )
    return f"<table class='results'><tr>{head}</tr>{body}</table>"


def make_sweep_report(folder: str | Path) -> Path:
    """Write ``report.html`` and its figures into a sweep's folder; return the HTML path.

    Raises
    ------
    ValueError
        The folder is not a sweep (no ``trials.parquet``) or no trial has results yet.
    """
    folder = Path(folder)
    if not (folder / "trials.parquet").is_file():
        raise ValueError(f"{folder} is not a sweep's folder (no trials.parquet)")
    trials = pd.read_parquet(folder / "trials.parquet")
    _, others = sweep_members(folder)
    if others:
        warnings.warn(
            f"{len(others)} run folder(s) in {folder} are not trials of its sweep's current grid (trials.parquet): "
            "left out of the report",
            stacklevel=2,
        )
    with warnings.catch_warnings():  # said once, above
        warnings.filterwarnings("ignore", message=".*not trials of its sweep's current grid")
        runs = load_runs(folder)
        if not runs.empty:  # the status now, not when trials.parquet was written
            trials = (
                trials.drop(columns="status")
                .merge(runs[["run_id", "status"]], on="run_id", how="left")
                .fillna({"status": "pending"})
            )
        try:
            results = load(folder)
        except FileNotFoundError:
            raise ValueError(f"no trial of {folder} has results yet: nothing to report") from None
    axes = axes_of(results, trials)
    layer = last_hidden(results)
    metric = (
        "twonn"
        if "twonn" in set(results[results.layer == layer].metric)
        else next(iter(curve_metrics(results, layer)[1:]), "twonn")
    )
    final = final_table(results, layer, metric)
    over = figure_sweep_over_training(results, axes, layer)
    over.savefig(folder / "sweep_over_training.png", dpi=110)
    scatter, correlation_text = figure_id_vs_accuracy(final, trials, axes, layer, metric)
    scatter.savefig(folder / "id_vs_accuracy.png", dpi=110)
    name = str(trials.sweep.iloc[0]) if "sweep" in trials and len(trials) else folder.name
    counts = trials.status.value_counts().to_dict()
    left_out = (
        (
            f"; {len(others)} other run folder(s) in this folder, not trials of the sweep's current grid, left out "
            f"({html.escape(', '.join(p.name for p in others[:5]))}{', ...' if len(others) > 5 else ''})"
        )
        if others
        else ""
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>layerscope sweep: {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}} img{{max-width:100%}}
table.results{{border-collapse:collapse;font-size:0.85em}}
table.results td,table.results th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style></head>
<body><h1>layerscope sweep {html.escape(name)}</h1>
<p>{len(trials)} trials ({", ".join(f"{v} {html.escape(str(k))}" for k, v in counts.items())}){left_out};
axes compared: {html.escape(", ".join(axes) or "none")};
averaged over: {html.escape(SEED if SEED in trials else "nothing (no seed axis)")}.
Last hidden layer: {html.escape(layer)}.
Each trial's own report: <code>layerscope report {html.escape(str(folder))}/TRIAL</code>.</p>
<h2>Over training, per axis value</h2><img src="sweep_over_training.png" alt="metrics over training per axis value">
<h2>Last hidden layer's {html.escape(metric)} against test accuracy</h2><p>{html.escape(correlation_text)}.</p>
<img src="id_vs_accuracy.png" alt="ID against accuracy">
<h2>Trials</h2>{_trials_html(final, trials, metric)}
</body></html>
"""
    path = folder / "report.html"
    path.write_text(page)
    return path
