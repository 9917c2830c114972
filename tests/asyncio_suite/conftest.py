"""pytest wiring of the asyncio suite: arm skips, exclusions, the ``loop_arm`` fixture, a watchdog.

An arm is skipped only when it cannot exist yet (qloop's ``EventLoop`` missing) or when the
compiled core is switched off (``--no-c-extensions`` / ``QLOOP_NO_EXTENSIONS``, the rule of
``tests/conftest.py``); anything else that goes wrong fails.  Excluded tests are skipped
with the reason written in ``exclusions.txt``.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

import pytest

from ._harness import SUITE_ARMS, exclusion_for, load_exclusions
from ._loops import LoopArm

# seconds one test may take before it fails; ABORT_GRACE_S later the whole run is aborted
TIMEOUT_S = float(os.environ.get("QLOOP_SUITE_TIMEOUT", "120"))
ABORT_GRACE_S = 60.0
WATCHDOG_SIGNAL = signal.SIGUSR2


def _c_extensions_disabled(config: pytest.Config) -> str | None:
    # the same rule as tests/conftest.py (its helper is not importable from a sub-package)
    if os.environ.get("QLOOP_NO_EXTENSIONS"):
        return "QLOOP_NO_EXTENSIONS is set: the compiled core is not tested"
    if config.getoption("--no-c-extensions"):
        return "--no-c-extensions given: the compiled core is not tested"
    return None


def arm_skip_reason(arm: LoopArm, config: pytest.Config) -> str | None:
    if arm.id == "qloop-core":
        reason = _c_extensions_disabled(config)
        if reason is not None:
            return reason
    try:
        return arm.missing_reason()
    except ImportError:
        return None  # not a skip: the test itself fails on the same ImportError


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    exclusions = load_exclusions()
    skips: dict[str, str | None] = {}
    for item in items:
        cls = getattr(item, "cls", None)
        arm = getattr(cls, "loop_arm", None)
        if arm is None:
            continue
        if arm.id not in skips:
            skips[arm.id] = arm_skip_reason(arm, config)
        if skips[arm.id] is not None:
            item.add_marker(pytest.mark.skip(reason=skips[arm.id]))
            continue
        excluded = exclusion_for(f"{cls.suite_id}.{item.name}", exclusions)
        if excluded is not None:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"exclusions.txt:{excluded.line}: {excluded.reason}"
                )
            )


@pytest.fixture(
    params=[pytest.param(arm, id=arm.id, marks=arm.marks) for arm in SUITE_ARMS]
)
def loop_arm(request: pytest.FixtureRequest) -> LoopArm:
    """The selected loop arms, for plain pytest tests (third-party programs)."""
    arm: LoopArm = request.param
    reason = arm_skip_reason(arm, request.config)
    if reason is not None:
        pytest.skip(reason)
    return arm


def _uncaptured_stderr(config: pytest.Config) -> int | TextIO:
    """A file descriptor of the real stderr, which pytest's output capture does not swallow.

    pytest's faulthandler plugin keeps one (its stash key is not public API): use it when
    present, else sys.stderr (the dump may then be lost in the captured output).
    """
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        return config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):
        return sys.stderr


class TestTimedOut(SystemExit):
    """Raised in the main thread when a test overruns: that test fails, the run goes on.

    A SystemExit, because asyncio loops let it out of callbacks (``Exception`` would go to the
    exception handler) and unittest records it as the test's error (KeyboardInterrupt would
    stop pytest).
    """

    __test__ = False


class _Watchdog:
    """Fails the running test after TIMEOUT_S seconds.

    A timer thread sends WATCHDOG_SIGNAL to the main thread, whose handler raises
    :class:`TestTimedOut`: a real signal interrupts a wait in the kernel and wakes a loop that
    watches signals through ``signal.set_wakeup_fd``.  (Not SIGALRM: test_events uses it.)
    The handler stays installed for the session and raises only while a test is armed, so a
    signal handled late (after the test ended) cannot hit pytest's own code.
    """

    def __init__(self) -> None:
        self.nodeid: str | None = None
        self.timer: threading.Timer | None = None
        self.installed = False

    def _on_signal(self, signum: int, frame: object) -> None:
        nodeid, self.nodeid = self.nodeid, None
        if nodeid is not None:
            raise TestTimedOut(f"{nodeid} ran longer than {TIMEOUT_S:g} s")

    def arm(self, nodeid: str) -> None:
        if not self.installed:
            signal.signal(WATCHDOG_SIGNAL, self._on_signal)
            self.installed = True
        self.nodeid = nodeid
        main = threading.main_thread().ident
        self.timer = threading.Timer(
            TIMEOUT_S, signal.pthread_kill, (main, WATCHDOG_SIGNAL)
        )
        self.timer.daemon = True
        self.timer.start()

    def disarm(self) -> None:
        self.nodeid = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
            self.timer = None


_WATCHDOG = _Watchdog()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The test itself (for unittest classes: setUp, the test, tearDown) runs watched."""
    _WATCHDOG.arm(item.nodeid)
    yield
    _WATCHDOG.disarm()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """No garbage collection while pytest formats a report.

    A failed asyncio test leaves garbage whose finalizers run Python code; on CPython 3.11,
    when a collection runs them while pytest compiles source for the traceback, compile()
    fails ("AST constructor recursion depth mismatch") and the whole run stops with an
    internal error.
    """
    enabled = gc.isenabled()
    gc.disable()
    yield
    if enabled:
        gc.enable()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Last resort: abort the run, dumping every thread's traceback, if a test stays stuck."""
    faulthandler.dump_traceback_later(
        TIMEOUT_S + ABORT_GRACE_S, exit=True, file=_uncaptured_stderr(item.config)
    )
    yield
    faulthandler.cancel_dump_traceback_later()
