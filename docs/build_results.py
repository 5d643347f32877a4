"""Assemble docs/results.md from the quick runs of the three papers.

    layerscope reproduce ansuini2019 --size quick --out runs
    layerscope reproduce tan2024 --size quick --out runs
    layerscope reproduce humayun2024 --size quick --out runs
    python docs/build_results.py runs

Copies each experiment's summary figure to docs/figures/ and its findings table
(computed from the runs by the paper modules of layerscope.experiments) into the page, between
the hand-written notes of docs/results_notes.md.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
    notes = (HERE / "results_notes.md").read_text().split("<!-- experiment:")
    page = [notes[0].rstrip(), ""]
    for block in notes[1:]:
        name, text = block.split("-->", 1)
        name = name.strip()
        folder = runs / f"{name}-quick"
        shutil.copy(folder / "summary.png", HERE / "figures" / f"{name}-quick.png")
        findings = (folder / "findings.md").read_text().split("\n", 2)[2]  # drop the title line
        page += [f"## {name}", "", f"![{name} quick run](figures/{name}-quick.png)", "", findings.strip(), ""]
        for run in sorted(p for p in folder.iterdir() if (p / "partition").is_dir()):
            pictures = sorted((run / "partition").glob("step-*.png"))
            shown = []
            for label, picture in (("first", pictures[0]), ("last", pictures[-1])):
                target = f"{name}-{run.name}-partition-{label}.png"
                shutil.copy(picture, HERE / "figures" / target)
                shown.append(f"![{run.name} {picture.stem}](figures/{target})")
            page += [f"Linear regions of `{run.name}` on the plane through three test digits, at initialisation and at the end:", "", " ".join(shown), ""]
        page += [text.strip(), ""]
    (HERE / "results.md").write_text("\n".join(page) + "\n")
    print(f"wrote {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
