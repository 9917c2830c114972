"""threadsafe: a second thread wakes the loop and waits for its acknowledgement, N round trips.

qloop: the thread calls ``bh.schedule()`` and waits on a lock that the BH's callback (run by
``while n < N: ctx.poll(True)`` in the main thread) releases.  asyncio/uvloop: the thread calls
``loop.call_soon_threadsafe(cb)``; the callback releases the same kind of lock.  N defaults to
50,000.  Both threads are pinned to one CPU while timed (``QLOOP_BENCH_PIN=0`` turns that off):
unpinned, the result depends mostly on where the scheduler puts the threads (bimodal, up to
3x apart on a 2-vCPU VM).  Bar: qloop-core >= 1.2x uvloop.
"""

from __future__ import annotations

import functools
import threading

import pytest

from bench._common import PIN, ROUNDS, pinned_to_one_cpu, run_rounds, scaled

N = scaled(50_000, minimum=100)
ACK_TIMEOUT_S = 30.0


def _ping(n_total, wake, ack, failed, on_error):
    """Worker thread: n_total times, wake the loop and wait for the acknowledgement."""
    acquire = ack.acquire
    try:
        for _ in range(n_total):
            wake()
            if not acquire(timeout=ACK_TIMEOUT_S):
                raise TimeoutError(
                    f"no acknowledgement from the loop within {ACK_TIMEOUT_S} s"
                )
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        failed.append(exc)
        on_error()


def qloop_threadsafe(ctx, n_total: int) -> int:
    ack = threading.Lock()
    ack.acquire()
    n = 0

    def cb():
        nonlocal n
        n += 1
        ack.release()

    bh = ctx.bh_new(cb)
    failed: list[BaseException] = []
    th = threading.Thread(
        target=_ping, args=(n_total, bh.schedule, ack, failed, ctx.notify)
    )
    th.start()
    poll = ctx.poll
    try:
        while n < n_total and not failed:
            poll(True)
    finally:
        th.join()
    bh.delete()
    if failed:
        raise failed[0]
    return n


def asyncio_threadsafe(loop, n_total: int) -> int:
    ack = threading.Lock()
    ack.acquire()
    n = 0

    def cb():
        nonlocal n
        n += 1
        ack.release()
        if n == n_total:
            loop.stop()

    wake = functools.partial(loop.call_soon_threadsafe, cb)
    failed: list[BaseException] = []
    th = threading.Thread(
        target=_ping,
        args=(n_total, wake, ack, failed, lambda: loop.call_soon_threadsafe(loop.stop)),
    )
    th.start()
    try:
        loop.run_forever()
    finally:
        th.join()
    if failed:
        raise failed[0]
    return n


def run_pinned_round_trips(benchmark, body, impl, n: int) -> None:
    """Time ``body(impl.open(), n)`` with both threads pinned to one CPU (this workload and
    aio_threadsafe)."""
    cpus = []

    def target(obj):
        with pinned_to_one_cpu(PIN) as cpu:
            cpus.append(cpu)
            return body(obj, n)

    run_rounds(
        benchmark,
        target,
        setup=lambda: (impl.open(),),
        cleanup=impl.close,
        ops=n,
        expect=n,
        rounds=max(
            ROUNDS, 5
        ),  # thread hand-offs are noisy: keep the best of more rounds
        unit="round trips",
    )
    benchmark.extra_info["pinned_cpu"] = cpus[-1]


@pytest.mark.benchmark(group="threadsafe")
def test_threadsafe(benchmark, impl):
    body = qloop_threadsafe if impl.is_qloop else asyncio_threadsafe
    run_pinned_round_trips(benchmark, body, impl, N)
