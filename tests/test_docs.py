"""The documentation stands on its own: README.md, CONTRIBUTING.md and docs/ point only to
files users have (no outside material, no spec section numbers), every relative link and
anchor resolves, docs/README.md indexes every page, docs/api.md lists every public name,
and the run-state transition table matches the code."""

from __future__ import annotations

import glob
import os
import re
import sys

import pytest

from _readme_blocks import ROOT, blocks
from _stub import stub_all

DOCS = os.path.join(ROOT, "docs")
PAGES = sorted(glob.glob(os.path.join(DOCS, "*.md")))
USER_FILES = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "CONTRIBUTING.md"), *PAGES]

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: str) -> set[str]:
    out = set()
    for line in without_code_blocks(read(path)).splitlines():
        m = _HEADING.match(line)
        if m:
            out.add(slug(m.group(1)))
    return out


def test_there_is_documentation():
    names = {os.path.basename(p) for p in PAGES}
    assert {"README.md", "api.md", "install.md", "aio-context.md", "bottom-halves.md",
            "timers-and-clocks.md", "notify.md", "main-loop.md", "run-states.md",
            "signals-and-children.md", "coroutines.md", "glib.md", "decisions.md"} <= names


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_no_pointers_to_material_users_do_not_have(path):
    text = read(path)
    assert "shared/" not in text, "points to shared/, which users do not have"
    assert "§" not in text, "a spec section number: point to a docs/ page instead"


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_and_anchors_resolve(path):
    text = without_code_blocks(read(path))
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
            else path
        assert os.path.exists(dest), f"broken link {target!r}"
        if anchor:
            assert dest.endswith(".md"), target
            assert anchor in anchors(dest), f"no heading for #{anchor} in {file_part or path}"


def test_index_links_every_page_and_readme_links_the_index():
    index = read(os.path.join(DOCS, "README.md"))
    linked = set(_LINK.findall(index))
    for page in PAGES:
        name = os.path.basename(page)
        if name != "README.md":
            assert name in linked, f"docs/README.md does not link {name}"
    assert "docs/README.md" in read(os.path.join(ROOT, "README.md"))


def test_api_reference_lists_every_public_name():
    text = read(os.path.join(DOCS, "api.md"))
    mentioned = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", text))
    mentioned |= {n for group in re.findall(r"`(\w+)/(\w+)/(\w+)\(", text) for n in group}
    # "timer_new_ns/us/ms(" lists timer_new_ns, timer_new_us, timer_new_ms
    for stem, *suffixes in re.findall(r"`(\w+_)(\w+)/(\w+)/(\w+)\(", text):
        mentioned |= {stem + s for s in suffixes}
    missing = set(stub_all()) - mentioned
    assert not missing, f"docs/api.md does not list {sorted(missing)}"


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_python_examples_are_valid_python(path):
    """Every ```python block compiles (README's blocks are also run and type-checked:
    test_readme.py, test_typing.py; the docs' blocks are often fragments, so they are only
    compiled)."""
    for block in blocks(path):
        compile(block.code, f"{os.path.relpath(path, ROOT)}:{block.line}", "exec")


def test_run_state_transition_table_matches_the_code(qloop_module):
    runstate = sys.modules[qloop_module.RunState.__module__]
    table = set()
    in_table = False
    for line in read(os.path.join(DOCS, "run-states.md")).splitlines():
        if line.startswith("| from | to |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0].startswith("---"):
                continue
            src = qloop_module.RunState[cells[0].strip("`")]
            for dst in cells[1].split(","):
                table.add((src, qloop_module.RunState[dst.strip()]))
    assert table == set(runstate.TRANSITIONS)
