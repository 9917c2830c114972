"""anyio's asyncio backend on qloop's loop: ``anyio.run(..., backend_options={"loop_factory":
...})``, the way anyio users pick an event loop.

Task groups (results, an error cancelling the siblings, nested groups), cancel scopes
(``move_on_after``, ``fail_after``, shielding, cancelling from outside), sockets
(``create_tcp_listener`` / ``connect_tcp`` on 127.0.0.1, a UDP socket pair), subprocesses
(``run_process``, ``open_process`` with streamed stdin/stdout) and threads
(``to_thread.run_sync``, ``from_thread.run`` back into the loop), each on qloop's two
implementations and on asyncio's own loop.  Every test body runs under ``fail_after``: a lost
wake-up fails the test instead of hanging it; nothing sleeps to let something settle.
"""

from __future__ import annotations

import sys
import threading

import pytest

anyio = pytest.importorskip("anyio", reason="pip install -r requirements/test.txt")

from anyio import from_thread, to_thread

TIMEOUT_S = 30.0


def run(loop_impl, main, *args):
    """``anyio.run(main, *args)`` on the loop under test, bounded; returns main's result."""

    async def bounded():
        with anyio.fail_after(TIMEOUT_S):
            return await main(*args)

    loop_types = []

    async def wrapper():
        import asyncio

        loop_types.append(type(asyncio.get_running_loop()))
        return await bounded()

    result = anyio.run(
        wrapper, backend="asyncio", backend_options={"loop_factory": loop_impl.new_loop}
    )
    if loop_impl.is_qloop:
        assert loop_types[0].__module__.startswith("qloop."), loop_types
    return result


def test_task_group_results_and_nesting(loop_impl):
    async def main():
        results = {}

        async def worker(i: int, event: anyio.Event) -> None:
            await event.wait()
            await anyio.sleep(0)
            results[i] = i * i

        go = anyio.Event()
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(worker, i, go)
            async with anyio.create_task_group() as inner:
                inner.start_soon(worker, 100, go)
                go.set()
        return results

    assert run(loop_impl, main) == {**{i: i * i for i in range(50)}, 100: 10000}


def test_task_group_error_cancels_siblings(loop_impl):
    async def main():
        cancelled = []

        async def sibling() -> None:
            try:
                await anyio.Event().wait()
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise

        async def failing(started: anyio.Event) -> None:
            await started.wait()
            raise ValueError("boom")

        started = anyio.Event()
        with pytest.raises(ExceptionGroup) as info:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(sibling)
                tg.start_soon(failing, started)
                started.set()
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        return cancelled

    assert run(loop_impl, main) == [True, True, True]


def test_task_group_start_reports_value(loop_impl):
    async def main():
        async def server(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
            task_status.started("ready")
            await anyio.Event().wait()

        async with anyio.create_task_group() as tg:
            value = await tg.start(server)
            tg.cancel_scope.cancel()
        return value

    assert run(loop_impl, main) == "ready"


def test_cancel_scopes(loop_impl):
    async def main():
        never = anyio.Event()
        with anyio.move_on_after(0.01) as scope:
            await never.wait()
        timed_out = scope.cancelled_caught

        with pytest.raises(TimeoutError), anyio.fail_after(0.01):
            await never.wait()

        # a shielded scope finishes its work although the outer scope was cancelled
        shielded_done = False
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0)
                shielded_done = True
            await anyio.sleep(0)  # the cancellation is delivered here
        outer_caught = outer.cancelled_caught

        # cancelled from another task
        async def waiter(scope_box: list, started: anyio.Event) -> None:
            with anyio.CancelScope() as s:
                scope_box.append(s)
                started.set()
                await never.wait()

        box: list = []
        started = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, box, started)
            await started.wait()
            box[0].cancel()
        return timed_out, shielded_done, outer_caught, box[0].cancelled_caught

    assert run(loop_impl, main) == (True, True, True, True)


def test_tcp_listener_and_connect(loop_impl):
    async def main():
        received = []

        async def handle(stream) -> None:
            async with stream:
                data = b""
                while not data.endswith(b"\n"):
                    data += await stream.receive()
                await stream.send(data.upper())

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)

            async def client(i: int) -> None:
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await stream.send(b"hello %d " % i + b"x" * 10000 + b"\n")
                    data = b""
                    while not data.endswith(b"\n"):
                        data += await stream.receive()
                    received.append(data)

            async with anyio.create_task_group() as clients:
                for i in range(20):
                    clients.start_soon(client, i)
            tg.cancel_scope.cancel()
        await listener.aclose()
        return sorted(received)

    expected = sorted(b"HELLO %d " % i + b"X" * 10000 + b"\n" for i in range(20))
    assert run(loop_impl, main) == expected


def test_udp_sockets(loop_impl):
    async def main():
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
            port = server.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.create_connected_udp_socket(
                "127.0.0.1", port, local_host="127.0.0.1"
            ) as client:
                answers = []
                for i in range(20):
                    await client.send(b"ping %d" % i)
                    data, addr = await server.receive()
                    await server.sendto(data.upper(), *addr)
                    answers.append(await client.receive())
                return answers

    assert run(loop_impl, main) == [b"PING %d" % i for i in range(20)]


def test_run_process(loop_impl):
    async def main():
        done = await anyio.run_process(
            [sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1]); sys.exit(3)"],
            input=b"olleh",
            check=False,
        )
        with pytest.raises(Exception) as info:
            await anyio.run_process([sys.executable, "-c", "raise SystemExit(2)"])
        return done.returncode, done.stdout.strip(), info.value.returncode

    assert run(loop_impl, main) == (3, b"hello", 2)


def test_open_process_streams(loop_impl):
    async def main():
        code = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)"
        async with await anyio.open_process([sys.executable, "-c", code]) as proc:
            lines = []
            for i in range(10):
                await proc.stdin.send(b"line %d\n" % i)
                data = b""
                while not data.endswith(b"\n"):
                    data += await proc.stdout.receive()
                lines.append(data.strip())
            await proc.stdin.aclose()
            rc = await proc.wait()
        return rc, lines

    assert run(loop_impl, main) == (0, [b"LINE %d" % i for i in range(10)])


def test_threads_both_ways(loop_impl):
    async def main():
        loop_thread = threading.get_ident()
        calls = []

        async def in_loop(i: int) -> int:
            calls.append(threading.get_ident() == loop_thread)
            await anyio.sleep(0)
            return i + 1

        def in_thread(i: int) -> tuple[bool, int]:
            # back into the loop from a worker thread
            return threading.get_ident() != loop_thread, from_thread.run(in_loop, i)

        results = []

        async def one(i: int) -> None:
            results.append(await to_thread.run_sync(in_thread, i))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        limiter = anyio.CapacityLimiter(2)
        total = sum(
            [await to_thread.run_sync(sum, range(1000), limiter=limiter) for _ in range(5)]
        )
        return sorted(results), all(calls), len(calls), total

    expected = ([(True, i + 1) for i in range(20)], True, 20, 5 * sum(range(1000)))
    assert run(loop_impl, main) == expected
