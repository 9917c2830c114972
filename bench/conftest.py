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


@pytest.fixture(autouse=True)
def _watchdog():
    """Abort (with every thread's traceback) a benchmark that hangs, e.g. a lost wake-up."""
    faulthandler.dump_traceback_later(_common.TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


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
    }
