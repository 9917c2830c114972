"""aio_futures: N futures (default 100,000), each created, resolved by call_soon, awaited.

One coroutine loops: ``fut = loop.create_future()``, ``loop.call_soon(fut.set_result, i)``,
``await fut``.  Checked: the sum of the results.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import asyncio

import pytest

from bench._common import run_rounds, scaled

N = scaled(100_000)


async def _futures(n: int) -> int:
    loop = asyncio.get_running_loop()
    create_future = loop.create_future
    call_soon = loop.call_soon
    total = 0
    for i in range(n):
        fut = create_future()
        call_soon(fut.set_result, i)
        total += await fut
    return total


@pytest.mark.benchmark(group="aio_futures")
def test_aio_futures(benchmark, loop_impl):
    run_rounds(
        benchmark,
        lambda loop: loop.run_until_complete(_futures(N)),
        setup=lambda: (loop_impl.open(),),
        cleanup=loop_impl.close,
        ops=N,
        expect=N * (N - 1) // 2,
        unit="futures",
    )
