"""The asyncio event loop: exceptions, the exception-handler API and debug mode (qloop's two
implementations and asyncio's loop as the reference)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from types import ModuleType

import pytest

from _aio_support import (
    Recorder,
    collect,
    run,
    run_once,
)
from _mainloop_support import run_python_json


def fail() -> None:
    raise ValueError("boom")


def test_exception_goes_to_handler_and_loop_goes_on(loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    loop.set_exception_handler(rec)
    assert loop.get_exception_handler() is rec
    seen = []
    h = loop.call_soon(fail)
    loop.call_soon(seen.append, "after")
    loop.call_later(0, fail)
    run_once(loop)
    run_once(loop)
    assert seen == ["after"]
    assert len(rec.contexts) == 2
    ctx = rec.contexts[0]
    assert ctx["message"].startswith("Exception in callback ")
    assert "fail" in ctx["message"]
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["handle"] is h
    assert isinstance(rec.contexts[1]["exception"], ValueError)


def test_exception_in_reader_goes_to_handler(loop: asyncio.AbstractEventLoop) -> None:
    import socket

    rec = Recorder()
    loop.set_exception_handler(rec)
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, fail)
        b.send(b"x")
        loop.call_later(0.01, loop.stop)
        loop.run_forever()
        loop.remove_reader(a)
    finally:
        a.close()
        b.close()
    assert rec.contexts and isinstance(rec.contexts[0]["exception"], ValueError)


@pytest.mark.loop_errors
def test_default_handler_logs(loop: asyncio.AbstractEventLoop,
                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(fail)
        run_once(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Exception in callback ")
    assert "handle: <Handle" in records[0].getMessage()
    assert records[0].exc_info and records[0].exc_info[0] is ValueError


@pytest.mark.loop_errors
def test_call_exception_handler_direct(loop: asyncio.AbstractEventLoop,
                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "custom", "extra": 5})
        loop.call_exception_handler({})
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert msgs == ["custom\nextra: 5", "Unhandled exception in event loop"]


def test_failing_handler_is_reported(loop: asyncio.AbstractEventLoop,
                                     caplog: pytest.LogCaptureFixture) -> None:
    def bad_handler(lp: object, context: dict) -> None:
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(fail)
        run_once(loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(msgs) == 1 and msgs[0].startswith("Unhandled error in exception handler")


def test_set_exception_handler_checks(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(TypeError, match="A callable object or None is expected"):
        loop.set_exception_handler(42)  # type: ignore[arg-type]
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_default_exception_handler_with_traceback_keys(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    import traceback

    tb = traceback.extract_stack()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "m", "source_traceback": tb})
    msg = caplog.records[-1].getMessage()
    assert "Object created at (most recent call last):" in msg


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate(loop: asyncio.AbstractEventLoop,
                                   exc_type: type) -> None:
    seen = []

    def interrupt() -> None:
        raise exc_type()

    loop.call_soon(interrupt)
    loop.call_soon(seen.append, "queued")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert asyncio.events._get_running_loop() is None
    run_once(loop)  # the loop stays usable; nothing queued is lost
    assert seen == ["queued"]


def test_keyboard_interrupt_in_timer(loop: asyncio.AbstractEventLoop) -> None:
    seen = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_later(0.001, interrupt)
    loop.call_later(0.002, seen.append, "timer")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["timer"]


def test_keyboard_interrupt_in_run_until_complete(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())


def test_task_exception_never_retrieved(loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    loop.set_exception_handler(rec)

    async def broken() -> None:
        raise ValueError("lost")

    task = loop.create_task(broken())
    run_once(loop)
    run_once(loop)
    del task
    collect()
    assert any(c.get("message") == "Task exception was never retrieved"
               for c in rec.contexts)


# --------------------------------------------------------------------------------------------
# debug mode


def test_set_debug(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_debug(True)
    assert loop.get_debug()
    assert "debug=True" in repr(loop)
    loop.set_debug(False)
    assert not loop.get_debug()


def test_debug_slow_callback_warning(loop: asyncio.AbstractEventLoop,
                                     caplog: pytest.LogCaptureFixture) -> None:
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow() -> None:
        time.sleep(0.02)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow)
        run_once(loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert any(m.startswith("Executing <Handle ") and "slow()" in m and "took" in m
               for m in msgs)


def test_debug_non_threadsafe_call_from_other_thread(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_debug(True)
    errors = []

    def other() -> None:
        for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                     lambda: loop.call_at(1, print)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=other).start())
    guard = loop.call_later(10, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert len(errors) == 3
    assert all("Non-thread-safe operation" in e for e in errors)


def test_debug_source_traceback(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_debug(True)
    h = loop.call_soon(print)
    assert h._source_traceback  # type: ignore[attr-defined]
    frame = h._source_traceback[-1]  # type: ignore[attr-defined]
    assert frame[0] == __file__ and frame[2] == "test_debug_source_traceback"
    assert "created at " + __file__ in repr(h)
    h.cancel()
    assert "cancelled" in repr(h)


def test_debug_coroutine_origin_tracking(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_debug(True)
    depth = sys.get_coroutine_origin_tracking_depth()

    async def main() -> int:
        return sys.get_coroutine_origin_tracking_depth()

    assert run(loop, main()) > 0
    assert sys.get_coroutine_origin_tracking_depth() == depth


def test_pythonasynciodebug_enables_debug(qloop_module: ModuleType) -> None:
    code = (f"import json, {qloop_module.__name__} as m; "
            f"loop = m.new_event_loop(); print(json.dumps(loop.get_debug())); loop.close()")
    assert run_python_json(qloop_module, code, PYTHONASYNCIODEBUG="1") is True


def test_default_debug_mode_follows_asyncio(loop_factory: object) -> None:
    from unittest import mock

    with mock.patch("asyncio.coroutines._is_debug_mode", lambda: True):
        loop = loop_factory()  # type: ignore[operator]
    assert loop.get_debug()


def test_exceptions_of_qloop_callbacks_on_an_owned_context(
        qloop_loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    qloop_loop.set_exception_handler(rec)
    ctx = qloop_loop.aio_context  # type: ignore[attr-defined]
    ctx.bh_schedule_oneshot(fail)
    run_once(qloop_loop)
    assert len(rec.contexts) == 1
    assert isinstance(rec.contexts[0]["exception"], ValueError)
    assert "AioContext" in rec.contexts[0]["message"]
