"""pytest plugin: run async tests in virtual time on qloop's event loop.

Installed with qloop (entry point ``pytest11``), so pytest loads it by itself; without the
installed metadata (a source checkout), load it with ``-p qloop.pytest_plugin``.

* ``@pytest.mark.qloop_virtual_time`` (keywords ``autojump``, ``start``, ``autojump_after``,
  as ``qloop.new_event_loop``'s) on an ``async def`` test runs it on a new virtual-time loop
  (the ``qloop_virtual_loop`` fixture), closed afterwards as ``asyncio.run`` would.
* ``qloop_clock``: the virtual clock of the loop the test runs on (this plugin's, or any
  virtual-time qloop loop that is running, e.g. one made by pytest-asyncio or anyio through
  the recipes of docs/virtual-time.md): ``time()``, ``await advance(seconds)``.

The plugin imports qloop only when a test uses it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["VirtualClock", "qloop_clock", "qloop_virtual_loop"]

MARKER = "qloop_virtual_time"
_OPTIONS = ("autojump", "start", "autojump_after")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*, autojump=True, start=0.0, autojump_after=None): run this async def test "
        "on a new virtual-time qloop event loop (docs/virtual-time.md)")


def _marker_options(node: pytest.Item) -> dict[str, Any]:
    marker = node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    unknown = sorted(set(marker.kwargs) - set(_OPTIONS))
    if marker.args or unknown:
        pytest.fail(f"{node.nodeid}: @pytest.mark.{MARKER} takes only the keywords "
                    f"{', '.join(_OPTIONS)} (got {list(marker.args) + unknown})", pytrace=False)
    return dict(marker.kwargs)


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does after the main coroutine: cancel the tasks left, close async
    generators, shut the default executor down, close the loop."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@pytest.fixture
def qloop_virtual_loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A new virtual-time qloop event loop (``qloop.new_event_loop(virtual_time=True)``, with
    the ``qloop_virtual_time`` marker's keywords); finished and closed after the test."""
    import qloop

    loop = qloop.new_event_loop(virtual_time=True, **_marker_options(request.node))
    try:
        yield loop
    finally:
        _finish(loop)


class VirtualClock:
    """The clock of a virtual-time qloop event loop, for tests (the ``qloop_clock`` fixture).

    ``loop`` is the running loop when it is a virtual-time qloop loop, else the test's
    ``qloop_virtual_loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> Any:
        running = asyncio._get_running_loop()
        if running is not None and getattr(running, "virtual_time", False):
            return running
        if self._loop is not None:
            return self._loop
        raise RuntimeError(
            "qloop_clock: no virtual-time qloop event loop; mark the test with "
            f"@pytest.mark.{MARKER} or run it on qloop.new_event_loop(virtual_time=True)")

    def time(self) -> float:
        """The loop's virtual time (``loop.time()``)."""
        return float(self.loop.time())

    async def advance(self, seconds: float) -> float:
        """``await qloop.advance(seconds)`` on the running loop: move virtual time forward,
        running every callback due on the way; returns the new time."""
        from ._aio.virtual_time import advance

        return await advance(seconds)

    @property
    def autojump(self) -> bool:
        """Whether the loop jumps to its next deadline when idle (else only ``advance``)."""
        return bool(self.loop.autojump)

    def __repr__(self) -> str:
        try:
            return f"<VirtualClock time={self.time()!r}>"
        except RuntimeError:
            return "<VirtualClock (no virtual-time loop)>"


@pytest.fixture
def qloop_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """The virtual clock of the test's loop: ``time()``, ``await advance(seconds)``."""
    loop = None
    if request.node.get_closest_marker(MARKER) is not None:
        loop = request.getfixturevalue("qloop_virtual_loop")
    return VirtualClock(loop)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (item.get_closest_marker(MARKER) is not None and isinstance(item, pytest.Function)
                and "qloop_virtual_loop" not in item.fixturenames):
            item.fixturenames.append("qloop_virtual_loop")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER) is None:
        return
    for other in ("asyncio", "anyio", "trio"):
        if item.get_closest_marker(other) is not None:
            pytest.fail(
                f"{item.nodeid}: @pytest.mark.{MARKER} and @pytest.mark.{other} both claim "
                f"this test (pytest-asyncio's auto mode marks every async test); use one, or "
                f"the pytest-asyncio/anyio recipe of qloop's docs/virtual-time.md",
                pytrace=False)
    function = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(function):
        pytest.fail(f"{item.nodeid}: @pytest.mark.{MARKER} marks an async def test",
                    pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker(MARKER) is None:
        return None
    loop: Any = pyfuncitem.funcargs["qloop_virtual_loop"]
    names = pyfuncitem._fixtureinfo.argnames
    coro = pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names})
    loop.run_until_complete(coro)
    return True
