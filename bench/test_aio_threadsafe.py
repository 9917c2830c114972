"""aio_threadsafe: ``loop.call_soon_threadsafe`` round trips from a second thread (default 50,000).

The thread calls ``loop.call_soon_threadsafe(cb)`` and waits for the callback's
acknowledgement (a lock), N times: the same body as the peers' arm of ``threadsafe``, with
both threads pinned to one CPU (``QLOOP_BENCH_PIN=0`` turns that off).
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import scaled
from bench.test_threadsafe import asyncio_threadsafe, run_pinned_round_trips

N = scaled(50_000, minimum=100)


@pytest.mark.benchmark(group="aio_threadsafe")
def test_aio_threadsafe(benchmark, loop_impl):
    run_pinned_round_trips(benchmark, asyncio_threadsafe, loop_impl, N)
