"""The ```python blocks of README.md: run by tests/test_readme.py, type-checked by
tests/test_typing.py (``mypy --strict``).  As a script it writes them out as files:

    python tests/_readme_blocks.py OUTDIR     # OUTDIR/readme_block_<line>.py, one per block
"""

from __future__ import annotations

import os
import re
import sys
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

_FENCE = re.compile(r"^```(\S*)\s*$")


class Block(NamedTuple):
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def name(self) -> str:
        return f"readme_block_{self.line}"

    @property
    def needs_gi(self) -> bool:
        return bool(re.search(r"^\s*(import gi|from gi\b)", self.code, re.MULTILINE))

    @property
    def test_names(self) -> list[str]:
        """The pytest tests the block defines, if it is a test module (it imports pytest):
        such a block runs under pytest rather than as a script."""
        if not re.search(r"^import pytest$", self.code, re.MULTILINE):
            return []
        return re.findall(r"^(?:async )?def (test_\w+)\(", self.code, re.MULTILINE)


def blocks(path: str = README, lang: str | None = "python") -> list[Block]:
    """The fenced blocks of ``path`` (only those of ``lang`` unless it is None)."""
    out: list[Block] = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, kind = i, m.group(1)
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if lang is None or kind == lang:
            out.append(Block(start + 1, kind, "\n".join(body) + "\n"))
    return out


def write(outdir: str) -> list[str]:
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for block in blocks():
        path = os.path.join(outdir, block.name + ".py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(block.code)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for p in write(sys.argv[1]):
        print(p)
