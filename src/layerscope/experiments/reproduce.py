"""Run a paper's experiment, resumably, and write its findings and summary figures."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..report import make_report  # noqa: E402
from ..report.phases import LC_PATTERN, detect_phases  # noqa: E402
from ..runner import execute, resume  # noqa: E402
from ..store import RunStore, load  # noqa: E402
from .papers import EXPERIMENTS, Finding  # noqa: E402

SIZES = ("quick", "full")


def reproduce(
    name: str,
    size: str = "quick",
    out: str | Path = "runs",
    *,
    on_run: Callable[[str, int, int], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Run every config of experiment ``name`` at ``size`` into ``out/NAME-SIZE``; finished runs are kept,
    interrupted ones resumed. Writes ``findings.md``, ``findings.json``, ``summary.png`` and
    ``report.html`` there."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if size not in SIZES:
        raise ValueError(f"size must be 'quick' or 'full', got {size!r}")
    experiment = EXPERIMENTS[name]
    folder = Path(out) / f"{name}-{size}"
    configs = experiment.configs(size)
    for i, cfg in enumerate(configs):
        run_dir = folder / cfg.name
        if on_run is not None:
            on_run(cfg.name, i, len(configs))
        if (run_dir / "run.parquet").exists():
            if RunStore(run_dir).read_run()["status"] != "finished":
                resume(run_dir, progress=progress)
        else:
            execute(cfg, run_dir, progress=progress)
        make_report(run_dir)
    findings = experiment.findings(folder)
    write_findings(folder, experiment.paper, findings, f"layerscope reproduce {name} --size {size}")
    fig = SUMMARIES[name](folder)
    fig.savefig(folder / "summary.png", dpi=120)
    plt.close(fig)
    write_page(folder, experiment.paper, findings, [c.name for c in configs], f"layerscope reproduce {name} --size {size}")
    return folder


def write_findings(folder: Path, paper: str, findings: list[Finding], command: str) -> None:
    verdict = {True: "holds", False: "does not hold", None: "not measurable"}
    lines = [f"# {paper}", "", f"Command: `{command}`", "", "| finding | measured on this run | verdict |", "|---|---|---|"]
    lines += [f"| {f.claim} | {f.measured} | {verdict[f.holds]} |" for f in findings]
    (folder / "findings.md").write_text("\n".join(lines) + "\n")
    (folder / "findings.json").write_text(json.dumps([asdict(f) for f in findings], indent=2))


def write_page(folder: Path, paper: str, findings: list[Finding], runs: list[str], command: str) -> Path:
    """``report.html``: the summary figure, the findings with verdicts, links to every run's report."""
    verdict = {True: "holds", False: "does not hold", None: "not measurable"}
    rows = "".join(
        f"<tr><td>{html.escape(f.claim)}</td><td>{html.escape(f.measured)}</td><td class='{verdict[f.holds].replace(' ', '-')}'>{verdict[f.holds]}</td></tr>"
        for f in findings
    )
    links = " ".join(f"<a href='{html.escape(r)}/report.html'>{html.escape(r)}</a>" for r in runs)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(paper)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}} img{{max-width:100%}}
td,th{{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}} .holds{{color:#1a7f37}} .does-not-hold{{color:#b42318}}</style></head>
<body><h1>{html.escape(paper)}</h1><p>Command: <code>{html.escape(command)}</code></p>
<img src="summary.png" alt="summary figure"><h2>Findings</h2>
<table><tr><th>finding</th><th>measured on this run</th><th>verdict</th></tr>{rows}</table>
<h2>Runs</h2><p>{links}</p></body></html>
"""
    path = folder / "report.html"
    path.write_text(page)
    return path


def _runs(folder: Path) -> dict[str, object]:
    return {p.name: load(p) for p in sorted(folder.iterdir()) if (p / "run.parquet").exists()}


def _ansuini_summary(folder: Path) -> plt.Figure:
    runs = _runs(folder)
    layers = ["input", "pool1", "pool2", "relu3", "output"]
    fig, (ax_p, ax_acc, ax_pc) = plt.subplots(1, 3, figsize=(15, 4.2))
    depth = np.linspace(0, 1, len(layers))

    def profile(r, step, metric="twonn"):  # noqa: ANN001, ANN202
        rows = r[(r.metric == metric) & (r.step == step) & (r.split == "train")].set_index("layer").value
        return [rows[layer] for layer in layers]

    trained = runs["width-1.0"]
    last = int(trained.step.max())
    ax_p.plot(depth, profile(trained, last), "o-", label="trained")
    ax_p.plot(depth, profile(trained, 0), "s--", label="untrained")
    rl = runs["random-labels"]
    ax_p.plot(depth, profile(rl, int(rl.step.max())), "^:", label="random labels")
    ax_p.set_xticks(depth, layers)
    ax_p.set_xlabel("layer (relative depth)")
    ax_p.set_ylabel("TwoNN intrinsic dimension")
    ax_p.set_title("ID across depth (Ansuini et al. Fig. 2)")
    ax_p.legend()
    for name, r in runs.items():
        if name.startswith("width-"):
            s = int(r.step.max())
            ax_acc.scatter(r[(r.metric == "twonn") & (r.layer == "relu3") & (r.step == s) & (r.split == "train")].value,
                           r[(r.metric == "test_acc") & (r.step == s)].value, s=50)
            ax_acc.annotate(name, (float(r[(r.metric == "twonn") & (r.layer == "relu3") & (r.step == s) & (r.split == "train")].value.iloc[0]),
                                   float(r[(r.metric == "test_acc") & (r.step == s)].value.iloc[0])), fontsize=8)
    ax_acc.set_xlabel("last hidden layer ID")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("last hidden layer ID against accuracy (Fig. 4)")
    ax_pc.plot(depth, profile(trained, last, "pc_id"), "o-", label="PC-ID trained")
    ax_pc.plot(depth, profile(trained, 0, "pc_id"), "s--", label="PC-ID untrained")
    ax_pc.plot(depth, profile(trained, last), "o-", label="TwoNN trained")
    ax_pc.plot(depth, profile(trained, 0), "s--", label="TwoNN untrained")
    ax_pc.set_yscale("log")
    ax_pc.set_xticks(depth, layers)
    ax_pc.set_title("PC-ID (90% variance) against TwoNN (Fig. 6)")
    ax_pc.legend(fontsize=8)
    for ax in (ax_p, ax_acc, ax_pc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _tan_summary(folder: Path) -> plt.Figure:
    runs = _runs(folder)
    fig, (ax_id, ax_csr, ax_ar) = plt.subplots(1, 3, figsize=(15, 4.2))
    layer = "relu3" if "relu3" in set(next(iter(runs.values())).layer) else "layer4"
    for name, r in runs.items():
        c = r[(r.metric == "twonn") & (r.layer == layer) & (r.split == "train")].sort_values("step")
        ax_id.plot(c.step, c.value, "o-", ms=3, label=name)
        c = r[(r.metric == "csr") & (r.layer == "")].sort_values("step")
        ax_csr.plot(c.step, c.value, "o-", ms=3, label=name)
        last = int(r.step.max())
        a = r[(r.metric == "alpha") & (r.layer == layer) & (r.step == last) & (r.split == "test")].value
        b = r[(r.metric == "robust_acc") & (r.step == last)].value
        if len(a) and len(b):
            ax_ar.scatter(a, b, s=50)
            ax_ar.annotate(name, (float(a.iloc[0]), float(b.iloc[0])), fontsize=8)
    for ax, title, ylabel in ((ax_id, f"ID of {layer} over training", "TwoNN ID"), (ax_csr, "critical sample ratio over training", "CSR")):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
    ax_ar.set_xlabel(f"alpha of {layer} at the end")
    ax_ar.set_ylabel("robust accuracy (PGD) at the end")
    ax_ar.set_title("spectrum exponent against robustness")
    for ax in (ax_id, ax_csr, ax_ar):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _humayun_summary(folder: Path) -> plt.Figure:
    runs = _runs(folder)
    fig, axes = plt.subplots(1, len(runs), figsize=(7.5 * len(runs), 4.4), squeeze=False)
    for ax, (name, r) in zip(axes[0], runs.items()):
        for split in ("train", "test", "random"):
            c = r[(r.metric == "lc") & (r.layer == "") & (r.split == split)].sort_values("step")
            ax.plot(c.step, c.value, "o-", ms=2, label=f"LC, {split} points")
        train_lc = r[(r.metric == "lc") & (r.layer == "") & (r.split == "train")].sort_values("step")
        try:
            for phase in detect_phases(train_lc.step, train_lc.value, LC_PATTERN)[1:]:
                ax.axvline(phase.start_step, color="0.5", ls=":", lw=1)
        except ValueError:
            pass
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("training step")
        ax.set_ylabel("local complexity (neurons)")
        twin = ax.twinx()
        for metric, style in (("train_acc", "k-"), ("test_acc", "k--"), ("robust_acc", "r-.")):
            c = r[(r.metric == metric) & (r.layer == "")].sort_values("step")
            twin.plot(c.step, c.value, style, lw=1.2, label=metric)
        twin.set_ylim(0, 1.02)
        twin.set_ylabel("accuracy")
        ax.set_title(f"{name}: LC and accuracy over training (dotted: phase changes)")
        ax.legend(loc="upper left", fontsize=7)
        twin.legend(loc="lower right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


SUMMARIES = {"ansuini2019": _ansuini_summary, "tan2024": _tan_summary, "humayun2024": _humayun_summary}
