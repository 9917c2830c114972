"""IOThreads and coroutines across threads (docs/iothreads.md; the patterns of QEMU's
test-aio-multithread and its iothread helper): life cycle, the current context, co_schedule
FIFO from any thread, co_reschedule_self, a 25,000-round co_schedule ping-pong between two
IOThreads with exact counts, coroutines handed around between five IOThreads, an asyncio loop
in an IOThread serving while the main thread runs its own, and the docs' examples.

Both implementations run every test.  No sleeps: threads meet on events, and each wait is
bounded so that a lost wake-up fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading

import pytest

from _mainloop_support import package_root
from _readme_blocks import ROOT, blocks

WAIT = 30.0


def _run_in(io, fn):
    """Run ``fn()`` in ``io``'s thread from a one-shot BH; its result (or exception)."""
    box = []
    done = threading.Event()

    def bh():
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append((False, exc))
        done.set()

    io.ctx.bh_schedule_oneshot(bh)
    assert done.wait(WAIT), "the IOThread did not run the BH"
    ok, value = box[0]
    if not ok:
        raise value
    return value


def test_lifecycle_of_five_iothreads(qloop_module):
    """A one-shot BH scheduled from the main thread runs in each IOThread, which sees its
    own context as current; join stops each through a BH, then closes the context."""
    mod = qloop_module
    ios = [mod.IOThread(name=f"t{i}") for i in range(5)]
    try:
        for i, io in enumerate(ios):
            assert io.name == f"t{i}" and io.thread.name == f"t{i}" and io.thread.is_alive()
            name, current = _run_in(io, lambda io=io: (
                threading.current_thread().name, mod.get_current_aio_context() is io.ctx))
            assert (name, current) == (f"t{i}", True)
    finally:
        for io in ios:
            io.join()
    for io in ios:
        assert not io.thread.is_alive() and io.ctx.closed
        io.join()  # idempotent
    assert mod.IOThread().name.startswith("iothread")  # default name (joined at exit)


def test_join_from_the_iothread_itself_is_an_error(qloop_module):
    with qloop_module.IOThread() as io:
        with pytest.raises(RuntimeError, match="cannot join itself"):
            _run_in(io, io.join)
        assert "running" in repr(io)
    assert "joined" in repr(io)


def test_bad_input(qloop_module):
    with pytest.raises(TypeError, match="name must be a str"):
        qloop_module.IOThread(name=3)
    with pytest.raises(TypeError):
        qloop_module.IOThread("positional")


def test_current_context_per_thread(main_loop):
    """The IOThread's thread: its context; the main loop's thread: the main context; a
    thread holding the big lock: the main context; any other thread: None."""
    mod = main_loop
    main_ctx = mod.get_aio_context()
    assert mod.get_current_aio_context() is main_ctx
    seen = {}

    def plain():
        seen["plain"] = mod.get_current_aio_context()
        mod.bql_lock()
        try:
            seen["bql"] = mod.get_current_aio_context()
        finally:
            mod.bql_unlock()

    t = threading.Thread(target=plain)
    t.start()
    t.join(WAIT)
    assert seen == {"plain": None, "bql": main_ctx}
    with mod.IOThread() as io:
        assert _run_in(io, mod.get_current_aio_context) is io.ctx


def test_callback_exception_is_logged_and_the_thread_goes_on(qloop_module, caplog):
    with qloop_module.IOThread(name="boom") as io:
        io.ctx.bh_schedule_oneshot(lambda: 1 / 0)
        assert _run_in(io, lambda: "still running") == "still running"
    assert any("boom" in r.getMessage() and r.exc_info and r.exc_info[0] is ZeroDivisionError
               for r in caplog.records)


def test_co_schedule_from_another_thread_enters_fifo(qloop_module):
    mod = qloop_module
    order = []

    async def body(i):
        order.append((i, threading.current_thread().name))

    with mod.IOThread(name="fifo") as io:
        cos = [mod.Coroutine(body(i)) for i in range(200)]
        for co in cos:
            io.ctx.co_schedule(co)
        _run_in(io, lambda: None)  # queued behind them
        assert all(co.done for co in cos)
    assert order == [(i, "fifo") for i in range(200)]


def test_co_schedule_twice_is_an_error(qloop_module, ctx):
    mod = qloop_module

    async def body():
        await mod.coroutine_yield()

    co = mod.Coroutine(body(), ctx=ctx)
    ctx.co_schedule(co)
    with pytest.raises(RuntimeError, match="already scheduled"):
        ctx.co_schedule(co)
    ctx.poll(False)
    co.enter()
    assert co.done


def test_co_reschedule_self_hops_between_threads(qloop_module, ctx):
    mod = qloop_module
    trail = []

    async def hop(ios):
        trail.append(threading.current_thread().name)
        for io in ios:
            await mod.co_reschedule_self(io.ctx)
            trail.append((threading.current_thread().name, mod.get_current_aio_context() is io.ctx))
        await mod.co_reschedule_self(ctx)
        trail.append(threading.current_thread().name)
        await mod.co_reschedule_self(ctx)  # already there: no hop, no yield
        trail.append("same")

    with mod.IOThread(name="a") as a, mod.IOThread(name="b") as b:
        co = mod.Coroutine(hop([a, b]), ctx=ctx)
        co.enter()
        assert ctx.wait_while(lambda: not co.done)
    main = threading.current_thread().name
    assert trail == [main, ("a", True), ("b", True), main, "same"]
    with pytest.raises(TypeError, match="needs an AioContext"):
        mod.co_reschedule_self(None)
    with pytest.raises(RuntimeError, match="inside a qloop Coroutine"):
        mod.co_reschedule_self(ctx).__await__().send(None)


def test_co_schedule_ping_pong_between_two_iothreads(qloop_module):
    """Two coroutines, one per IOThread, hand control to each other 25,000 times each
    through ``co_schedule`` into the other thread's context: exact counts, every entry in
    the right thread, and no nesting (the stack does not grow).  Ping ends the game: after
    its last turn pong stays parked."""
    mod = qloop_module
    rounds = 25_000
    counts = {"ping": 0, "pong": 0}
    wrong = []
    depth = []
    finished = threading.Event()
    with mod.IOThread(name="ping") as t1, mod.IOThread(name="pong") as t2:
        cos = {}

        async def player(me, other_io, my_name):
            for _ in range(rounds):
                counts[me] += 1
                if threading.current_thread().name != my_name:
                    wrong.append(me)
                depth.append(_stack_depth())
                other_io.ctx.co_schedule(cos["pong" if me == "ping" else "ping"])
                await mod.coroutine_yield()
            if me == "ping":  # its last schedule of pong came before pong's last of it
                finished.set()

        cos["ping"] = mod.Coroutine(player("ping", t2, "ping"), ctx=t1.ctx)
        cos["pong"] = mod.Coroutine(player("pong", t1, "pong"), ctx=t2.ctx)
        t1.ctx.co_schedule(cos["ping"])
        assert finished.wait(120), f"ping-pong stalled at {counts}"
        _run_in(t1, lambda: None)
        _run_in(t2, lambda: None)
    assert counts == {"ping": rounds, "pong": rounds}
    assert wrong == []
    assert max(depth) - min(depth) <= 2


def test_co_wake_inside_an_iothread_chains_instead_of_nesting(qloop_module):
    """Inside one IOThread, two coroutines wake each other with co_wake 25,000 times: each
    wake from inside a coroutine runs the other after the current one yields (no nesting),
    so the stack stays flat; the counts are exact."""
    mod = qloop_module
    rounds = 25_000
    counts = [0, 0]
    depth = []
    cos = []

    async def player(me):
        for _ in range(rounds):
            counts[me] += 1
            depth.append(_stack_depth())
            mod.co_wake(cos[1 - me])
            assert counts[1 - me] == counts[me] - (1 - me)  # the other has not run yet
            await mod.coroutine_yield()

    with mod.IOThread() as io:
        def start():
            cos.extend([mod.Coroutine(player(0)), mod.Coroutine(player(1))])
            cos[0].enter()
            return [co.done for co in cos]

        assert _run_in(io, start) == [True, False]
    assert counts == [rounds, rounds]
    assert max(depth) - min(depth) <= 2


def _stack_depth():
    f, n = sys._getframe(1), 0
    while f is not None:
        f, n = f.f_back, n + 1
    return n


def test_coroutines_handed_around_five_iothreads(qloop_module):
    """QEMU's multi_co_schedule: one coroutine per IOThread repeatedly takes the coroutine
    parked in a random context, schedules it into that context, parks itself and yields.
    A coroutine is never entered while still parked, no wake-up is lost, and once all have
    stopped every slot is empty.  (Hop counts instead of a duration: the last coroutine
    awake never parks without waking another.)"""
    mod = qloop_module
    n, hops_each = 5, 2000
    lock = threading.Lock()
    parked = [None] * n
    entered_parked = []
    hops = [0] * n
    alive = [n]
    stopped = threading.Event()
    ios = [mod.IOThread(name=f"m{i}") for i in range(n)]

    def take_locked(i):
        co, parked[i] = parked[i], None
        return co

    def any_parked_locked():
        for i, co in enumerate(parked):
            if co is not None:
                return i, take_locked(i)
        return None, None

    try:
        async def worker(me, rng):
            me_co = mod.coroutine_self()
            while hops[me] < hops_each:
                hops[me] += 1
                target = rng.randrange(n)
                with lock:
                    co = take_locked(target)
                    asleep = sum(p is not None for p in parked)
                    if co is None and asleep == alive[0] - 1:  # all the others are parked
                        target, co = any_parked_locked()
                    if co is None and asleep == alive[0] - 1:  # alone: do not park
                        target, co = me, me_co
                    else:
                        parked[me] = me_co
                if co is not None:
                    ios[target].ctx.co_schedule(co)
                await mod.coroutine_yield()
                with lock:
                    if parked[me] is me_co:
                        entered_parked.append(me)
            with lock:
                alive[0] -= 1
                target, co = (None, None)
                if alive[0] and sum(p is not None for p in parked) == alive[0]:
                    target, co = any_parked_locked()
                if not alive[0]:
                    stopped.set()
            if co is not None:
                ios[target].ctx.co_schedule(co)

        cos = [mod.Coroutine(worker(i, random.Random(i)), ctx=ios[i].ctx) for i in range(n)]
        for i, co in enumerate(cos):
            ios[i].ctx.co_schedule(co)
        assert stopped.wait(120), f"stalled: hops {hops}, parked {parked}"
        for io in ios:
            _run_in(io, lambda: None)
        assert entered_parked == []
        assert parked == [None] * n
        assert hops == [hops_each] * n
        assert all(co.done for co in cos)
    finally:
        for io in ios:
            io.join()


def test_asyncio_loop_in_an_iothread_serves_while_the_main_loop_runs(qloop_module):
    mod = qloop_module

    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(threading.current_thread().name.encode() + b":" + line)
            await writer.drain()
        writer.close()

    async def clients(port, n):
        async def one(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            out = []
            for j in range(20):
                writer.write(f"{i}.{j}\n".encode())
                out.append(await reader.readline())
            writer.close()
            return out

        return await asyncio.gather(*(one(i) for i in range(n)))

    with mod.IOThread(name="srv") as io:
        server_loop = mod.new_event_loop(ctx=io.ctx)
        stopped = threading.Event()

        def serve():
            server_loop.run_forever()
            server_loop.close()
            stopped.set()

        io.ctx.bh_schedule_oneshot(serve)
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(handle, "127.0.0.1", 0), server_loop).result(WAIT)
        port = server.sockets[0].getsockname()[1]
        client_loop = mod.new_event_loop()
        try:
            results = client_loop.run_until_complete(clients(port, 10))
        finally:
            client_loop.close()
        server_loop.call_soon_threadsafe(server.close)
        server_loop.call_soon_threadsafe(server_loop.stop)
        assert stopped.wait(WAIT)
    assert results == [[f"srv:{i}.{j}\n".encode() for j in range(20)] for i in range(10)]


@pytest.mark.parametrize("page", ["iothreads.md", "thread-pool.md"])
def test_the_docs_examples_run(qloop_module, page, tmp_path):
    env = dict(os.environ, PYTHONPATH=package_root(qloop_module))
    if qloop_module.__name__.endswith("_fallback"):
        env["QLOOP_NO_EXTENSIONS"] = "1"
    else:
        env.pop("QLOOP_NO_EXTENSIONS", None)
        env["QLOOP_REQUIRE_EXTENSIONS"] = "1"
    ran = 0
    for block in blocks(os.path.join(ROOT, "docs", page)):
        if block.lang != "python":
            continue
        path = tmp_path / f"{block.name}.py"
        path.write_text(block.code)
        proc = subprocess.run([sys.executable, str(path)], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"{page} line {block.line}:\n{proc.stderr}"
        for expected in _comments_after_print(block.code):
            assert expected in proc.stdout, (page, block.line, proc.stdout)
        ran += 1
    assert ran >= 2


def _comments_after_print(code):
    out = []
    for line in code.splitlines():
        if line.lstrip().startswith("print(") and "#" in line:
            out.append(line.split("#", 1)[1].strip().split(";")[0].split(":")[0].strip())
    return out
