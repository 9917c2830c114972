"""Fixtures for the asyncio event loop tests (``tests/test_aio_*.py``).

conftest.py registers this module as a plugin, so its fixtures reach every test; helpers
(``run``, ``Recorder``, ...) are imported from it (the tests directory is on ``sys.path``).
``loop_impl`` runs a test on qloop's two implementations
(``qloop-core``, marked ``c_extension``; ``qloop-fallback``) and on asyncio's own loop
(``asyncio``), the reference: a test written once passes on all three unless it checks
something only qloop has (those take ``qloop_loop_factory``, over the two qloop arms only).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from conftest import c_extensions_disabled, skip_without_io_uring

# Every blocking wait in these tests is bounded: run() fails a test instead of hanging it.
TIMEOUT = 10.0


@dataclass(frozen=True)
class LoopImpl:
    """One event loop implementation under test."""

    name: str  # "qloop-core", "qloop-fallback" or "asyncio"
    fdmon: str | None = None  # qloop: the loop runs on its own AioContext(fdmon=fdmon)

    @property
    def is_qloop(self) -> bool:
        return self.name != "asyncio"

    @property
    def module(self) -> ModuleType | None:
        if self.name == "qloop-core":
            return importlib.import_module("qloop._core")
        if self.name == "qloop-fallback":
            return importlib.import_module("qloop._fallback")
        return None

    def new_loop(self, **kwargs: Any) -> asyncio.AbstractEventLoop:
        mod = self.module
        if mod is None:
            assert not kwargs
            return asyncio.new_event_loop()
        if self.fdmon is not None:  # the factory closes the context after the loop
            ctx = mod.AioContext(fdmon=self.fdmon)
            return mod.new_event_loop(ctx=ctx, **kwargs)  # type: ignore[no-any-return]
        return mod.new_event_loop(**kwargs)  # type: ignore[no-any-return]


ALL_IMPLS = (
    pytest.param(LoopImpl("qloop-core"), marks=pytest.mark.c_extension, id="qloop-core"),
    pytest.param(LoopImpl("qloop-fallback"), id="qloop-fallback"),
    pytest.param(LoopImpl("asyncio"), id="asyncio"),
)


def usable_impl(request: pytest.FixtureRequest) -> LoopImpl:
    """The fixture's LoopImpl parameter; skipped when this run cannot have it (the core with
    the C extensions disabled, an io_uring context where the kernel refuses io_uring)."""
    impl: LoopImpl = request.param
    if impl.name == "qloop-core":
        reason = c_extensions_disabled(request.config)
        if reason is not None:
            pytest.skip(reason)
    if impl.fdmon == "io_uring":
        assert impl.module is not None
        skip_without_io_uring(impl.module)
    return impl


@pytest.fixture(params=ALL_IMPLS)
def loop_impl(request: pytest.FixtureRequest) -> LoopImpl:
    return usable_impl(request)


class LoopFactory:
    """Creates loops of one implementation; closes them all at teardown.

    Its teeth: every loop it makes gets an exception handler that records each call, then
    hands the context to ``loop.default_exception_handler`` (so the log is as usual).  A test
    fails at teardown if a loop's exception handler was called and the test neither expected
    it (``@pytest.mark.loop_errors``) nor installed a handler of its own.
    """

    def __init__(self, impl: LoopImpl, node: pytest.Item | None = None) -> None:
        self.impl = impl
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.errors: list[dict[str, Any]] = []
        self.errors_expected = node is not None and node.get_closest_marker("loop_errors")

    def __call__(self, **kwargs: Any) -> asyncio.AbstractEventLoop:
        loop = self.impl.new_loop(**kwargs)
        loop.set_exception_handler(self._record)
        self.loops.append(loop)
        return loop

    def _record(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(context)
        loop.default_exception_handler(context)

    def close_all(self) -> None:
        for loop in self.loops:
            if not loop.is_closed():
                loop.close()
            if self.impl.fdmon is not None:
                loop.aio_context.close()  # type: ignore[attr-defined]
        assert asyncio.events._get_running_loop() is None, "a test left a running loop"
        if self.errors and not self.errors_expected:
            detail = "\n".join(
                f"  {c.get('message')!r}: {c.get('exception')!r}" for c in self.errors)
            pytest.fail(f"the loop's exception handler was called {len(self.errors)} time(s) "
                        f"and the test did not expect it (@pytest.mark.loop_errors):\n{detail}",
                        pytrace=False)


@pytest.fixture
def loop_factory(loop_impl: LoopImpl, request: pytest.FixtureRequest) -> Iterator[LoopFactory]:
    factory = LoopFactory(loop_impl, request.node)
    yield factory
    factory.close_all()


@pytest.fixture
def loop(loop_factory: LoopFactory) -> asyncio.AbstractEventLoop:
    return loop_factory()


@pytest.fixture
def qloop_loop_factory(qloop_module: ModuleType,
                       request: pytest.FixtureRequest) -> Iterator[LoopFactory]:
    """Like ``loop_factory`` over qloop's two implementations only (``qloop_module``)."""
    name = "qloop-fallback" if qloop_module.__name__ == "qloop._fallback" else "qloop-core"
    factory = LoopFactory(LoopImpl(name), request.node)
    yield factory
    factory.close_all()


@pytest.fixture
def qloop_loop(qloop_loop_factory: LoopFactory) -> asyncio.AbstractEventLoop:
    return qloop_loop_factory()


def run(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = TIMEOUT) -> Any:
    """``loop.run_until_complete(coro)``, failing (not hanging) after ``timeout`` seconds."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def run_once(loop: asyncio.AbstractEventLoop) -> None:
    """Exactly one iteration of ``loop`` (asyncio's idiom: stop() before run_forever())."""
    loop.stop()
    loop.run_forever()


def collect() -> None:
    for _ in range(3):
        gc.collect()


class RecordingProtocol(asyncio.BaseProtocol):
    """What a transport tells its protocol, in order, in ``events`` ("made", "pause", "resume",
    ("lost", exc)); ``done`` resolves with connection_lost's argument.  The tests' protocols
    add what their kind of transport delivers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Any = None
        self.events: list[Any] = []
        self.done = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append(("lost", exc))
        if not self.done.done():
            self.done.set_result(exc)


class Recorder:
    """Collects exception-handler contexts (``loop.set_exception_handler(rec)``)."""

    def __init__(self) -> None:
        self.contexts: list[dict] = []

    def __call__(self, loop: Any, context: dict) -> None:
        self.contexts.append(context)


def watchdog(loop: asyncio.AbstractEventLoop, seconds: float = TIMEOUT) -> Callable[[], None]:
    """Stop ``loop`` after ``seconds`` so a blocking run_forever() cannot hang a test; returns
    a function that tells whether it fired."""
    fired = []

    def fire() -> None:
        fired.append(True)
        loop.stop()

    handle = loop.call_later(seconds, fire)

    def check() -> None:
        handle.cancel()
        assert not fired, f"the loop did not finish within {seconds} s"

    return check
