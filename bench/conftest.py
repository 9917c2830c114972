"""pytest configuration for qloop's benchmarks: the ``impl`` fixture and run-wide settings."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest

try:
    from bench import _common
except ImportError:  # pytest's importlib mode, or run from another directory
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    from bench import _common


@pytest.fixture(params=_common.IMPLS)
def impl(request) -> _common.Impl:
    """The implementation under test: qloop-core, qloop-fallback, asyncio or uvloop."""
    name = request.param
    try:
        return _common.load_impl(name)
    except ImportError as exc:
        message = f"{name} is not available: {exc}"
        if _common.STRICT:
            pytest.fail(message + " (QLOOP_BENCH_STRICT is set)")
        pytest.skip(message)


_OTHER_LOAD_BY_TEST: dict = {}


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Abort (with every thread's traceback) a benchmark that hangs, e.g. a lost wake-up.

    Also notes how much CPU other processes used during each benchmark.
    """
    faulthandler.dump_traceback_later(_common.TIMEOUT, exit=True)
    start = _common.cpu_snapshot()
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        end = _common.cpu_snapshot()
        _OTHER_LOAD_BY_TEST[request.node.name] = _common.other_load(start, end)


def pytest_report_header(config):
    return (
        f"qloop bench: scale={_common.SCALE} rounds={_common.ROUNDS} "
        f"strict={_common.STRICT} timeout={_common.TIMEOUT:.0f}s"
    )


_LOADAVG_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None
_BUSY_AT_START: list = []


def pytest_sessionstart(session):
    if session.config.getoption("benchmark_json", None):
        # one second of /proc/stat before any benchmark: is something else using the CPUs?
        _BUSY_AT_START.append(_common.machine_busy_fraction(1.0))


_MIN_WALL_FOR_WORST_S = 1.0


def _summarise_other_load(by_test: dict) -> dict | None:
    """Other processes' CPU over all benchmarks but echo.

    echo's loopback TCP work partly runs in kernel threads (ksoftirqd), which would count as
    "other" load.
    """
    loads = [v for k, v in by_test.items() if v and not k.startswith("test_echo")]
    if not loads:
        return None
    wall = sum(v["wall_s"] for v in loads)
    other = sum(v["other_cpu_s"] for v in loads)
    return {
        "wall_s": wall,
        "other_cpu_s": other,
        "cpus": other / wall if wall > 0 else None,
        # /proc/stat counts in clock ticks (10 ms): over a benchmark shorter than a second
        # one stray tick reads as whole CPUs, so the worst benchmark is sought among longer ones
        "worst_test_cpus": max(
            ((v["cpus"] or 0.0) for v in loads if v["wall_s"] >= _MIN_WALL_FOR_WORST_S),
            default=None,
        ),
        "excludes": "test_echo",
    }


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["qloop_bench"] = {
        "scale": _common.SCALE,
        "rounds": _common.ROUNDS,
        "pin_threadsafe": _common.PIN,
        "implementations": list(_common.IMPLS),
        # other load on the machine skews every ratio: keep it next to the numbers
        "loadavg_at_start": _LOADAVG_AT_START,
        "other_cpu_busy_at_start": _BUSY_AT_START[0] if _BUSY_AT_START else None,
        "loadavg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "other_load_by_test": dict(_OTHER_LOAD_BY_TEST),
        "other_load_during_run": _summarise_other_load(_OTHER_LOAD_BY_TEST),
    }


# ---------------------------------------------------------------------------------------------
# asyncio event-loop workloads (bench/test_aio_*.py): five loops through the asyncio API

from bench import _aio


@pytest.fixture(params=_aio.AIO_IMPLS)
def loop_impl(request) -> _common.Impl:
    """The event loop under test: qloop-core, qloop-fallback, asyncio, uvloop or rloop.

    ``impl.open()`` returns a new event loop.  A loop that cannot be imported is skipped, or
    fails under QLOOP_BENCH_STRICT.
    """
    name = request.param
    try:
        return _aio.load_loop_impl(name)
    except ImportError as exc:
        message = f"{name} is not available: {exc}"
        if _common.STRICT:
            pytest.fail(message + " (QLOOP_BENCH_STRICT is set)")
        pytest.skip(message)
