"""Run a paper's experiment, resumably, and write its findings and summary figures."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ..analysis.phases import THRESHOLD
from ..config import check_device_name
from ..measure import MeasureConfig
from ..report import make_report
from ..store.remote import location
from ..sweep import Resources, Trial, TrialState, run_trials
from .base import ROUNDS, Finding, frozen, protocol

SIZES = ("quick", "medium", "full")


def round_folder(out: str | Path, name: str, size: str, round: str = "exploratory") -> Path:
    """Where a size's runs go: ``OUT/NAME-SIZE``, the confirmatory round in ``OUT/NAME-SIZE-confirmatory``."""
    return Path(out) / (f"{name}-{size}" if round == "exploratory" else f"{name}-{size}-{round}")


def reproduce(
    name: str,
    size: str = "quick",
    out: str | Path = "runs",
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    on_progress: Callable[[list[TrialState]], None] | None = None,
    replace_changed: bool = False,
    round: str = "exploratory",
    measured: Sequence[MeasureConfig] = (),
    device: str | None = None,
    resources: Resources | None = None,
) -> Path:
    """Run every config of experiment ``name`` at ``size`` into ``out/NAME-SIZE`` and check its findings.

    The runs go through the sweep engine (:func:`layerscope.sweep.run_trials`): on a
    local Ray using every core (one CPU per run), or on the cluster at ``address``
    (``out`` must then be a folder every machine sees); without Ray installed, one
    after another in this process. Finished runs are kept, interrupted ones resumed,
    a run that fails is retried from its last checkpoint. A run folder that holds a
    run of another config (an earlier version's experiment) is refused
    (:class:`layerscope.sweep.TrialChangedError`), or with ``replace_changed`` moved
    into ``.replaced/`` and run again. Writes ``findings.md``, ``findings.json``,
    ``summary.png``, ``report.html`` and ``protocol.json`` (the hashes of the configs and
    the claims' rules, :func:`layerscope.experiments.base.protocol`) there.

    ``round`` (medium size only): ``exploratory`` (seeds 0-2, the default) or
    ``confirmatory`` (fresh seeds 3-5, into ``OUT/NAME-medium-confirmatory``), which
    runs only while the configs and rules are the frozen ones
    (``layerscope/experiments/frozen.json``): nothing tuned between the two rounds.

    ``device`` (``cuda``) replaces every run's device; ``resources`` is what one run
    takes of the cluster (``Resources(cpu=4, gpu=1)``; default one CPU).

    ``measured``: nets trained elsewhere, measured as trials of the same sweep
    (:func:`layerscope.experiments.ansuini2019.pretrained_configs`: the full size's
    pretrained ImageNet nets and their untrained twins); the findings include them.

    Raises
    ------
    RuntimeError
        A run kept failing (its error is named); the finished runs are kept.
    """
    from . import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if round not in ROUNDS:
        raise ValueError(f"round must be one of {', '.join(ROUNDS)}, got {round!r}")
    if round != "exploratory" and size != "medium":
        raise ValueError(f"a {round} round is of the medium size (its seeds), not of --size {size}")
    experiment = EXPERIMENTS[name]
    hashes = protocol(experiment, size)
    fixed = frozen().get(name) if size == "medium" else None
    if round == "confirmatory":
        if fixed is None:
            raise ValueError(f"{name}'s medium configs and rules are not frozen yet: no confirmatory round to run")
        changed = [what for what in ("configs", "rules") if fixed[what] != hashes[what]]
        if changed:
            raise ValueError(
                f"{name}'s medium {' and '.join(changed)} changed since they were frozen on {fixed['frozen_on']} "
                "(experiments/frozen.json): a confirmatory round runs what was frozen"
            )
    folder = round_folder(out, name, size, round)
    configs = experiment.configs(size, seeds=ROUNDS[round]) if size == "medium" else experiment.configs(size)
    configs = [*configs, *measured]
    if device is not None:
        check_device_name(device)
        configs = [c.model_copy(update={"device": device}) for c in configs]
    names = Counter(c.name for c in configs)
    if shared := sorted(run for run, count in names.items() if count > 1):
        raise ValueError("runs of the experiment share a name: " + ", ".join(shared))
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": name,
        "size": size,
        "round": round if size == "medium" else None,
        "seeds": sorted({c.seed for c in configs}),
        **hashes,
        "frozen": fixed,
        "matches_frozen": None if fixed is None else all(fixed[k] == hashes[k] for k in ("configs", "rules")),
    }
    (folder / "protocol.json").write_text(json.dumps(record, indent=2) + "\n")
    trials = [Trial(cfg.name, {"run": cfg.name}, cfg) for cfg in configs]
    states = run_trials(
        location(folder),
        trials,
        address=address,
        max_concurrent=max_concurrent,
        on_progress=on_progress,
        require_ray=False,
        replace_changed=replace_changed,
        resources=resources,
    )
    failed = [s for s in states if s.status == "failed"]
    if failed:
        raise RuntimeError(
            "runs failed (finished runs are kept; run the same command again to retry): "
            + "; ".join(f"{s.name}: {s.error}" for s in failed)
        )
    for cfg in configs:
        make_report(folder / cfg.name)
    findings = experiment.findings(folder)
    command = f"layerscope reproduce {name} --size {size}" + (f" --round {round}" if round != "exploratory" else "")
    write_findings(folder, experiment.paper, findings, command)
    experiment.summary(folder).savefig(folder / "summary.png", dpi=120)
    write_page(folder, experiment.paper, findings, [c.name for c in configs], command)
    return folder


def write_findings(folder: Path, paper: str, findings: list[Finding], command: str) -> None:
    (folder / "findings.md").write_text(
        f"# {paper}\n\nCommand: `{command}`\n\n{findings_table(findings)}\n\n{VERDICT_NOTE}\n"
    )
    (folder / "findings.json").write_text(json.dumps([f.to_dict() for f in findings], indent=2))


#: How to read the verdicts (under every findings table).
VERDICT_NOTE = (
    f"Verdicts: holds (the effect is beyond the smallest that counts, in the paper's direction, at Holm-adjusted "
    f"confidence >= {THRESHOLD} over this paper's findings), contradicted (short of it at that confidence), "
    "inconclusive (neither), not measurable. Each claim's effect, direction and smallest effect that counts are "
    "declared in code before any run (the rule column). Confidence: 1 - p of the claim's test; adjusted: after "
    "Holm's correction."
)


def findings_table(findings: list[Finding]) -> str:
    """The findings as a markdown table: claim, its rule, what was measured, verdict, raw and adjusted confidence."""
    lines = [
        "| finding | rule (declared before the runs) | measured | verdict | confidence it holds | adjusted (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {cell(f.claim)} | {cell(f.rule)} | {cell(f.measured)} | {verdict_text(f)} | {_number(f.confidence)} | "
        f"{_number(f.adjusted)} |"
        for f in findings
    ]
    return "\n".join(lines)


def cell(text: str) -> str:
    """Text for a markdown table's cell: its pipes (|log x|) escaped, so they do not split the row."""
    return text.replace("|", "\\|")


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def verdict_text(f: Finding) -> str:
    """ "holds (adjusted confidence 0.99, 3 seeds)", "contradicted (...)", "inconclusive", "not measurable"."""
    extra = []
    if f.verdict == "holds" and f.adjusted is not None:
        extra.append(f"adjusted confidence {f.adjusted:.3f}")
    if f.verdict == "contradicted" and f.adjusted_contradicted is not None:
        extra.append(f"adjusted confidence against {f.adjusted_contradicted:.3f}")
    extra += [f"{f.seeds} seeds"] if f.seeds else []
    return f"{f.verdict} ({', '.join(extra)})" if extra else f.verdict


def _protocol_html(folder: Path) -> str:
    """A medium round's seeds and the hashes of its configs and rules (protocol.json), as a paragraph."""
    path = folder / "protocol.json"
    if not path.exists():
        return ""
    p = json.loads(path.read_text())
    if p.get("round") is None:
        return ""
    frozen_note = (
        "not frozen"
        if p.get("frozen") is None
        else ("the frozen ones" if p.get("matches_frozen") else "NOT the frozen ones")
        + f" (experiments/frozen.json, {p['frozen']['frozen_on']})"
    )
    return (
        f"<p>Round: {html.escape(p['round'])}, seeds {', '.join(map(str, p['seeds']))}. Configs SHA-256 "
        f"<code>{p['configs'][:16]}</code>, rules <code>{p['rules'][:16]}</code>: {html.escape(frozen_note)}.</p>"
    )


def write_page(folder: Path, paper: str, findings: list[Finding], runs: list[str], command: str) -> Path:
    """``report.html``: the summary figure, the findings with verdicts, links to every run's report."""
    rows = "".join(
        f"<tr><td>{html.escape(f.claim)}</td><td>{html.escape(f.rule)}</td><td>{html.escape(f.measured)}</td><td "
        f"class='{f.verdict.replace(' ', '-')}'>{html.escape(verdict_text(f))}</td><td>{_number(f.confidence)}</td>"
        f"<td>{_number(f.adjusted)}</td></tr>"
        for f in findings
    )
    links = " ".join(f"<a href='{html.escape(r)}/report.html'>{html.escape(r)}</a>" for r in runs)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(paper)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}} img{{max-width:100%}}
td,th{{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}}
.holds{{color:#1a7f37}} .contradicted{{color:#b42318}} .inconclusive{{color:#8a6d00}}</style></head>
<body><h1>{html.escape(paper)}</h1><p>Command: <code>{html.escape(command)}</code></p>{_protocol_html(folder)}
<img src="summary.png" alt="summary figure"><h2>Findings</h2>
<table><tr><th>finding</th><th>rule (declared before the runs)</th><th>measured</th><th>verdict</th>
<th>confidence it holds</th><th>adjusted (Holm)</th></tr>{rows}</table><p>{html.escape(VERDICT_NOTE)}</p>
<h2>Runs</h2><p>{links}</p></body></html>
"""
    path = folder / "report.html"
    path.write_text(page)
    return path
