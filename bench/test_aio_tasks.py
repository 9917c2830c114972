"""aio_tasks: 100 tasks, each doing 3,000 ``await asyncio.sleep(0)`` (300,000 task steps).

The tasks are created (``loop.create_task``) and gathered inside one
``run_until_complete``; every ``sleep(0)`` yields to the loop, so each step is one
ready-queue round trip of a Task.  Checked: every task finished its count.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import asyncio

import pytest

from bench._common import run_rounds, scaled

TASKS = 100
STEPS = scaled(3000)
N = TASKS * STEPS


async def _sleeper(steps: int) -> int:
    sleep = asyncio.sleep
    for _ in range(steps):
        await sleep(0)
    return steps


async def _main(steps: int) -> int:
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_sleeper(steps)) for _ in range(TASKS)]
    return sum(await asyncio.gather(*tasks))


@pytest.mark.benchmark(group="aio_tasks")
def test_aio_tasks(benchmark, loop_impl):
    run_rounds(
        benchmark,
        lambda loop: loop.run_until_complete(_main(STEPS)),
        setup=lambda: (loop_impl.open(),),
        cleanup=loop_impl.close,
        ops=N,
        expect=N,
        unit="task steps",
        tasks=TASKS,
        steps_per_task=STEPS,
    )
