"""Figures and an HTML report of one run, read from its results table."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._plotting import SPLIT_STYLE, layer_order, step_axis, subplots
from ..analysis.phases import PHASES_SCHEMA, THRESHOLD, phase_rows
from ..probes.registry import figures as probe_figures
from ..store import RunStore


def _pivot(results: pd.DataFrame, metric: str, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = results[(results.metric == metric) & (results.split == split) & (results.layer != "")]
    value = rows.pivot_table(index="step", columns="layer", values="value")
    error = rows.pivot_table(index="step", columns="layer", values="error", dropna=False)
    return value, error


def figure_profile(results: pd.DataFrame, metric: str = "twonn") -> Figure:
    """The ID across depth at every checkpoint (Ansuini et al.'s 'hunchback'), one panel per split."""
    layers = layer_order(results)
    splits = sorted(results[results.metric == metric].split.unique())
    fig, axes = subplots(1, len(splits), figsize=(6 * len(splits), 4.2), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        value, error = _pivot(results, metric, split)
        present = [layer for layer in layers if layer in value.columns]
        depth = np.linspace(0, 1, len(present))
        colours = matplotlib.colormaps["viridis"](np.linspace(0, 1, len(value.index)))
        for colour, step in zip(colours, value.index):
            ax.errorbar(
                depth,
                value.loc[step, present],
                yerr=error.reindex(columns=present).loc[step].fillna(0),
                color=colour,
                marker="o",
                ms=3,
                capsize=2,
                lw=1.2,
                label=f"step {step}",
            )
        ax.set_xticks(depth, present, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("layer (relative depth, input to output)")
        ax.set_title(f"{metric} across layers, {split} inputs")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (intrinsic dimension)")
    axes[0][-1].legend(fontsize=7, ncol=2, title="checkpoint", title_fontsize=8)
    fig.tight_layout()
    return fig


def figure_over_training(
    results: pd.DataFrame, metric: str = "twonn", ylabel: str | None = None, phases: pd.DataFrame | None = None
) -> Figure:
    """Each layer's value of ``metric`` over training, log steps, train and test inputs; detected
    turning points (calibrated confidence >= THRESHOLD) marked with a cross and their 90% interval."""
    layers = layer_order(results)
    fig, ax = subplots(figsize=(7.5, 4.5))
    colours = dict(zip(layers, matplotlib.colormaps["tab10"](np.arange(len(layers)) % 10)))
    for split in sorted(results[results.metric == metric].split.unique()):
        value, error = _pivot(results, metric, split)
        for layer in [layer for layer in layers if layer in value.columns]:
            ax.errorbar(
                value.index,
                value[layer],
                yerr=error.reindex(columns=[layer])[layer].fillna(0),
                ls=SPLIT_STYLE.get(split, "-"),
                color=colours[layer],
                marker="o",
                ms=3,
                capsize=2,
                label=f"{layer} ({split})",
            )
    if phases is not None and len(phases):
        mine = phases[phases.curve == metric]
        turns = mine[(mine.position > 0) & (mine.layer != "")]
        for row in turns.itertuples():
            curve = results[
                (results.metric == metric)
                & (results.layer == row.layer)
                & (results.split == row.split)
                & (results.step == row.start_step)
            ]
            if len(curve) and row.confidence >= THRESHOLD:  # the turn, with its 90% interval
                at = curve.value.iloc[0]
                ax.errorbar(
                    row.start_step,
                    at,
                    xerr=[[row.start_step - row.start_low], [row.start_high - row.start_step]],
                    fmt="kx",
                    ms=9,
                    mew=2,
                    capsize=3,
                )
    step_axis(ax)
    ax.set_ylabel(ylabel or metric)
    splits = sorted(results[results.metric == metric].split.unique())
    styles = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dotted"}
    key = ", ".join(f"{styles.get(SPLIT_STYLE.get(sp, '-'), 'solid')}: {sp} inputs" for sp in splits)
    ax.set_title(f"{metric} of each layer over training ({key}; x: detected turn)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def figure_pcid_vs_twonn(results: pd.DataFrame) -> Figure:
    """PC-ID beside TwoNN across layers, at initialisation and at the end of training."""
    layers = layer_order(results)
    steps = sorted(results.step.unique())
    measured = set(
        results[results.metric.isin(["twonn", "pc_id"]) & (results.layer != "")].split
    )  # not the accuracy rows' splits
    split = "test" if "test" in measured else sorted(measured)[0]
    fig, ax = subplots(figsize=(7.5, 4.5))
    for metric, marker in (("twonn", "o"), ("pc_id", "s")):
        value, _ = _pivot(results, metric, split)
        present = [layer for layer in layers if layer in value.columns]
        for step, ls in ((steps[0], ":"), (steps[-1], "-")):
            if step in value.index:
                ax.plot(present, value.loc[step, present], marker=marker, ls=ls, label=f"{metric}, step {step}")
    ax.set_yscale("log")
    ax.set_ylabel("dimension (log scale)")
    ax.set_xlabel("layer")
    ax.set_title(f"PC-ID (90% variance) against TwoNN, {split} inputs")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_accuracy(results: pd.DataFrame) -> Figure:
    """Train and test accuracy and loss over training."""
    fig, (ax_acc, ax_loss) = subplots(1, 2, figsize=(10, 3.8))
    model_rows = results[results.layer == ""]
    for split in ("train", "test"):
        for ax, name in ((ax_acc, f"{split}_acc"), (ax_loss, f"{split}_loss")):
            rows = model_rows[model_rows.metric == name].sort_values("step")
            if len(rows):
                ax.plot(rows.step, rows.value, ls=SPLIT_STYLE[split], marker="o", ms=3, label=split)
    for ax, label in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        step_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:  # a run from a loop of the user's that stored no such metric
            ax.text(0.5, 0.5, f"no {label} stored", transform=ax.transAxes, ha="center", va="center", color="0.5")
    ax_acc.set_title("accuracy")
    ax_loss.set_title("loss")
    fig.tight_layout()
    return fig


def _phase_table(phases: pd.DataFrame) -> str:
    if phases.empty:
        return "<p>No curve had enough checkpoints, or a fit of the papers' patterns.</p>"
    table = phases.assign(
        interval=[f"{a}-{b}" if i else "" for a, b, i in zip(phases.start_low, phases.start_high, phases.position)]
    )
    columns = [
        "split",
        "layer",
        "curve",
        "phase",
        "start_step",
        "interval",
        "end_step",
        "phase_confidence",
        "confidence",
        "chi2_dof",
        "errors",
    ]
    table = table[[c for c in columns if c in table]]  # phases derived before phase confidences existed have none
    table = table.rename(
        columns={
            "start_step": "from step",
            "interval": "90% interval of the turn",
            "end_step": "to step",
            "phase_confidence": "this phase's confidence",
            "confidence": f"pattern's confidence: its weakest phase's (holds at >= {THRESHOLD})",
            "chi2_dof": "best fit's chi2/dof (above 1: tests widened by it)",
            "errors": "weighted by",
        }
    )
    return table.to_html(index=False, float_format=lambda v: f"{v:.2f}", border=0, classes="results")


def _final_table(results: pd.DataFrame) -> str:
    last = results[results.step == results.step.max()]
    geometry = last[last.layer != ""]
    table = geometry.pivot_table(index=["split", "layer"], columns="metric", values="value")
    order = {layer: i for i, layer in enumerate(layer_order(results))}
    table = table.reset_index().sort_values(["split", "layer"], key=lambda c: c.map(order) if c.name == "layer" else c)
    return table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, classes="results")


def make_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` and its PNG figures into the run folder; return the HTML path."""
    store = RunStore(run_dir)
    info = store.read_run()
    results = store.results()
    if results.empty:
        raise ValueError(f"{run_dir} has no results yet: nothing to report")
    out = Path(run_dir)
    phases = phase_rows(results, store.replicates())
    store.write_derived("phases", phases, PHASES_SCHEMA)
    figures: list[tuple[str, str, Figure]] = []
    metrics = set(results.metric)
    if "twonn" in metrics:
        figures.append(
            ("profile.png", "Intrinsic dimension across layers at each checkpoint", figure_profile(results, "twonn"))
        )
        figures.append(
            (
                "twonn_over_training.png",
                "Intrinsic dimension of each layer over training",
                figure_over_training(results, "twonn", "TwoNN intrinsic dimension", phases),
            )
        )
    if {"twonn", "pc_id"} <= metrics:
        figures.append(("pcid_vs_twonn.png", "PC-ID next to TwoNN", figure_pcid_vs_twonn(results)))
    if "alpha" in metrics:
        figures.append(
            (
                "alpha_over_training.png",
                "Power-law exponent of the spectrum over training",
                figure_over_training(results, "alpha", "alpha (spectrum power law)"),
            )
        )
    if metrics & {"train_acc", "test_acc"}:
        figures.append(("accuracy.png", "Accuracy and loss", figure_accuracy(results)))
    pictures = []
    for spec in probe_figures():  # the figures the probes declare for their metrics, each with its own drawing
        if not set(spec.metrics) <= metrics:
            continue
        if spec.draw is None:
            pictures.append(spec)
        else:
            figures.append((spec.filename, spec.title, spec.draw(results, phases)))
    body = []
    for filename, title, fig in figures:
        fig.savefig(out / filename, dpi=120)
        body.append(f"<h2>{html.escape(title)}</h2>\n<img src='{filename}' alt='{html.escape(title)}'>")
    for spec in pictures:
        files = sorted((out / spec.folder).glob("step-*.png"))
        if files:
            chosen = [files[i] for i in sorted({round(i) for i in np.linspace(0, len(files) - 1, min(6, len(files)))})]
            tiles = "".join(f"<img src='{spec.folder}/{f.name}' style='width:32%'>" for f in chosen)
            body.append(f"<h2>{html.escape(spec.title)}</h2>\n<div>{tiles}</div>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>layerscope: {html.escape(str(info.run_id))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}} img{{max-width:100%}}
table.results{{border-collapse:collapse;font-size:0.85em}}
table.results td,table.results th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}
pre{{background:#f6f6f6;padding:1em;font-size:0.8em;overflow-x:auto}}</style></head>
<body><h1>layerscope run {html.escape(str(info.run_id))}</h1>
<p>Status: {html.escape(str(info.status))}; started {html.escape(str(info.start_time))},
ended {html.escape(str(info.end_time))};
{len(sorted(results.step.unique()))} checkpoints, {len(results)} rows.</p>
{"".join(body)}
<h2>Detected phases</h2>
{_phase_table(phases)}
<h2>Values at the last checkpoint (step {int(results.step.max())})</h2>
{_final_table(results)}
<h2>Config</h2><pre>{html.escape(json.dumps(info.config, indent=2))}</pre>
<h2>Versions</h2><pre>{html.escape(json.dumps(info.versions, indent=2))} git {html.escape(str(info.git_revision))}</pre>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
