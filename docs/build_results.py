"""Assemble docs/results.md from the quick and medium reproductions of the three papers.

    for name in ansuini2019 tan2024 humayun2024; do
        layerscope reproduce $name --size quick --out runs
        layerscope reproduce $name --size medium --out runs
        layerscope reproduce $name --size medium --round confirmatory --out runs  # where frozen
    done
    python docs/build_results.py runs

The findings and the summary figures are computed from the runs by the paper
modules of layerscope.experiments (so the page shows what the current code
concludes from them; figures go to docs/figures/); the hand-written
notes of docs/results_notes.md go between the tables (``<!-- experiment: NAME -->``
after a paper's quick section, ``<!-- medium: NAME -->`` after its medium section, ``<!-- confirmatory: NAME -->``
after its confirmatory round).
The wall time of a size is its runs' first start to last end (run.parquet).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd

from layerscope.experiments import EXPERIMENTS
from layerscope.experiments.base import ROUNDS, frozen
from layerscope.experiments.reproduce import cell, findings_table, round_folder, verdict_text
from layerscope.store import RunStore, find_runs

HERE = Path(__file__).parent
FULL_STATUS = "not run"


def wall_minutes(folder: Path) -> float:
    runs = [RunStore(r).read_run() for r in find_runs(folder)]
    start = min(pd.Timestamp(r.start_time) for r in runs)
    end = max(pd.Timestamp(r.end_time) for r in runs)
    return (end - start).total_seconds() / 60


def quick_match(claim: str, quick: list) -> object | None:
    """The quick finding a medium finding refines: the quick claim (without its final period and
    parenthesis) that the medium one contains, the longest if several do."""
    matches = [f for f in quick if f.claim.rstrip(".").rstrip(")") in claim]
    return max(matches, key=lambda f: len(f.claim)) if matches else None


def section(name: str, size: str, folder: Path, round: str = "exploratory") -> tuple[list[str], list]:
    experiment = EXPERIMENTS[name]
    findings = experiment.findings(folder)
    tag = size if round == "exploratory" or size != "medium" else f"{size}-{round}"
    figure = f"{name}-{tag}.png"
    experiment.summary(folder).savefig(HERE / "figures" / figure, dpi=100)  # drawn by the current code
    minutes = wall_minutes(folder)
    n_runs = len(find_runs(folder))
    seeds = ", ".join(map(str, ROUNDS[round]))
    title = f"### {size} size" + (f", {round} round (seeds {seeds})" if size == "medium" else "")
    flag = f" --round {round}" if round != "exploratory" else ""
    lines = [
        title,
        "",
        f"Command: `layerscope reproduce {name} --size {size}{flag}` ({n_runs} runs, "
        f"{minutes:.1f} minutes from the first run's start to the last one's end)",
        "",
        *protocol_lines(folder),
        f"![{name} {size} runs](figures/{figure})",
        "",
        findings_table(findings),
        "",
    ]
    return lines, findings


def protocol_lines(folder: Path) -> list[str]:
    """A medium round's configs' and rules' hashes as stored with its runs (protocol.json), and whether they are
    the frozen ones (experiments/frozen.json: frozen after the exploratory round, so that round's hashes are
    compared with the freeze that followed it)."""
    path = folder / "protocol.json"
    if not path.exists():
        return []
    p = json.loads(path.read_text())
    if p.get("size") != "medium":
        return []
    fixed = frozen().get(p["experiment"])
    if fixed is None:
        state = "not frozen"
    else:
        same = fixed["configs"] == p["configs"] and fixed["rules"] == p["rules"]
        when = "frozen after this round" if p["round"] == "exploratory" else "frozen"
        state = f"{when} on {fixed['frozen_on']}: {'the same hashes' if same else 'NOT the frozen hashes'}"
    return [
        f"Protocol (SHA-256, `protocol.json`): configs `{p['configs'][:16]}`, rules `{p['rules'][:16]}` ({state}).",
        "",
    ]


def agreement(a: object | None, b: object | None) -> str:
    """Whether two rounds' verdicts on a finding agree."""
    if a is None or b is None:
        return "-"
    return "agree" if a.verdict == b.verdict else "**disagree**"


def context(name: str, claim: str) -> tuple[str, str]:
    """What the paper reports and our control, for a finding (the module's CONTEXT, matched by the claim's text)."""
    import importlib

    module = importlib.import_module(f"layerscope.experiments.{name}")
    for template, (reported, control) in getattr(module, "CONTEXT", {}).items():
        if template.text.split("{")[0].rstrip(".") in claim:
            return reported, control
    return "-", "-"


def rounds_table(name: str, exploratory: list, confirmed: dict) -> list[str]:
    """Per finding of the medium size: the paper, our control, the two rounds' verdicts and whether they agree."""
    lines = [
        "| finding | the paper reports | our control | exploratory (seeds 0-2) | confirmatory (seeds 3-5) | rounds |",
        "|---|---|---|---|---|---|",
    ]
    for f in exploratory:
        reported, control = context(name, f.claim)
        c = confirmed.get(f.claim)
        lines.append(
            f"| {cell(f.claim)} | {reported} | {control} | {verdict_text(f)} | {verdict_text(c) if c else 'not run'} | "
            f"{agreement(f, c)} |"
        )
    return lines


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    notes = (HERE / "results_notes.md").read_text()
    intro, rest = notes.split("<!-- experiment:", 1)
    found = re.findall(
        r"<!-- (experiment|medium|confirmatory): (\S+) -->\n(.*?)(?=<!-- |\Z)", "<!-- experiment:" + rest, re.S
    )
    blocks = {(kind, name): text for kind, name, text in found}
    names = list(dict.fromkeys(name for _, name in blocks))
    summary = [
        "## Every finding: quick, medium and full sizes",
        "",
        "The full sizes (`--size full`) need the papers' data files (MNIST, CIFAR-10) and, realistically, a GPU; "
        "none has been run here. A medium finding that refines a quick one (per network, per setting) shows the "
        "quick verdict beside it.",
        "",
        "| paper | finding | quick (one run per setting) | medium, exploratory (seeds 0-2) | medium, confirmatory "
        "(fresh seeds 3-5, frozen configs and rules) | rounds | full |",
        "|---|---|---|---|---|---|---|",
    ]
    body: list[str] = []
    for name in names:
        body += [f"## {name}", ""]
        quick_lines, quick = section(name, "quick", runs / f"{name}-quick")
        body += quick_lines
        for run in sorted(p for p in (runs / f"{name}-quick").iterdir() if (p / "partition").is_dir()):
            pictures = sorted((run / "partition").glob("step-*.png"))
            shown = []
            for label, picture in (("first", pictures[0]), ("last", pictures[-1])):
                target = f"{name}-{run.name}-partition-{label}.png"
                shutil.copy(picture, HERE / "figures" / target)
                shown.append(f"![{run.name} {picture.stem}](figures/{target})")
            body += [
                f"Linear regions of `{run.name}` on the plane through three test digits, at initialisation and at the "
                "end:",
                "",
                " ".join(shown),
                "",
            ]
        body += [blocks.get(("experiment", name), "").strip(), ""]
        medium_folder = runs / f"{name}-medium"
        medium = []
        if medium_folder.is_dir() and find_runs(medium_folder):
            medium_lines, medium = section(name, "medium", medium_folder)
            body += medium_lines + [blocks.get(("medium", name), "").strip(), ""]
        confirm_folder = round_folder(runs, name, "medium", "confirmatory")
        confirmed = {}
        if confirm_folder.is_dir() and find_runs(confirm_folder):
            confirm_lines, confirm = section(name, "medium", confirm_folder, "confirmatory")
            confirmed = {f.claim: f for f in confirm}
            body += confirm_lines + [blocks.get(("confirmatory", name), "").strip(), ""]
        if medium:
            body += [
                f"### {name}: each finding, the paper, our control, both rounds",
                "",
                *rounds_table(name, medium, confirmed),
                "",
            ]
        matched = set()
        for f in medium:
            q = quick_match(f.claim, quick)
            if q is not None:
                matched.add(q.claim)
            c = confirmed.get(f.claim)
            summary.append(
                f"| {name} | {f.claim} | {verdict_text(q) if q else '(not in the quick size)'} | {verdict_text(f)} | "
                f"{verdict_text(c) if c else 'not run'} | {agreement(f, c)} | {FULL_STATUS} |"
            )
        for q in quick:
            if q.claim not in matched:
                summary.append(
                    f"| {name} | {q.claim} | {verdict_text(q)} | {'not run' if not medium else '(see above)'} | - | - "
                    f"| {FULL_STATUS} |"
                )
    page = [intro.rstrip(), "", *summary, "", *body]
    (HERE / "results.md").write_text("\n".join(page).rstrip() + "\n")
    print(f"wrote {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
