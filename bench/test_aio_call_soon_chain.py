"""aio_call_soon_chain: a ``loop.call_soon`` chain of N callbacks (default 1,000,000).

Each callback schedules the next; the last stops ``loop.run_forever()``.  The same body as
the peers' arm of ``bh_chain``, here on every asyncio event loop including qloop's.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import run_rounds, scaled
from bench.test_bh_chain import asyncio_call_soon_chain

N = scaled(1_000_000)


@pytest.mark.benchmark(group="aio_call_soon_chain")
def test_aio_call_soon_chain(benchmark, loop_impl):
    run_rounds(
        benchmark,
        lambda loop: asyncio_call_soon_chain(loop, N),
        setup=lambda: (loop_impl.open(),),
        cleanup=loop_impl.close,
        ops=N,
        expect=N,
        unit="callbacks",
    )
