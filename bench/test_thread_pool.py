"""thread_pool / aio_thread_pool: 200,000 tiny jobs (the function returns its argument)
submitted from the loop and completed into it, 1,000 in flight: each completion submits the
next job until all are done.

* ``thread_pool``: each loop through its natural API.  qloop: the loop's context's
  ``ThreadPool`` (``pool.submit(fn, i, callback=cb)``, the context driven by
  ``ctx.poll(True)``); the peers (asyncio, uvloop, rloop): ``run_in_executor(None, fn, i)``
  on asyncio's default ``ThreadPoolExecutor`` with a done callback.
* ``aio_thread_pool``: every loop through ``run_in_executor(None, fn, i)`` (on qloop's loops
  that is the context's pool too).

Besides jobs/s, each round records the loop thread's CPU time per job
(``time.thread_time()``), in ``extra_info["loop_cpu_per_job"]`` (the best round).  Every
round starts on a fresh loop whose pool or executor ran one window of jobs first (untimed),
so thread creation is not timed.  Checked: every job's callback ran once with its argument.
Bars: thread_pool, qloop-core >= 1.5x the best peer in jobs/s and in loop CPU per job;
aio_thread_pool, qloop-core >= the best peer; qloop-fallback >= asyncio on both.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench._common import run_rounds, scaled

N = scaled(200_000, minimum=2_000)
WINDOW = min(1_000, N)


def _identity(x):
    return x


def _native(ctx, n: int, window: int, cpu: list) -> int:
    """qloop: the context's thread pool, completions delivered by its BH."""
    submit = ctx.thread_pool().submit
    state = [0, 0, 0]  # submitted, completed, sum of the results

    def cb(value):
        state[1] += 1
        state[2] += value
        if state[0] < n:
            state[0] += 1
            submit(_identity, state[0], callback=cb)

    poll = ctx.poll
    c0 = time.thread_time()
    for _ in range(window):
        state[0] += 1
        submit(_identity, state[0], callback=cb)
    while state[1] < n:
        poll(True)
    cpu.append(time.thread_time() - c0)
    assert state[2] == n * (n + 1) // 2
    return state[1]


async def _executor(n: int, window: int, cpu: list) -> int:
    """asyncio API: run_in_executor(None, ...) with a done callback."""
    loop = asyncio.get_running_loop()
    run = loop.run_in_executor
    finished = loop.create_future()
    state = [0, 0, 0]

    def on_done(fut):
        state[1] += 1
        state[2] += fut.result()
        if state[0] < n:
            state[0] += 1
            run(None, _identity, state[0]).add_done_callback(on_done)
        elif state[1] == n:
            finished.set_result(None)

    c0 = time.thread_time()
    for _ in range(window):
        state[0] += 1
        run(None, _identity, state[0]).add_done_callback(on_done)
    await finished
    cpu.append(time.thread_time() - c0)
    assert state[2] == n * (n + 1) // 2
    return state[1]


def _warm(loop, native: bool) -> None:
    """One window of jobs, untimed: the workers exist before the round starts."""
    if native:
        ctx = loop.aio_context
        assert _native(ctx, WINDOW, WINDOW, []) == WINDOW
    else:
        assert loop.run_until_complete(_executor(WINDOW, WINDOW, [])) == WINDOW


def _close(loop) -> None:
    if loop.is_closed():
        return
    if hasattr(loop, "shutdown_default_executor"):
        loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def _bench(benchmark, loop_impl, native: bool) -> None:
    cpu: list[float] = []

    def setup():
        loop = loop_impl.open()
        _warm(loop, native)
        return (loop,)

    if native:
        def target(loop):
            return _native(loop.aio_context, N, WINDOW, cpu)
    else:
        def target(loop):
            return loop.run_until_complete(_executor(N, WINDOW, cpu))

    run_rounds(benchmark, target, setup=setup, cleanup=_close, ops=N, expect=N,
               unit="jobs", window=WINDOW,
               api="ThreadPool.submit" if native else "run_in_executor(None)")
    benchmark.extra_info["loop_cpu_per_job"] = min(cpu) / N
    benchmark.extra_info["loop_cpu_per_job_rounds"] = [c / N for c in cpu]


@pytest.mark.benchmark(group="thread_pool")
def test_thread_pool(benchmark, loop_impl):
    _bench(benchmark, loop_impl, native=loop_impl.name.startswith("qloop-"))


@pytest.mark.benchmark(group="aio_thread_pool")
def test_aio_thread_pool(benchmark, loop_impl):
    _bench(benchmark, loop_impl, native=False)
