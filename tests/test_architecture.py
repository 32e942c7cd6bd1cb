"""The package's shape, read from the source (AST), so that it holds for whatever modules exist:

- no import cycles between ganforge modules, counting imports inside functions (a lazy import hides a cycle, it
  does not remove it);
- no module uses another module's private names (`from ganforge.x import _y`, `x._y`);
- dependencies point one way (DESIGN.md): nothing imports the CLI; the stages are imported by the CLI alone;
  `models` and `data` import nothing above them; the core never imports Prefect; MLflow is reached through the
  tracking layer alone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "ganforge"

# Modules that run a `ganforge <stage>` and nothing else (cli.py calls them). prepare (data/prepare.py) and train
# (training/loop.py) also run stages, but their packages' own modules use them.
STAGES = ("ganforge.features", "ganforge.evaluate", "ganforge.assets.build", "ganforge.assets.translate")
MLFLOW_LAYER = ("ganforge.tracking", "ganforge.registry", "ganforge.serving")  # serving: the MLflow pyfunc
ABOVE_MODELS = (  # what models/ and data/ must not import: everything that builds on them
    "ganforge.training",
    "ganforge.metrics",
    "ganforge.assets",
    "ganforge.tracking",
    "ganforge.registry",
    "ganforge.serving",
    "ganforge.evaluate",
    "ganforge.features",
    "ganforge.cli",
)

# Cycles known and left to a package's owner, by the package that holds them all (none today: models/ keeps its
# family registry in models/base.py, which the families import and models/__init__ re-exports).
KNOWN_CYCLES: tuple[str, ...] = ()


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[tuple[str, int]] = field(default_factory=list)  # (ganforge module, line)
    external: list[tuple[str, int]] = field(default_factory=list)  # (top-level third-party package, line)
    private: list[tuple[str, int]] = field(default_factory=list)  # ("module._name", line)


def _name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _scan() -> dict[str, Module]:
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        name, is_package = _name(path)
        modules[name] = Module(name, path, is_package)
    for mod in modules.values():
        tree = ast.parse(mod.path.read_text(), str(mod.path))
        package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
        bound: dict[str, str] = {}  # local names bound to ganforge modules (for `x._y`)
        for node in ast.walk(tree):  # every import, at any depth: top level, functions, TYPE_CHECKING blocks
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != PACKAGE:
                        mod.external.append((alias.name.split(".")[0], node.lineno))
                        continue
                    mod.imports.append((alias.name, node.lineno))
                    if alias.asname:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != PACKAGE:
                    mod.external.append((source.split(".")[0], node.lineno))
                    continue
                for alias in node.names:
                    target = f"{source}.{alias.name}"
                    if target in modules:  # `from ganforge.metrics import clips`: the submodule
                        mod.imports.append((target, node.lineno))
                        bound[alias.asname or alias.name] = target
                    else:
                        mod.imports.append((source, node.lineno))
                        if _private(alias.name) and source != mod.name:
                            mod.private.append((target, node.lineno))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and _private(node.attr)
                and bound[node.value.id] != mod.name
            ):
                mod.private.append((f"{bound[node.value.id]}.{node.attr}", node.lineno))
    return modules


MODULES = _scan()


def _edges() -> dict[str, set[str]]:
    return {m.name: {t for t, _ in m.imports if t != m.name and t in MODULES} for m in MODULES.values()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def _where(importer: str, target: str) -> str:
    lines = sorted({line for t, line in MODULES[importer].imports if t == target})
    return f"{MODULES[importer].path.relative_to(SRC.parent)}:{','.join(map(str, lines))} imports {target}"


def _cycle_report(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    return "cycle: " + "; ".join(_where(a, b) for a in component for b in sorted(edges[a] & inside))


def test_the_scan_sees_the_package() -> None:
    """The scan finds the modules and the imports it is meant to (else every rule below would pass vacuously)."""
    assert {"ganforge.cli", "ganforge.tracking", "ganforge.data.prepare", "ganforge.metrics.classifier"} <= set(MODULES)
    edges = _edges()
    assert "ganforge.tracking" in edges["ganforge.registry"]
    assert "ganforge.cli" in edges["ganforge.__main__"]
    # a function-level import counts: cli imports its stages inside the command functions
    assert "ganforge.data.prepare" in edges["ganforge.cli"]


def test_cycle_finder_finds_lazy_and_long_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"x": {"y"}, "y": set()}) == []


def _known(component: list[str]) -> str | None:
    return next((p for p in KNOWN_CYCLES if all(_inside(m, p) for m in component)), None)


def test_no_import_cycles() -> None:
    edges = _edges()
    found = [_cycle_report(c, edges) for c in _cycles(edges) if _known(c) is None]
    assert not found, "\n".join(found)


def test_known_cycles_are_still_there() -> None:
    """An entry of KNOWN_CYCLES whose cycle is gone must go too (else a new cycle there would pass unseen)."""
    known = {_known(c) for c in _cycles(_edges())}
    assert [p for p in KNOWN_CYCLES if p not in known] == [], (
        "gone (or part of a larger cycle, reported by test_no_import_cycles): remove it from KNOWN_CYCLES"
    )


def test_no_private_names_across_modules() -> None:
    used = [
        f"{m.path.relative_to(SRC.parent)}:{line} uses {name}" for m in MODULES.values() for name, line in m.private
    ]
    assert not used, "\n".join(used)


def _importers(target_prefixes: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for m in MODULES.values():
        for target, _ in m.imports:
            if any(target == p or target.startswith(p + ".") for p in target_prefixes):
                yield m.name, target


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_nothing_imports_the_cli() -> None:
    wrong = sorted({_where(a, t) for a, t in _importers(("ganforge.cli",)) if a != "ganforge.__main__"})
    assert not wrong, "\n".join(wrong)


def test_stages_are_called_from_the_cli_only() -> None:
    present = tuple(s for s in STAGES if s in MODULES)
    assert "ganforge.features" in present and "ganforge.evaluate" in present
    wrong = sorted({_where(a, t) for a, t in _importers(present) if a != "ganforge.cli" and not _inside(a, t)})
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", ["ganforge.models", "ganforge.data"])
def test_models_and_data_import_nothing_above_them(layer: str) -> None:
    wrong = sorted({_where(a, t) for a, t in _importers(ABOVE_MODELS) if _inside(a, layer)})
    assert not wrong, "\n".join(wrong)


def test_the_core_never_imports_prefect() -> None:
    wrong = [
        f"{m.path.relative_to(SRC.parent)}:{line}" for m in MODULES.values() for p, line in m.external if p == "prefect"
    ]
    assert not wrong, "\n".join(wrong)


def test_mlflow_is_reached_through_the_tracking_layer_alone() -> None:
    users = {m.name for m in MODULES.values() for p, _ in m.external if p == "mlflow"}
    assert "ganforge.tracking" in users  # the scan sees third-party imports at all
    assert users <= set(MLFLOW_LAYER), sorted(users - set(MLFLOW_LAYER))
