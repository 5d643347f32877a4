"""The architecture's import rules (docs/architecture.md), checked on the source."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "layerscope"

# package -> layerscope packages/modules it must never import
FORBIDDEN = {
    "estimators": {"probes", "train", "store", "report", "analysis", "experiments", "runner", "tracker", "config", "sweep", "data", "models", "results"},
    "probes": {"train", "store", "report", "experiments", "runner", "tracker", "config", "sweep"},
    "store": {"probes", "models", "train", "report", "experiments", "runner", "tracker", "sweep"},
    "analysis": {"probes", "models", "train", "store", "report", "experiments", "runner", "tracker", "estimators", "sweep"},
    "report": {"models", "train", "runner", "tracker", "experiments", "sweep"},
    "train": {"store", "report", "experiments", "runner", "tracker", "sweep"},
    "integrations": {"runner", "sweep", "experiments", "report", "cli"},
}


def layerscope_imports(path: Path) -> set[str]:
    """The top-level layerscope packages a module imports (relative or absolute)."""
    package = path.relative_to(SRC).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [alias.name for alias in node.names]
            elif node.module and node.module.startswith("layerscope."):
                names = [node.module.split(".")[1]]
            else:
                continue
            found.update(n.removesuffix(".py") for n in names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("layerscope."))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_reaches_back_up(package):
    for path in sorted((SRC / package).glob("*.py")):
        bad = layerscope_imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
