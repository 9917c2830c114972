"""Deadlock detection of virtual-time loops (docs/virtual-time.md, "Deadlocks"): the error, its
report of the pending tasks, and which fds count as able to wake the loop."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time

import pytest

from _vt_support import NO_REAL_WAIT, Stopwatch, run

HERE = os.path.abspath(__file__)


def line_of(marker: str) -> int:
    with open(HERE, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if marker in line and "line_of(" not in line:
                return n
    raise AssertionError(marker)


def test_a_task_awaiting_a_future_nobody_resolves(vt_loop, qloop_module):
    nobody = vt_loop.create_future()

    async def stuck():
        await nobody  # STUCK-HERE

    async def main():
        worker = asyncio.ensure_future(stuck())
        worker.set_name("stuck-worker")
        await worker  # MAIN-WAITS

    with Stopwatch() as sw, pytest.raises(qloop_module.VirtualTimeDeadlock) as info:
        run(vt_loop, main())
    assert sw.wall < NO_REAL_WAIT
    err = info.value
    assert isinstance(err, RuntimeError)
    text = str(err)
    assert "would wait forever at loop time 0.0" in text
    assert "Task 'stuck-worker' (test_a_task_awaiting_a_future_nobody_resolves.<locals>." \
           "stuck())" in text
    assert f"{HERE}:{line_of('# STUCK-HERE')} in stuck" in text
    assert f"{HERE}:{line_of('# MAIN-WAITS')} in main" in text
    assert {t.get_name() for t in err.tasks} >= {"stuck-worker"}
    assert err.loop_time == 0.0
    assert qloop_module.VirtualTimeDeadlock is err.__class__


def test_the_report_shows_the_whole_await_chain(vt_loop, qloop_module):
    async def inner():
        await asyncio.Event().wait()  # INNER

    async def outer():
        await inner()  # OUTER

    with pytest.raises(qloop_module.VirtualTimeDeadlock) as info:
        run(vt_loop, outer())
    text = str(info.value)
    chain = re.search(r"suspended at (.*);", text).group(1).split(" -> ")
    assert chain[0] == f"{HERE}:{line_of('# OUTER')} in outer"
    assert chain[1] == f"{HERE}:{line_of('# INNER')} in inner"
    assert chain[2].endswith(" in wait")  # asyncio.Event.wait


def test_deadlock_after_time_moved(vt_loop, qloop_module):
    async def main():
        await asyncio.sleep(100)
        await vt_loop.create_future()

    with pytest.raises(qloop_module.VirtualTimeDeadlock) as info:
        run(vt_loop, main())
    assert info.value.loop_time == 100.0


def test_manual_mode_waiting_on_a_timer_without_advance(vt_loop_factory, qloop_module):
    loop = vt_loop_factory(autojump=False)

    async def main():
        await asyncio.sleep(1.5)

    with pytest.raises(qloop_module.VirtualTimeDeadlock) as info:
        run(loop, main())
    text = str(info.value)
    assert "autojump=False" in text
    assert "the next timer is due at loop time 1.5" in text


def test_the_loop_stays_usable_after_a_deadlock(vt_loop, qloop_module):
    fut = vt_loop.create_future()
    with pytest.raises(qloop_module.VirtualTimeDeadlock):
        run(vt_loop, fut)
    vt_loop.call_soon(fut.set_result, 5)
    assert run(vt_loop, fut) == 5


def test_qloop_run_reports_and_cleans_up(qloop_module):
    async def main():
        await asyncio.get_running_loop().create_future()

    with pytest.raises(qloop_module.VirtualTimeDeadlock):
        qloop_module.run(main(), virtual_time=True)
    assert not qloop_module.clock_is_manual()


# ---------------------------------------------------------------------------------------------
# which fds could wake the loop


def test_a_listening_server_alone_does_not_count(vt_loop, qloop_module):
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        async with server:
            await asyncio.get_running_loop().create_future()

    with pytest.raises(qloop_module.VirtualTimeDeadlock) as info:
        run(vt_loop, main())
    assert "listening socket" in str(info.value)


def test_a_tcp_connection_between_two_ends_of_the_loop_does_not_count(vt_loop, qloop_module):
    """Server and client both in the loop, each waiting to read: nothing can ever come."""

    async def main():
        async def handle(reader, writer):
            try:
                await reader.read(1)  # the server waits for a request the client never sends
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await reader.read(1)  # ... and the client for a reply
            finally:
                writer.close()

    with pytest.raises(qloop_module.VirtualTimeDeadlock) as info:
        run(vt_loop, main())
    text = str(info.value)
    assert "TCP connection to fd" in text and "of this loop" in text
    # finish the tasks here: the error holds the only strong reference to the client's task
    # (asyncio's client streams are weakly referenced by their protocol)
    for task in info.value.tasks:
        task.cancel()
    run(vt_loop, asyncio.gather(*info.value.tasks, return_exceptions=True))


def test_a_connection_to_another_thread_is_waited_for(vt_loop):
    """A peer outside the loop (here a thread) may still answer: the loop waits for it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def peer():
        conn, _ = listener.accept()
        with conn:
            time.sleep(0.05)
            conn.sendall(b"late reply")

    thread = threading.Thread(target=peer)
    thread.start()

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await reader.read(100), vt_loop.time()
        finally:
            writer.close()

    try:
        assert run(vt_loop, main()) == (b"late reply", 0.0)
    finally:
        thread.join()
        listener.close()


def test_a_pipe_is_waited_for(vt_loop):
    r, w = os.pipe()
    os.set_blocking(r, False)

    def writer():
        time.sleep(0.05)
        os.write(w, b"!")

    thread = threading.Thread(target=writer)
    thread.start()

    async def main():
        got = vt_loop.create_future()
        vt_loop.add_reader(r, lambda: got.done() or got.set_result(os.read(r, 1)))
        try:
            return await got
        finally:
            vt_loop.remove_reader(r)

    try:
        assert run(vt_loop, main()) == b"!"
    finally:
        thread.join()
        os.close(r)
        os.close(w)


def test_call_soon_threadsafe_from_a_running_executor_job(vt_loop):
    """An executor job is real-time work: the loop waits for what it sends."""

    async def main():
        got = vt_loop.create_future()

        def job():
            time.sleep(0.05)
            vt_loop.call_soon_threadsafe(got.set_result, "from the job")

        job_done = vt_loop.run_in_executor(None, job)
        value = await got
        await job_done
        return value

    assert run(vt_loop, main()) == "from the job"


def test_a_realtime_qloop_timer_on_the_context_is_waited_for(vt_loop, qloop_module):
    REALTIME = qloop_module.ClockType.REALTIME

    async def main():
        fut = vt_loop.create_future()
        timer = vt_loop.aio_context.timer_new_ns(REALTIME, lambda: fut.set_result("real"))
        timer.mod_ns(qloop_module.clock_get_ns(REALTIME) + 30_000_000)
        return await fut

    assert run(vt_loop, main()) == "real"
