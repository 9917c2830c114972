"""The names qloop/__init__.pyi declares (read with ast; used by test_typing and test_docs)."""

from __future__ import annotations

import ast
import os

from _readme_blocks import ROOT

STUB = os.path.join(ROOT, "qloop", "__init__.pyi")


def stub_tree() -> ast.Module:
    with open(STUB, encoding="utf-8") as f:
        return ast.parse(f.read(), STUB)


def stub_all() -> list[str]:
    for node in stub_tree().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("the stub has no __all__")


def stub_public_definitions() -> set[str]:
    """Names the stub defines or re-exports at module level, without a leading underscore
    (dunder names like __version__ included)."""
    names: set[str] = set()
    for node in stub_tree().body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            # "from x import A as A" is a re-export (the stub convention)
            names.update(a.asname for a in node.names if a.asname and a.asname == a.name)
    names.discard("__all__")
    return {n for n in names if not n.startswith("_") or (n.startswith("__") and n.endswith("__"))}
