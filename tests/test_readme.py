"""Every ```python block of README.md runs as written, in a fresh interpreter that imports
the qloop under test (in CI: the one ``pip install ".[test]"`` installed), from a directory
outside the source tree.  A block that uses PyGObject is skipped where ``gi`` is missing.
The README's top three commands are checked too: install, demo, tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

from _readme_blocks import README, blocks

TIMEOUT_S = 60


def qloop_env() -> dict[str, str]:
    spec = importlib.util.find_spec("qloop")
    assert spec is not None and spec.origin is not None
    root = os.path.dirname(os.path.dirname(spec.origin))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


PYTHON_BLOCKS = blocks()


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.name for b in PYTHON_BLOCKS])
def test_readme_python_block_runs(block, tmp_path):
    """A script block runs with ``python -c``; a test-module block (it imports pytest and
    defines tests) is saved as a file and run by pytest with qloop's plugin, and every test
    in it must pass."""
    if block.needs_gi and importlib.util.find_spec("gi") is None:
        pytest.skip("needs PyGObject (pip install 'qloop[glib]' or 'qloop[glib-legacy]')")
    tests = block.test_names
    if tests:
        path = tmp_path / f"test_{block.name}.py"
        path.write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, "-m", "pytest", "-p", "qloop.pytest_plugin", "-p",
               "no:cacheprovider", "-q", str(path)]
    else:
        cmd = [sys.executable, "-c", block.code]
    proc = subprocess.run(
        cmd,
        env=qloop_env(),
        cwd=str(tmp_path) if tests else tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, (
        f"README.md line {block.line} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    if tests:
        assert f"{len(tests)} passed" in proc.stdout, proc.stdout


def test_readme_starts_with_exactly_three_commands():
    """The first block is the three commands: install, demo, tests (CI runs them)."""
    first = blocks(lang=None)[0]
    with open(README, encoding="utf-8") as f:
        head = f.read().split("```", 1)[0]
    assert head.strip().startswith("# qloop") and head.count("\n") <= 3  # nothing before it
    commands = [c for c in first.code.splitlines() if c.strip()]
    assert commands == ['pip install ".[test]"', "qloop-demo", "pytest tests"], commands


def test_readme_points_only_to_files_users_have():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert "shared/" not in text and "§" not in text
