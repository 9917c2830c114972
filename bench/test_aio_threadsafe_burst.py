"""aio_threadsafe_burst: 4 threads each call ``call_soon_threadsafe`` 100,000 times, unpaced.

The producers do not wait for anything: they start together once the loop runs and each calls
``loop.call_soon_threadsafe(cb)`` N times (default 100,000) while the loop, in the benchmark's
thread, drains the callbacks; the round ends when the last of the 4 x N callbacks has run
(``loop.stop()`` from it), and every callback must have run exactly once.

Figures: calls per second (4 x N over the round's wall time, from thread start to the last
callback), and the loop thread's CPU time per call (``time.thread_time()`` in the loop thread,
from the moment the producers are released to the last callback), kept as
``extra_info["loop_cpu_per_call"]`` (the best round).  The threads are not pinned: the
producers and the loop run wherever the scheduler puts them, as an application's threads do.
Bar: qloop-core >= 1.5x the best peer (asyncio, uvloop, rloop) in calls per second.
"""

from __future__ import annotations

import threading
import time

import pytest

from bench._common import run_rounds, scaled

THREADS = 4
N = scaled(100_000, minimum=100)
TOTAL = THREADS * N
START_TIMEOUT_S = 30.0


def _produce(loop, cb, go: threading.Event, failed: list) -> None:
    try:
        if not go.wait(START_TIMEOUT_S):
            raise TimeoutError("the loop did not start")
        call = loop.call_soon_threadsafe
        for _ in range(N):
            call(cb)
    except BaseException as exc:  # noqa: BLE001 - reported by the loop thread
        failed.append(exc)
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass


def burst(loop, cpu_per_call: list) -> int:
    n = 0
    failed: list[BaseException] = []
    go = threading.Event()
    marks: dict[str, float] = {}

    def cb() -> None:
        nonlocal n
        n += 1
        if n == TOTAL:
            marks["cpu1"] = time.thread_time()
            loop.stop()

    def release() -> None:
        marks["cpu0"] = time.thread_time()
        go.set()

    threads = [
        threading.Thread(target=_produce, args=(loop, cb, go, failed))
        for _ in range(THREADS)
    ]
    for th in threads:
        th.start()
    loop.call_soon(release)
    try:
        loop.run_forever()
    finally:
        go.set()
        for th in threads:
            th.join()
    if failed:
        raise failed[0]
    cpu_per_call.append((marks["cpu1"] - marks["cpu0"]) / TOTAL)
    return n


@pytest.mark.benchmark(group="aio_threadsafe_burst")
def test_aio_threadsafe_burst(benchmark, loop_impl):
    loop = loop_impl.open()
    cpu_per_call: list[float] = []
    try:
        run_rounds(
            benchmark,
            burst,
            setup=lambda: (loop, cpu_per_call),
            ops=TOTAL,
            expect=TOTAL,
            unit="calls",
            threads=THREADS,
            calls_per_thread=N,
        )
    finally:
        loop.close()
    benchmark.extra_info["loop_cpu_per_call"] = min(cpu_per_call)
    benchmark.extra_info["loop_cpu_per_call_rounds"] = cpu_per_call
