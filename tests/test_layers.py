"""The package's layering (CONTRIBUTING.md, "The layout"): no import circle inside qloop/, and
no module imports from a layer above its own.  Reads the sources (Python imports, including
function-local ones, and the Cython core's Python imports), so it needs no build."""

from __future__ import annotations

import ast
import os
import pathlib
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "qloop")

# Lowest first.  A module may import from its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("qloop._version", "qloop._constants", "qloop._common")),
    ("main", ("qloop._main",)),
    ("aio", ("qloop._aio",)),
    ("twins", ("qloop._py", "qloop._core")),
    ("assemblers", ("qloop._fallback",)),
    ("entry", ("qloop", "qloop.__main__", "qloop.pytest_plugin")),
]


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS and CONTRIBUTING.md"
    return best


def python_modules() -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only: no circle at run
    time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(module: str, path: str, is_package: bool) -> set[str]:
    tree = ast.parse(pathlib.Path(path).read_text(), path)
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "qloop")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "qloop":
                continue
            found.add(target)
            for alias in node.names:  # `from . import x` may name a submodule
                found.add(f"{target}.{alias.name}")
    return found


def cython_imports() -> set[str]:
    """The compiled core's Python imports of qloop modules (``_core.pyx`` and its includes)."""
    found: set[str] = set()
    sources = [os.path.join(ROOT, "_core.pyx")] + [
        os.path.join(ROOT, "_cy", n) for n in sorted(os.listdir(os.path.join(ROOT, "_cy")))]
    from_import = re.compile(r"^from\s+(qloop[\w.]*)\s+import\s+(?:\(([^)]*)\)|([^\n]*))",
                             re.MULTILINE)
    for path in sources:
        text = pathlib.Path(path).read_text()
        found.update(re.findall(r"^import\s+(qloop[\w.]*)", text, re.MULTILINE))
        for module, grouped, single in from_import.findall(text):
            found.add(module)
            for item in (grouped or single).split(","):
                name = item.split("#")[0].split(" as ")[0].strip()
                if name:
                    found.add(f"{module}.{name}")
    return {f for f in found if not f.startswith("qloop.includes")}


def graph() -> dict[str, set[str]]:
    modules = python_modules()
    known = set(modules) | {"qloop._core"}
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        raw = imports_of(module, path, path.endswith("__init__.py"))
        edges[module] = {t for t in raw if t in known and t != module}
    edges["qloop._core"] = {t for t in cython_imports() if t in known}
    return edges


def test_every_module_is_in_a_layer():
    for module in graph():
        layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own():
    bad = []
    for module, targets in graph().items():
        for target in targets:
            if layer_of(target) > layer_of(module):
                bad.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_twins_do_not_import_each_other():
    edges = graph()
    assert not any(t.startswith("qloop._py") for t in edges["qloop._core"])
    for module, targets in edges.items():
        if module.startswith("qloop._py"):
            assert "qloop._core" not in targets and "qloop._fallback" not in targets, module


@pytest.mark.parametrize("stem", ["clock", "notifier", "timers", "bh", "context",
                                  "context_gsource", "context_mainloop", "loop", "transports",
                                  "pipes", "dgram", "mainloop"])
def test_each_twin_module_has_its_pair(stem):
    assert os.path.exists(os.path.join(ROOT, "_py", f"{stem}.py"))
    assert os.path.exists(os.path.join(ROOT, "_cy", f"{stem}.pxi"))
