"""Checks of ``python -m bench.step_instructions`` that need no valgrind: every workload body
runs on every available loop, and callgrind's compressed output is charged to the right
binaries (a call's inclusive cost is not counted twice)."""

from __future__ import annotations

import pytest

from bench import step_instructions as si
from bench._aio import AIO_IMPLS


@pytest.mark.parametrize("workload", sorted(si.WORKLOADS))
def test_workload_runs(workload, loop_impl):
    loop = loop_impl.open()
    try:
        si.WORKLOADS[workload][0](loop, 200)
    finally:
        loop.close()


CALLGRIND_OUT = """\
events: Ir
ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) eval
10 100
cob=(2) /site/qloop/_core.cpython-311-x86_64-linux-gnu.so
cfn=(2) run
calls=3 0
10 70
ob=(2)
fn=(2)
0 70
cob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6
cfn=(3) memcpy
calls=1 0
0 5
ob=(3)
fn=(3)
+1 5
"""


def test_charge_by_object(tmp_path):
    path = tmp_path / "callgrind.out"
    path.write_text(CALLGRIND_OUT)
    charged = si.charge_by_object(str(path))
    assert charged == {
        "/usr/lib/libpython3.11.so.1.0": 100,
        "/site/qloop/_core.cpython-311-x86_64-linux-gnu.so": 70,
        "/usr/lib/x86_64-linux-gnu/libc.so.6": 5,
    }
    assert si._category("qloop-core", "/site/qloop/_core.cpython-311-x86_64-linux-gnu.so") \
        == "loop"
    assert si._category("rloop", "/usr/lib/libpython3.11.so.1.0") == "CPython"
    assert si._category("uvloop", "/usr/lib/x86_64-linux-gnu/libc.so.6") == "libc"


def test_every_impl_has_a_loop_binary_or_is_python():
    assert set(si.IMPLS) <= set(AIO_IMPLS)
    assert set(si.LOOP_OBJECT) == set(si.IMPLS) - {"asyncio"}
