"""Type information for users: ``qloop/__init__.pyi`` declares exactly the runtime's public
names; ``mypy --strict`` passes on a program touching every name (tests/typing/
user_program.py) and on every ```python block of README.md; ``mypy.stubtest`` finds the
stub's signatures consistent with the live implementation (both arms).

The mypy tests skip where mypy is not installed; CI installs it (requirements/test.txt)
and runs this file in its type-check step with ``QLOOP_REQUIRE_MYPY=1`` (no skipping).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys

import pytest

from _readme_blocks import ROOT, blocks
from _stub import stub_all, stub_public_definitions

USER_PROGRAM = os.path.join(ROOT, "tests", "typing", "user_program.py")
ALLOWLIST = os.path.join(ROOT, "tests", "typing", "stubtest-allowlist.txt")
ALLOWLIST_FALLBACK = os.path.join(ROOT, "tests", "typing", "stubtest-allowlist-fallback.txt")

# Names the package itself adds to the implementation's __all__ (qloop/__init__.py).
PACKAGE_NAMES = {"IMPLEMENTATION", "USE_EXTENSIONS", "__version__"}

def test_stub_all_lists_exactly_what_the_stub_defines():
    declared = stub_all()
    assert len(declared) == len(set(declared)), "duplicate names in the stub's __all__"
    assert set(declared) == stub_public_definitions()


def test_stub_names_match_the_runtime_all(qloop_module):
    """Both implementations export what the stub declares, nothing more, nothing less."""
    runtime = set(qloop_module.__all__) | PACKAGE_NAMES
    declared = set(stub_all())
    assert declared == runtime, {
        "in the stub only": sorted(declared - runtime),
        "at run time only": sorted(runtime - declared),
    }


def test_installed_package_all_matches_the_stub():
    """``import qloop`` (whichever implementation is live) exports the stub's names."""
    qloop = importlib.import_module("qloop")
    assert set(qloop.__all__) == set(stub_all())


def test_user_program_touches_every_public_name():
    with open(USER_PROGRAM, encoding="utf-8") as f:
        tree = ast.parse(f.read(), USER_PROGRAM)
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "qloop"
    }
    missing = set(stub_all()) - used - {"__all__"}
    assert not missing, f"tests/typing/user_program.py does not use: {sorted(missing)}"


# --------------------------------------------------------------------------------------------
# mypy


def need_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("QLOOP_REQUIRE_MYPY"):  # CI's type-check step: never skip
            pytest.fail("QLOOP_REQUIRE_MYPY is set but mypy is not installed")
        pytest.skip("mypy is not installed (pip install -r requirements/test.txt)")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("mypy_cache"))


def qloop_under_test_env() -> dict[str, str]:
    """An environment in which a child process (and mypy) sees the qloop these tests
    import: the installed package as is, or this source tree through PYTHONPATH/MYPYPATH."""
    spec = importlib.util.find_spec("qloop")
    assert spec is not None and spec.origin is not None
    root = os.path.dirname(os.path.dirname(spec.origin))
    env = dict(os.environ)
    if os.path.basename(root) not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env["MYPYPATH"] = root
    return env


def run_mypy(cache: str, cwd: str, *args: str) -> subprocess.CompletedProcess:
    """mypy with the project's configuration, from ``cwd`` (outside the source tree, so an
    installed qloop is checked through the type information it ships)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", os.path.join(ROOT, "pyproject.toml"),
         "--cache-dir", cache, *args],
        cwd=cwd, env=qloop_under_test_env(), capture_output=True, text=True, timeout=600,
        check=False,
    )


def test_mypy_strict_on_the_user_program(mypy_cache, tmp_path):
    need_mypy()
    proc = run_mypy(mypy_cache, str(tmp_path), "--strict", USER_PROGRAM)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_on_every_readme_python_block(tmp_path, mypy_cache):
    need_mypy()
    found = blocks()
    assert len(found) >= 3
    paths = []
    for block in found:
        path = tmp_path / f"{block.name}.py"
        path.write_text(block.code, encoding="utf-8")
        paths.append(str(path))
    proc = run_mypy(mypy_cache, str(tmp_path), "--strict", *paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("impl", ["core", "fallback"])
def test_stubtest_finds_the_stub_consistent_with_the_runtime(impl, request, tmp_path):
    need_mypy()
    env = qloop_under_test_env()
    allowlists = ["--allowlist", ALLOWLIST]
    if impl == "fallback":
        env["QLOOP_NO_EXTENSIONS"] = "1"
        allowlists += ["--allowlist", ALLOWLIST_FALLBACK]
    else:
        if env.get("QLOOP_NO_EXTENSIONS") or request.config.getoption("--no-c-extensions"):
            pytest.skip("the compiled core is not tested in this run")
        env["QLOOP_REQUIRE_EXTENSIONS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "qloop", *allowlists],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
