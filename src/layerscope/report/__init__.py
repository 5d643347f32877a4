"""Figures and an HTML report of one run, read from its results table."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._plotting import subplots
from ..analysis.phases import PHASES_SCHEMA, THRESHOLD, phase_rows
from ..probes import registry as _registry  # noqa: F401 - registers the built-in probes' figures
from ..results import FIGURES
from ..store import RunStore

_SPLIT_STYLE = {"train": "-", "test": "--"}


def layer_order(results: pd.DataFrame) -> list[str]:
    """Layers in model order (as first written), the input first."""
    geometry = results[results.layer != ""]
    return list(dict.fromkeys(geometry.sort_values("step", kind="stable").layer))


def _pivot(results: pd.DataFrame, metric: str, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = results[(results.metric == metric) & (results.split == split) & (results.layer != "")]
    value = rows.pivot_table(index="step", columns="layer", values="value")
    error = rows.pivot_table(index="step", columns="layer", values="error", dropna=False)
    return value, error


def _step_axis(ax: Axes) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step (0 = initialisation; log scale)")


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
            ax.errorbar(depth, value.loc[step, present], yerr=error.reindex(columns=present).loc[step].fillna(0), color=colour,
                        marker="o", ms=3, capsize=2, lw=1.2, label=f"step {step}")
        ax.set_xticks(depth, present, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("layer (relative depth, input to output)")
        ax.set_title(f"{metric} across layers, {split} inputs")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (intrinsic dimension)")
    axes[0][-1].legend(fontsize=7, ncol=2, title="checkpoint", title_fontsize=8)
    fig.tight_layout()
    return fig


def figure_over_training(results: pd.DataFrame, metric: str = "twonn", ylabel: str | None = None, phases: pd.DataFrame | None = None) -> Figure:
    """Each layer's value of ``metric`` over training, log steps, train and test inputs; detected
    turning points (calibrated confidence >= THRESHOLD) marked with a cross and their 90% interval."""
    layers = layer_order(results)
    fig, ax = subplots(figsize=(7.5, 4.5))
    colours = dict(zip(layers, matplotlib.colormaps["tab10"](np.arange(len(layers)) % 10)))
    for split in sorted(results[results.metric == metric].split.unique()):
        value, error = _pivot(results, metric, split)
        for layer in [layer for layer in layers if layer in value.columns]:
            ax.errorbar(value.index, value[layer], yerr=error.reindex(columns=[layer])[layer].fillna(0), ls=_SPLIT_STYLE.get(split, "-"),
                        color=colours[layer], marker="o", ms=3, capsize=2, label=f"{layer} ({split})")
    if phases is not None and len(phases):
        mine = phases[phases.curve == metric]
        turns = mine[(mine.position > 0) & (mine.layer != "")]
        for row in turns.itertuples():
            curve = results[(results.metric == metric) & (results.layer == row.layer) & (results.split == row.split) & (results.step == row.start_step)]
            if len(curve) and row.confidence >= THRESHOLD:  # the turn, with its 90% interval
                at = curve.value.iloc[0]
                ax.errorbar(row.start_step, at, xerr=[[row.start_step - row.start_low], [row.start_high - row.start_step]], fmt="kx", ms=9, mew=2, capsize=3)
    _step_axis(ax)
    ax.set_ylabel(ylabel or metric)
    ax.set_title(f"{metric} of each layer over training (solid: train inputs, dashed: test inputs; x: detected turn)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def figure_pcid_vs_twonn(results: pd.DataFrame) -> Figure:
    """PC-ID beside TwoNN across layers, at initialisation and at the end of training."""
    layers = layer_order(results)
    steps = sorted(results.step.unique())
    measured = set(results[results.metric.isin(["twonn", "pc_id"]) & (results.layer != "")].split)  # not the accuracy rows' splits
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
                ax.plot(rows.step, rows.value, ls=_SPLIT_STYLE[split], marker="o", ms=3, label=split)
    for ax, label in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        _step_axis(ax)
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


def figure_local_complexity(results: pd.DataFrame, phases: pd.DataFrame | None = None) -> Figure:
    """LC summed over layers per split, and each layer's normalised LC, over training; phase changes dotted."""
    lc = results[results.metric == "lc"]
    fig, (ax_total, ax_layers) = subplots(1, 2, figsize=(11, 4))
    if phases is not None:
        changes = phases[(phases.curve == "lc") & (phases.layer == "") & (phases.split == "train") & (phases.position > 0)]
        for row in changes[changes.confidence >= THRESHOLD].itertuples():
            ax_total.axvline(row.start_step, color="0.4", ls=":", lw=1)
            ax_total.axvspan(row.start_low, row.start_high, color="0.5", alpha=0.12, lw=0)
    for split in sorted(lc.split.unique()):
        rows = lc[(lc.split == split) & (lc.layer == "")].sort_values("step")
        ax_total.plot(rows.step, rows.value, marker="o", ms=3, label=f"{split} points")
    ax_total.set_ylabel("LC, summed over layers (neurons)")
    ax_total.set_title("local complexity over training")
    norm = results[(results.metric == "lc_norm") & (results.layer != "")]
    split = "test" if "test" in set(norm.split) else sorted(norm.split.unique())[0]
    for layer in list(dict.fromkeys(norm[norm.split == split].layer)):
        rows = norm[(norm.split == split) & (norm.layer == layer)].sort_values("step")
        ax_layers.plot(rows.step, rows.value, marker="o", ms=3, label=layer)
    ax_layers.set_ylabel("LC per neuron of the layer")
    ax_layers.set_title(f"per layer, {split} points")
    for ax in (ax_total, ax_layers):
        _step_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_model_metrics(results: pd.DataFrame, metrics: list[str], labels: dict[str, str]) -> Figure:
    """Model-level metrics (CSR, robust accuracy, ...) over training, one panel each."""
    fig, axes = subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = results[(results.metric == metric) & (results.layer == "")]
        for split in sorted(rows.split.unique()):
            r = rows[rows.split == split].sort_values("step")
            ax.plot(r.step, r.value, ls=_SPLIT_STYLE.get(split, "-"), marker="o", ms=3, label=f"{split} inputs")
        _step_axis(ax)
        ax.set_ylabel(labels.get(metric, metric))
        ax.set_title(f"{labels.get(metric, metric)} over training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_alpha_vs_robustness(results: pd.DataFrame) -> Figure:
    """alpha of the last hidden layer against robust accuracy, one point per checkpoint."""
    layers = [layer for layer in layer_order(results) if layer not in ("input", "output")]
    alpha = results[(results.metric == "alpha") & results.layer.isin(layers)]
    layer = [layer for layer in layers if layer in set(alpha.layer)][-1]
    split = "test" if "test" in set(alpha.split) else sorted(alpha.split.unique())[0]
    a = alpha[(alpha.layer == layer) & (alpha.split == split)].set_index("step").value
    robust = results[(results.metric == "robust_acc") & (results.layer == "")]
    r = robust[robust.split == (split if split in set(robust.split) else robust.split.iloc[0])].set_index("step").value
    steps = a.index.intersection(r.index)
    fig, ax = subplots(figsize=(5.5, 4.2))
    points = ax.scatter(a[steps], r[steps], c=np.log10(np.asarray(steps) + 1), cmap="viridis", s=40)
    ax.annotate("end", (a[steps[-1]], r[steps[-1]]), textcoords="offset points", xytext=(5, 5))
    fig.colorbar(points, ax=ax, label="log10(step + 1)")
    ax.set_xlabel(f"alpha of {layer} ({split} inputs)")
    ax.set_ylabel("robust accuracy")
    ax.set_title("spectrum exponent against robustness")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


#: How each kind of :class:`~layerscope.results.FigureSpec` is drawn: ``draw(results, spec, phases)``.
_DRAW = {
    "over_training": lambda results, spec, phases: figure_model_metrics(results, list(spec.metrics), {}),
    "local_complexity": lambda results, spec, phases: figure_local_complexity(results, phases),
    "alpha_vs_robustness": lambda results, spec, phases: figure_alpha_vs_robustness(results),
}


def _phase_table(phases: pd.DataFrame) -> str:
    if phases.empty:
        return "<p>No curve had enough checkpoints, or a fit of the papers' patterns.</p>"
    table = phases.assign(interval=[f"{a}-{b}" if i else "" for a, b, i in zip(phases.start_low, phases.start_high, phases.position)])
    table = table[["split", "layer", "curve", "phase", "start_step", "interval", "end_step", "confidence"]]
    table = table.rename(columns={"start_step": "from step", "interval": "90% interval of the turn", "end_step": "to step",
                                  "confidence": f"confidence (pattern holds at >= {THRESHOLD})"})
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
    phases = phase_rows(results)
    store.write_derived("phases", phases, PHASES_SCHEMA)
    figures: list[tuple[str, str, Figure]] = []
    metrics = set(results.metric)
    if "twonn" in metrics:
        figures.append(("profile.png", "Intrinsic dimension across layers at each checkpoint", figure_profile(results, "twonn")))
        figures.append(("twonn_over_training.png", "Intrinsic dimension of each layer over training", figure_over_training(results, "twonn", "TwoNN intrinsic dimension", phases)))
    if {"twonn", "pc_id"} <= metrics:
        figures.append(("pcid_vs_twonn.png", "PC-ID next to TwoNN", figure_pcid_vs_twonn(results)))
    if "alpha" in metrics:
        figures.append(("alpha_over_training.png", "Power-law exponent of the spectrum over training", figure_over_training(results, "alpha", "alpha (spectrum power law)")))
    if metrics & {"train_acc", "test_acc"}:
        figures.append(("accuracy.png", "Accuracy and loss", figure_accuracy(results)))
    pictures = []
    for spec in FIGURES:  # the figures that registered probes declare for their metrics
        if not set(spec.metrics) <= metrics:
            continue
        if spec.kind == "pictures":
            pictures.append(spec)
        else:
            figures.append((spec.filename, spec.title, _DRAW[spec.kind](results, spec, phases)))
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
table.results{{border-collapse:collapse;font-size:0.85em}} table.results td,table.results th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}
pre{{background:#f6f6f6;padding:1em;font-size:0.8em;overflow-x:auto}}</style></head>
<body><h1>layerscope run {html.escape(str(info.run_id))}</h1>
<p>Status: {html.escape(str(info.status))}; started {html.escape(str(info.start_time))}, ended {html.escape(str(info.end_time))};
{len(sorted(results.step.unique()))} checkpoints, {len(results)} rows.</p>
{''.join(body)}
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
