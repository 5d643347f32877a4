"""The architecture's import rules (docs/architecture.md), checked on the source.

The rule: every top-level part of layerscope (a package or a module) has a layer,
and imports only from parts of lower layers (and from within itself), whether the
import is at the top of a file or inside a function. Data flows up the layers:
estimators and data know nothing of layerscope; probes know models and estimators;
training knows probes; configs know what they validate; the runner puts a config
to work; sweeps run configs; the papers' experiments run sweeps; the command line
sits on top. And no module, counted one file at a time, imports itself in a circle.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "layerscope"

LAYERS = [
    {"__init__", "_reaper", "_plotting", "estimators", "data", "models", "results", "analysis"},  # know no other part
    {"store", "probes"},  # the run folder's files; models + estimators -> rows
    {"train", "tracker", "report"},  # the training loop, the one callback, figures from the table
    {"config"},  # validates against the registries of data, models, estimators, probes, training
    {"presets", "integrations"},  # built-in configs; callbacks in other training loops
    {"runner", "measure"},  # a config end to end; checkpoints made elsewhere, measured
    {"sweep"},  # many configs on Ray
    {"experiments"},  # the papers
    {"cli"},
]
LAYER = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py" and path.parent != SRC


def imported_modules(path: Path) -> set[str]:
    """The layerscope modules a file imports, as dotted names below ``layerscope`` (``estimators.covariance``);
    ``__init__`` for the top package."""
    here = module_name(path).split(".") if path.parent != SRC or path.name != "__init__.py" else []
    package = here if is_package(path) else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module and node.module.startswith("layerscope"):
                base = []
            else:
                continue
            module = node.module.removeprefix("layerscope").lstrip(".") if not node.level else node.module
            target = base + (module.split(".") if module else [])
            for alias in node.names:  # `from . import x`: x may be a module
                candidate = [*target, alias.name]
                if (SRC.joinpath(*candidate).with_suffix(".py")).is_file() or (
                    SRC.joinpath(*candidate) / "__init__.py"
                ).is_file():
                    found.add(".".join(candidate))
                else:
                    found.add(".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("layerscope.") for a in node.names if a.name.startswith("layerscope."))
    return found


MODULES = {module_name(p) if module_name(p) else "__init__": p for p in sorted(SRC.rglob("*.py"))}
MODULES = {("__init__" if p == SRC / "__init__.py" else name): p for name, p in MODULES.items()}
GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def test_every_part_has_a_layer():
    parts = {name.split(".")[0] for name in MODULES}
    assert parts == set(LAYER), (
        f"parts without a layer: {sorted(parts - set(LAYER))}; layers of nothing: {sorted(set(LAYER) - parts)}"
    )


@pytest.mark.parametrize("part", sorted(LAYER))
def test_no_import_reaches_up_or_across(part):
    for name, targets in GRAPH.items():
        if name.split(".")[0] != part:
            continue
        bad = sorted(t for t in targets if t.split(".")[0] != part and LAYER[t.split(".")[0]] >= LAYER[part])
        assert not bad, (
            f"{MODULES[name].relative_to(SRC)} (layer {LAYER[part]}) imports {bad} (layers "
            f"{[LAYER[b.split('.')[0]] for b in bad]})"
        )


def test_no_import_circle():
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH.get(name, ())):
            if state.get(target) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(target) :] + [target]))
            if target not in state and target in GRAPH:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_the_checker_sees_what_it_checks():
    """The rules are only as good as the import reading: known edges must be found."""
    assert "estimators.covariance" in GRAPH["estimators._base"]
    assert "estimators._base" in GRAPH["estimators.spectrum"]
    assert "store" in GRAPH["runner"] and "presets" in GRAPH["sweep"]
    assert "__init__" in GRAPH["store.record"]  # from .. import __version__
    assert "experiments.ansuini2019" in GRAPH["experiments"]


def test_reading_a_sweep_file_imports_neither_the_papers_nor_matplotlib(tmp_path):
    import subprocess
    import sys

    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "s"\nbase = "smoke"\n[axes]\nseed = [0, 1]\n')
    code = (
        f"import sys; from layerscope.sweep import load_sweep; load_sweep({str(sweep)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'layerscope.experiments', "
        "'layerscope.report'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
