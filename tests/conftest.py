"""Shared fixtures for the qloop behaviour suite.

Every behaviour test runs twice: once against the compiled core (``qloop._core``,
id ``cython``, marked ``c_extension``) and once against the pure-Python fallback
(``qloop._fallback``, id ``python``).  Tests take ``qloop_module`` (or ``ctx`` /
``make_ctx``) and never import names from ``qloop`` directly.

The cython arm is skipped when ``QLOOP_NO_EXTENSIONS`` is non-empty or when pytest
is given ``--no-c-extensions``; otherwise a failure to import ``qloop._core`` fails
the tests (it is never silently skipped).
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

# pytester runs inner pytest sessions (the plugin tests); qloop's own plugin is registered by
# its module name, the name its entry point has once qloop is installed (then this is a no-op).
# The _*_support modules hold fixtures shared by several test files (loop, main_loop, vt_loop, ...).
pytest_plugins = ("pytester", "qloop.pytest_plugin", "_aio_support", "_mainloop_support", "_vt_support")


# A shell's background job starts with SIGINT ignored, and Python then leaves it ignored; the
# tests (CPython's asyncio suite, asyncio.run's Ctrl-C handling) expect Python's own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class QloopImplementation:
    """One of the two implementations of qloop."""

    is_pure_python: bool

    @property
    def tag(self) -> str:
        return "python" if self.is_pure_python else "cython"

    @property
    def module_name(self) -> str:
        return "qloop._fallback" if self.is_pure_python else "qloop._core"

    @property
    def imported_module(self) -> ModuleType:
        return importlib.import_module(self.module_name)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="Skip the tests of the compiled core (qloop._core).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "c_extension: tests that run against the compiled core (qloop._core)",
    )
    config.addinivalue_line(
        "markers",
        "leftovers: the ctx/make_ctx contexts may keep BHs, timers or fd handlers at teardown",
    )
    config.addinivalue_line(
        "markers",
        "loop_errors: the asyncio loops of loop_factory/qloop_loop_factory may call their "
        "exception handler",
    )


def c_extensions_disabled(config: pytest.Config) -> str | None:
    """Return the reason the compiled arm is skipped, or None."""
    if os.environ.get("QLOOP_NO_EXTENSIONS"):
        return "QLOOP_NO_EXTENSIONS is set: the compiled core is not tested"
    if config.getoption("--no-c-extensions"):
        return "--no-c-extensions given: the compiled core is not tested"
    return None


@pytest.fixture(
    scope="session",
    params=(
        pytest.param(
            QloopImplementation(is_pure_python=False),
            marks=pytest.mark.c_extension,
            id="cython",
        ),
        pytest.param(QloopImplementation(is_pure_python=True), id="python"),
    ),
)
def qloop_impl(request: pytest.FixtureRequest) -> QloopImplementation:
    impl: QloopImplementation = request.param
    if not impl.is_pure_python:
        reason = c_extensions_disabled(request.config)
        if reason is not None:
            pytest.skip(reason)
    return impl


@pytest.fixture(scope="session")
def qloop_module(qloop_impl: QloopImplementation) -> ModuleType:
    # No try/except: an ImportError of qloop._core must fail the tests.
    return importlib.import_module(qloop_impl.module_name)


def io_uring_unavailable(qloop_module: ModuleType) -> str | None:
    """Why ``AioContext(fdmon="io_uring")`` is unavailable in this implementation here, or
    None.  The pure-Python implementation never has it; the compiled core has it where the
    kernel lets it set up a ring (tests/test_fdmon_io_uring.py checks both answers)."""
    try:
        qloop_module.AioContext(fdmon="io_uring").close()
    except OSError as exc:
        return str(exc)
    return None


def skip_without_io_uring(qloop_module: ModuleType) -> None:
    reason = io_uring_unavailable(qloop_module)
    if reason is not None:
        pytest.skip(reason)


def _drain(ctx) -> None:
    for _ in range(1000):
        if not ctx.poll(False):
            return
    raise AssertionError("context did not drain in 1000 non-blocking polls")


class ContextChecks:
    """The teeth of the ``ctx`` and ``make_ctx`` fixtures (uvloop's test base does the same).

    * Every context those fixtures make gets a recording exception handler.  It re-raises
      what it records, so ``poll()`` behaves as with no handler (the iteration completes,
      then the first exception is raised, later ones are logged); but every callback
      exception is remembered, and the test fails at teardown unless it declared exactly
      those exceptions: ``ctx_checks.expect_errors(ZeroDivisionError, ...)`` (one type per
      expected call, any order).  A test that installs its own handler (or None) replaces
      the recorder on that context.
    * At teardown every context the test did not close must have no scheduled BH, no armed
      timer (other than a ``watchdog``) and no fd handler left: clean up, or declare it with
      ``@pytest.mark.leftovers`` / ``ctx_checks.allow_leftovers(ctx)``.
    """

    def __init__(self, node: pytest.Item) -> None:
        self.recorded: list[BaseException] = []
        self.expected: list[type] = []
        self.leftovers_ok: set[int] = set()
        self.all_leftovers_ok = node.get_closest_marker("leftovers") is not None
        self.watchdogs: list[Watchdog] = []

    # ---- what a test declares

    def expect_errors(self, *types: type) -> None:
        """The recording handler will be called once with an instance of each type."""
        self.expected.extend(types)

    def allow_leftovers(self, c: object | None = None) -> None:
        """``c`` (or, without an argument, every context) may keep BHs/timers/handlers."""
        if c is None:
            self.all_leftovers_ok = True
        else:
            self.leftovers_ok.add(id(c))

    # ---- what the fixtures do

    def record(self, c: object, exc: BaseException) -> None:
        self.recorded.append(exc)
        raise exc

    def adopt(self, c) -> None:
        c.set_exception_handler(self.record)

    def check_leftovers(self, c) -> None:
        if c.closed or self.all_leftovers_ok or id(c) in self.leftovers_ok:
            return
        bhs, timers, handlers = c.resource_counts()
        timers -= sum(1 for d in self.watchdogs if d.ctx is c and d.timer.pending)
        if bhs or timers or handlers:
            pytest.fail(
                f"the test left {bhs} scheduled BH(s), {timers} armed timer(s) and "
                f"{handlers} fd handler(s) in {c!r}: clean up (bh.delete(), timer.delete(), "
                "ctx.set_fd_handler(fd)) or declare it (@pytest.mark.leftovers or "
                "ctx_checks.allow_leftovers(ctx))",
                pytrace=False,
            )

    def check_errors(self) -> None:
        unmatched = list(self.expected)
        unexpected: list[BaseException] = []
        for exc in self.recorded:
            for i, t in enumerate(unmatched):
                if isinstance(exc, t):
                    del unmatched[i]
                    break
            else:
                unexpected.append(exc)
        self.recorded.clear()
        if unexpected:
            detail = "".join(
                "".join(traceback.format_exception(type(e), e, e.__traceback__))
                for e in unexpected
            )
            pytest.fail(
                f"{len(unexpected)} callback exception(s) the test did not declare "
                "(declare them with ctx_checks.expect_errors(...)):\n"
                + detail,
                pytrace=False,
            )
        if unmatched:
            names = ", ".join(t.__name__ for t in unmatched)
            pytest.fail(f"declared callback exception(s) never raised: {names}", pytrace=False)


@pytest.fixture
def ctx_checks(request: pytest.FixtureRequest) -> Iterator[ContextChecks]:
    """The checks behind ``ctx`` / ``make_ctx``; request it to declare expectations."""
    checks = ContextChecks(request.node)
    yield checks
    checks.check_errors()


@pytest.fixture
def ctx(qloop_module: ModuleType, ctx_checks: ContextChecks) -> Iterator[object]:
    """A fresh, drained AioContext (default fd monitor), closed at teardown (see
    ``ContextChecks`` for what the teardown checks)."""
    c = qloop_module.AioContext()
    _drain(c)
    ctx_checks.adopt(c)
    yield c
    try:
        ctx_checks.check_leftovers(c)
    finally:
        c.close()


@pytest.fixture
def make_ctx(
    qloop_module: ModuleType, ctx_checks: ContextChecks
) -> Iterator[Callable[..., object]]:
    """Factory: ``make_ctx(fdmon="auto", drain=True)``; contexts are closed at teardown
    (after the checks of ``ContextChecks``).

    A test that closes a context itself passes ``owned=False`` to take it out of
    the teardown list.
    """
    created: list[object] = []

    def factory(fdmon: str = "auto", drain: bool = True, owned: bool = True):
        if fdmon == "io_uring":
            skip_without_io_uring(qloop_module)
        c = qloop_module.AioContext(fdmon=fdmon)
        if owned:
            created.append(c)
        if drain:
            _drain(c)
        ctx_checks.adopt(c)
        return c

    yield factory
    try:
        for c in created:
            ctx_checks.check_leftovers(c)
    finally:
        for c in created:
            c.close()


@pytest.fixture(autouse=True)
def _reset_clock_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Undo module-level clock changes (manual clock, VIRTUAL enabled) after a test."""
    yield
    if "qloop_module" not in request.fixturenames:
        return
    mod = request.getfixturevalue("qloop_module")
    if hasattr(mod, "clock_set_manual"):
        mod.clock_set_manual(False)
    if hasattr(mod, "clock_enable"):
        mod.clock_enable(mod.ClockType.VIRTUAL, False)


class Watchdog:
    """A REALTIME timer that makes a blocking poll return if the test would hang."""

    def __init__(self, qloop_module: ModuleType, ctx, seconds: float) -> None:
        self.fired = False
        self.ctx = ctx
        rt = qloop_module.ClockType.REALTIME
        self.timer = ctx.timer_new_ns(rt, self._fire)
        self.timer.mod_ns(qloop_module.clock_get_ns(rt) + int(seconds * 1e9))

    def _fire(self) -> None:
        self.fired = True

    def cancel(self) -> None:
        self.timer.delete()


@pytest.fixture
def watchdog(
    qloop_module: ModuleType, ctx_checks: ContextChecks
) -> Iterator[Callable[..., Watchdog]]:
    """``watchdog(ctx, seconds)``: arm a REALTIME timer so a blocking poll cannot hang.

    Arming a timer that becomes the head of the list notifies the context, so arm
    the watchdog *before* draining / before the step under test.
    """
    dogs: list[Watchdog] = []

    def factory(c, seconds: float = 5.0) -> Watchdog:
        d = Watchdog(qloop_module, c, seconds)
        dogs.append(d)
        ctx_checks.watchdogs.append(d)  # not a leftover of the test
        return d

    yield factory
    for d in dogs:
        try:
            d.cancel()
        except RuntimeError:
            pass  # its context was closed by the test


@pytest.fixture
def poll_until(qloop_module: ModuleType) -> Callable[..., int]:
    """``poll_until(ctx, cond, timeout=5.0)``: blocking polls until ``cond()``.

    A REALTIME watchdog timer bounds every blocking wait, so a lost wake-up makes
    the test fail instead of hanging.  Returns the number of polls made.
    """

    def run(c, cond: Callable[[], bool], timeout: float = 5.0) -> int:
        dog = Watchdog(qloop_module, c, timeout)
        deadline = time.monotonic() + timeout + 1.0
        n = 0
        try:
            while not cond():
                if dog.fired or time.monotonic() > deadline:
                    pytest.fail(f"condition not reached within {timeout} s ({n} polls)")
                c.poll(True)
                n += 1
        finally:
            dog.cancel()
        return n

    return run


class ThreadRunner:
    """Start threads that record their exceptions; join with a timeout (fail, not hang)."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, target: Callable[..., object], *args: object) -> threading.Thread:
        def wrapper() -> None:
            try:
                target(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by join_all
                self.errors.append(exc)

        t = threading.Thread(target=wrapper, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def join_all(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} thread(s) did not finish within {timeout} s"
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def threads() -> Iterator[ThreadRunner]:
    runner = ThreadRunner()
    yield runner
    # Best effort: never leave the test without trying to join.
    for t in runner.threads:
        t.join(5.0)


@pytest.fixture
def sockpair() -> Iterator[Callable[[], tuple]]:
    """Factory of non-blocking socket pairs, all closed at teardown."""
    import socket

    made: list = []

    def factory():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        made.extend((a, b))
        return a, b

    yield factory
    for s in made:
        s.close()


def _recv_all(sock) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


@pytest.fixture
def recv_all() -> Callable[[object], bytes]:
    """``recv_all(sock)``: read everything currently available from a non-blocking socket."""
    return _recv_all
