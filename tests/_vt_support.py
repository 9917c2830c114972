"""Fixtures and helpers for the virtual-time tests (``tests/test_aio_virtual_*.py``).

``vt_loop_factory`` makes virtual-time loops of the implementation under test
(``qloop_module``) and closes them at teardown; ``run`` runs a coroutine on one with a
REAL-time watchdog (a thread that stops the loop): a virtual-time test must never hang, and a
timer on the loop itself would be virtual (and would hide a deadlock).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

REAL_TIMEOUT = 10.0


class VTLoopFactory:
    def __init__(self, mod: ModuleType) -> None:
        self.mod = mod
        self.loops: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        kwargs.setdefault("virtual_time", True)
        loop = self.mod.new_event_loop(**kwargs)
        self.loops.append(loop)
        return loop

    def close_all(self) -> None:
        for loop in self.loops:
            if loop.is_closed():
                continue
            try:  # what asyncio.run does with the tasks left (e.g. after a deadlock)
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    run(loop, asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()


@pytest.fixture
def vt_loop_factory(qloop_module: ModuleType) -> Iterator[VTLoopFactory]:
    manual = qloop_module.clock_is_manual()
    enabled = qloop_module.clock_is_enabled(qloop_module.ClockType.VIRTUAL)
    factory = VTLoopFactory(qloop_module)
    yield factory
    factory.close_all()
    # the clock mode is back to what it was once every virtual-time loop is closed
    assert qloop_module.clock_is_manual() == manual
    assert qloop_module.clock_is_enabled(qloop_module.ClockType.VIRTUAL) == enabled


@pytest.fixture
def vt_loop(vt_loop_factory: VTLoopFactory) -> Any:
    return vt_loop_factory()


class RealWatchdog:
    """Stops ``loop`` from another thread after ``seconds`` of real time."""

    def __init__(self, loop: Any, seconds: float = REAL_TIMEOUT) -> None:
        self.fired = False
        self.loop = loop
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass

    def cancel(self) -> None:
        self.timer.cancel()
        self.timer.join()


def run(loop: Any, coro: Any, real_timeout: float = REAL_TIMEOUT) -> Any:
    """``loop.run_until_complete(coro)``, stopped (and failed) after ``real_timeout`` real
    seconds."""
    dog = RealWatchdog(loop, real_timeout)
    try:
        return loop.run_until_complete(coro)
    finally:
        dog.cancel()
        assert not dog.fired, f"the loop did not finish within {real_timeout} real seconds"


# A bound on the real seconds a virtual-time run may take: far below the hours of virtual time
# the tests cover, so passing it proves the loop jumped instead of waiting.  It is not a speed
# bar (a loaded CI machine must not fail it); the speed is measured in bench/.
NO_REAL_WAIT = 5.0


class Stopwatch:
    """Real (wall) and this thread's CPU time of a block: on a machine shared with other
    processes the CPU time stands in for the wall time when the wall time is inflated."""

    def __enter__(self) -> Stopwatch:  # noqa: PYI034
        self.wall0 = time.perf_counter()
        self.cpu0 = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.thread_time() - self.cpu0

    @property
    def seconds(self) -> float:
        return min(self.wall, self.cpu)
