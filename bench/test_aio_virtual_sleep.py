"""aio_virtual_sleep: 200,000 ``asyncio.sleep`` of random virtual durations in 1,000 tasks, in
virtual time.

qloop's virtual-time loop (``new_event_loop(virtual_time=True)``, both implementations) against
looptime (PyPI) over asyncio's own loop (``looptime.new_event_loop()``, its defaults).  Every
task sleeps 200 random durations of up to 10 virtual seconds (drawn in the untimed setup, the
same seed for everyone), so the loops jump virtual time about 200,000 times.  Checked: every
sleep returned, and the virtual time at the end is the longest task's total (to looptime's
microsecond resolution).  Bars: qloop-core >= 5x looptime (real time); qloop-fallback >=
looptime.  looptime takes tens of seconds per round: it runs one round.
"""

from __future__ import annotations

import asyncio
import importlib
import random

import pytest

from bench._common import run_rounds, scaled

TASKS = 1_000
SLEEPS_PER_TASK = scaled(200, minimum=2)
N = TASKS * SLEEPS_PER_TASK
MAX_SLEEP_S = 10.0
VT_IMPLS = ("qloop-core", "qloop-fallback", "looptime")


def durations(seed: int = 2024) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(0.0, MAX_SLEEP_S) for _ in range(SLEEPS_PER_TASK)]
            for _ in range(TASKS)]


def new_loop(name: str):
    if name == "looptime":
        import looptime

        return looptime.new_event_loop(start=0)
    module = importlib.import_module({"qloop-core": "qloop._core",
                                      "qloop-fallback": "qloop._fallback"}[name])
    return module.new_event_loop(virtual_time=True)


def sleep_everywhere(loop, plan: list[list[float]]) -> tuple[int, bool]:
    done = 0

    async def worker(ds: list[float]) -> None:
        nonlocal done
        for d in ds:
            await asyncio.sleep(d)
            done += 1

    async def main() -> None:
        await asyncio.gather(*(worker(ds) for ds in plan))

    loop.run_until_complete(main())
    longest = max(sum(ds) for ds in plan)
    return done, abs(loop.time() - longest) < 1e-3 * SLEEPS_PER_TASK


@pytest.mark.benchmark(group="aio_virtual_sleep")
@pytest.mark.parametrize("loop_impl", VT_IMPLS)
def test_aio_virtual_sleep(benchmark, loop_impl):
    if loop_impl == "looptime":
        pytest.importorskip("looptime")
    plan = durations()
    run_rounds(
        benchmark,
        lambda loop: sleep_everywhere(loop, plan),
        setup=lambda: (new_loop(loop_impl),),
        cleanup=lambda loop: loop.close(),
        ops=N,
        expect=(N, True),
        rounds=1 if loop_impl == "looptime" else None,
        unit="sleeps",
        tasks=TASKS,
        max_sleep_s=MAX_SLEEP_S,
    )
