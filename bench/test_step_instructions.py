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
    assert set(si.PYTHON_LOOPS) <= set(si.IMPLS)
    assert set(si.LOOP_OBJECT) == set(si.IMPLS) - set(si.PYTHON_LOOPS)
    # a Python loop has no binary of its own: its code is the interpreter's
    assert si._category("qloop-fallback", "/site/qloop/_core.cpython-311-x86_64-linux-gnu.so") \
        == "other"
    assert si._category("qloop-fallback", "/usr/lib/libpython3.11.so.1.0") == "CPython"


def test_every_aio_row_has_a_workload():
    # bench/test_aio_call_later.py's body, among the others
    assert {"chain", "batches", "call_later", "tasks", "futures", "threadsafe",
            "udp_echo"} <= set(si.WORKLOADS)


def test_floor_counts_compiled_loops_only(monkeypatch, capsys):
    # the Python loops' totals (all "CPython") must not lower the floor of the compiled ones
    per_impl = {
        "qloop-core": {"loop": 500, "CPython": 1500},
        "rloop": {"loop": 400, "CPython": 1700},
        "asyncio": {"CPython": 10_000},
        "qloop-fallback": {"CPython": 1000},
    }

    def fake_measure(impl, workload, steps, workdir):
        return {c: v * steps for c, v in per_impl[impl].items()}

    monkeypatch.setattr(si, "measure", fake_measure)
    monkeypatch.setattr(si.shutil, "which", lambda name: "/usr/bin/" + name)
    assert si.main(["--workload", "chain", "--steps", "10", "--impl", *per_impl]) == 0
    out = capsys.readouterr().out
    assert "core/rloop: 1.05x; floor (least non-loop work) 1,500," in out
    assert "best ratio any loop could reach against rloop: 1.40x" in out
    assert "fallback/asyncio: 10.00x" in out
