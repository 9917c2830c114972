"""Real I/O inside a virtual-time loop (docs/virtual-time.md): loopback TCP with virtual-time
retry logic, and subprocesses that the loop must not jump past."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from _vt_support import NO_REAL_WAIT, Stopwatch, run

SERVER_UP_AT = 5000.0  # virtual seconds: the server starts listening then
BACKOFF_CAP = 600.0  # exponential backoff 1, 2, 4, ... capped at 10 minutes


def expected_attempts() -> list[float]:
    """When a client retrying with capped exponential backoff tries to connect."""
    t, delay, out = 0.0, 1.0, []
    while True:
        out.append(t)
        if t >= SERVER_UP_AT:
            return out
        t += delay
        delay = min(delay * 2, BACKOFF_CAP)


def test_tcp_client_with_exponential_backoff_against_a_late_server(vt_loop):
    """The server's socket is bound at once but listens only at virtual 5000 s; the client
    retries with exponential backoff up to 10 minutes, then talks to it (the server answers
    after 30 virtual seconds).  Real time: milliseconds; virtual timestamps: exact."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    port = bound.getsockname()[1]
    attempts: list[float] = []
    log: list[tuple[str, float]] = []

    async def handle(reader, writer):
        request = await reader.readline()
        log.append(("server got " + request.decode().strip(), vt_loop.time()))
        await asyncio.sleep(30)
        writer.write(b"pong\n")
        await writer.drain()
        writer.close()

    async def server():
        await asyncio.sleep(SERVER_UP_AT)
        srv = await asyncio.start_server(handle, sock=bound)
        log.append(("listening", vt_loop.time()))
        return srv

    async def client():
        delay = 1.0
        while True:
            attempts.append(vt_loop.time())
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
        log.append(("connected", vt_loop.time()))
        writer.write(b"ping\n")
        reply = await asyncio.wait_for(reader.readline(), 60)
        log.append(("client got " + reply.decode().strip(), vt_loop.time()))
        writer.close()
        await writer.wait_closed()

    async def main():
        server_task = asyncio.ensure_future(server())
        await client()
        srv = await server_task
        srv.close()
        await srv.wait_closed()

    with Stopwatch() as sw:
        run(vt_loop, main())
    expected = expected_attempts()
    assert attempts == expected
    assert expected[-3:] == [4023.0, 4623.0, 5223.0]  # 1+2+...+512 = 1023, then every 600 s
    assert log == [("listening", 5000.0), ("connected", 5223.0),
                   ("server got ping", 5223.0), ("client got pong", 5253.0)]
    assert sw.wall < NO_REAL_WAIT, (sw.wall, sw.cpu)


def test_a_unix_socketpair_echo_in_virtual_time(vt_loop):
    a, b = socket.socketpair()

    async def main():
        ra, wa = await asyncio.open_connection(sock=a)
        rb, wb = await asyncio.open_connection(sock=b)
        for i in range(5):
            wa.write(b"%d\n" % i)
            line = await rb.readline()
            await asyncio.sleep(60)
            wb.write(line)
            assert await ra.readline() == b"%d\n" % i
        wa.close()
        wb.close()
        return vt_loop.time()

    assert run(vt_loop, main()) == 300.0


# ---------------------------------------------------------------------------------------------
# subprocesses (docs/virtual-time.md, "Real-time work")


def test_a_subprocess_is_not_jumped_past(vt_loop):
    """``sleep 0.2`` in a subprocess: the loop waits for it in real time; virtual time does not
    move while it runs, so a 0.1 s virtual timeout around it does not fire."""
    order = []

    async def sleeper():
        await asyncio.sleep(0.1)
        order.append(("sleeper", vt_loop.time()))

    async def main():
        task = asyncio.ensure_future(sleeper())
        proc = await asyncio.create_subprocess_exec("sleep", "0.2")
        code = await asyncio.wait_for(proc.wait(), 0.1)
        order.append((f"exited {code}", vt_loop.time()))
        await task

    with Stopwatch() as sw:
        run(vt_loop, main())
    assert order == [("exited 0", 0.0), ("sleeper", 0.1)]
    assert sw.wall >= 0.2


def test_a_subprocess_counts_as_real_time_work_until_its_status_is_in(vt_loop):
    """A child is real-time work from its spawn until its exit status reached the loop: one
    killed before it would exit ends it, a spawn that fails never starts it, and an idle loop
    jumps again at once afterwards."""

    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/qloop-test-program")
        assert vt_loop._vt_inflight == 0
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        assert vt_loop._vt_inflight == 1
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
        assert vt_loop._vt_inflight == 0
        start = vt_loop.time()
        await asyncio.sleep(3600)  # nothing in flight: a jump, not an hour
        assert vt_loop.time() == start + 3600

    with Stopwatch() as sw:
        run(vt_loop, main())
    assert sw.wall < 5.0
