"""The house rules, read from the imports (ast) of every module of the package.

1. Layers: a module imports only modules of its own layer or lower ones
   (cli -> jobs -> api -> {attacks, certify, metrics, corruptions, report}
   -> {shifts, models, data, runtime} -> {errors, defaults, _version}).
2. No import circle anywhere (lazy imports inside functions count too).
3. No module over about 400 lines, except the ones listed (the README says why).

Imports under ``if TYPE_CHECKING:`` are not imports at run time and are skipped. The
checker is tested on deliberately broken module sets, so that it would catch a break.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shiftattack"

#: top-level part of a module name -> layer (higher layers may import lower ones)
LAYERS = {
    "errors": 0, "defaults": 0, "_version": 0, "_progress": 0,
    "shifts": 1, "models": 1, "data": 1, "runtime": 1, "threats": 1,
    "attacks": 2, "certify": 2, "metrics": 2, "corruptions": 2, "report": 2,
    "api": 3,
    "jobs": 4,
    "cli": 5,
}
#: the package root and ``python -m shiftattack``: above every layer, imported by none
TOP = {"shiftattack", "shiftattack.__main__"}
MAX_LINES = 400
#: modules allowed over MAX_LINES, with the reason (also in the README's architecture section)
LONG = {
    "shiftattack.corruptions.perturbations": "the 14 ImageNet-P / CIFAR-10-P sequences, one short function each",
    "shiftattack.corruptions.weather": "snow, frost, fog with their published constants",
    "shiftattack.data.corrupted": "readers and writers of every published C/P file layout",
    "shiftattack.metrics.shift": "the shift metrics, each with its documented protocol",
    "shiftattack.models.aps": "APS layers, conversion and the APS ResNet",
    "shiftattack.models.antialias": "one converter for torchvision's model families",
    "shiftattack.shifts.threats": "the threat-set grammar, projection and the threat model",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(name: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules that ``source`` (module ``name``) imports."""
    out = set()
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in modules and m != name}


def layer(name: str) -> int:
    if name in TOP:
        return 99
    return LAYERS[name.split(".")[1]]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every broken rule for modules ``{name: (source, is_package)}``, as messages."""
    modules = set(sources)
    graph = {name: imports(name, src, pkg, modules) for name, (src, pkg) in sources.items()}
    out = []
    for name, targets in sorted(graph.items()):
        if name.count(".") and name.split(".")[1] not in LAYERS and name not in TOP:
            out.append(f"{name}: in no layer (add its folder to LAYERS)")
            continue
        for t in sorted(targets):
            if t in TOP and name not in TOP:
                out.append(f"{name} imports {t}, the package root (import the module that defines the name)")
            elif t not in TOP and layer(t) > layer(name):
                out.append(f"{name} (layer {layer(name)}) imports {t} (layer {layer(t)}): an upward import")
    out += [f"import circle: {' <-> '.join(c)}" for c in cycles(graph)]
    for name, (src, _) in sorted(sources.items()):
        n = src.count("\n")
        if n > MAX_LINES and name not in LONG:
            out.append(f"{name} has {n} lines (> {MAX_LINES}); split it or list it in LONG with the reason")
    return out


def package_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p, PACKAGE): (p.read_text(), p.name == "__init__.py") for p in PACKAGE.rglob("*.py")}


def test_the_package_keeps_the_house_rules():
    assert violations(package_sources()) == []


def test_every_long_module_is_still_long():
    """The exceptions list only modules that exist and are still over the limit."""
    sources = package_sources()
    for name in LONG:
        assert name in sources and sources[name][0].count("\n") > MAX_LINES, name


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"shiftattack.shifts.a": ("from shiftattack.cli.main import main\n", False)}, "an upward import"),
        ({"shiftattack.models.a": ("from . import b\n", False),
          "shiftattack.models.b": ("def f():\n    from .a import g\n", False)}, "import circle"),
        ({"shiftattack.jobs.a": ("from shiftattack import attack\n", False)}, "the package root"),
        ({"shiftattack.data.a": ("x = 1\n" * 401, False)}, "has 401 lines"),
        ({"shiftattack.newfolder.a": ("x = 1\n", False)}, "in no layer"),
    ],
)
def test_the_checker_catches_a_broken_copy(broken, message):
    sources = {**package_sources(), **broken}
    for name in broken:
        parent = name.rsplit(".", 1)[0]
        sources.setdefault(parent, ("", True))
    found = violations(sources)
    assert any(message in v for v in found), found


def test_type_checking_imports_are_not_runtime_imports():
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shiftattack.cli.main import main\n"
    assert violations({**package_sources(), "shiftattack.shifts.a": (src, False)}) == []
