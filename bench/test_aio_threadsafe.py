"""aio_threadsafe: ``loop.call_soon_threadsafe`` round trips from a second thread (default 50,000).

The thread calls ``loop.call_soon_threadsafe(cb)`` and waits for the callback's
acknowledgement (a lock), N times: the same body as the peers' arm of ``threadsafe``, with
both threads pinned to one CPU (``QLOOP_BENCH_PIN=0`` turns that off).
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import PIN, ROUNDS, pinned_to_one_cpu, run_rounds, scaled
from bench.test_threadsafe import asyncio_threadsafe

N = scaled(50_000, minimum=100)


@pytest.mark.benchmark(group="aio_threadsafe")
def test_aio_threadsafe(benchmark, loop_impl):
    cpus = []

    def target(loop):
        with pinned_to_one_cpu(PIN) as cpu:
            cpus.append(cpu)
            return asyncio_threadsafe(loop, N)

    run_rounds(
        benchmark,
        target,
        setup=lambda: (loop_impl.open(),),
        cleanup=loop_impl.close,
        ops=N,
        expect=N,
        rounds=max(
            ROUNDS, 5
        ),  # thread hand-offs are noisy: keep the best of more rounds
        unit="round trips",
    )
    benchmark.extra_info["pinned_cpu"] = cpus[-1]
