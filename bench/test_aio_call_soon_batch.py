"""aio_call_soon_batch: batches of 1,000 ``loop.call_soon`` callbacks, one batch per iteration.

A driver callback schedules 1,000 callbacks and then itself, so every loop iteration runs
one whole batch plus the driver (asyncio runs what was ready when the iteration began, and
the driver's own call_soon lands behind its batch).  N callbacks in all (default 1,000,000),
in one ``run_forever()``.  Every callback checks that it runs in its own batch.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import run_rounds, scaled

BATCH = 1000
N_BATCHES = max(1, scaled(1_000_000) // BATCH)
N = N_BATCHES * BATCH


def call_soon_batches(loop, n_batches: int) -> tuple[int, int, int]:
    ran = 0
    batches = 0
    misplaced = 0  # callbacks that ran outside the iteration of their batch

    def cb(batch: int) -> None:
        nonlocal ran, misplaced
        ran += 1
        if batch != batches:
            misplaced += 1

    def driver() -> None:
        nonlocal batches
        if batches == n_batches:
            loop.stop()
            return
        batches += 1
        for _ in rng:
            call_soon(cb, batches)
        call_soon(driver)

    call_soon = loop.call_soon
    rng = range(BATCH)
    call_soon(driver)
    loop.run_forever()
    return ran, batches, misplaced


@pytest.mark.benchmark(group="aio_call_soon_batch")
def test_aio_call_soon_batch(benchmark, loop_impl):
    run_rounds(
        benchmark,
        lambda loop: call_soon_batches(loop, N_BATCHES),
        setup=lambda: (loop_impl.open(),),
        cleanup=loop_impl.close,
        ops=N,
        expect=(N, N_BATCHES, 0),
        unit="callbacks",
        batch=BATCH,
    )
