"""Determinism of virtual time: the same program gives the same trace (callback order and
virtual times) on every run and on both implementations."""

from __future__ import annotations

import asyncio
import importlib
import random

import pytest

from _vt_support import run
from conftest import c_extensions_disabled


def program(seed: int):
    """A random program (tasks sleeping, waiting with timeouts, cancelling each other, timers
    and events); ``main()`` returns its trace of (what, loop time)."""
    rng = random.Random(seed)
    n_tasks = rng.randrange(5, 40)
    plans = [[(rng.choice(("sleep", "sleep", "wait_for", "event", "timer", "cancel", "zero")),
               rng.choice((0.0, 0.5, 1.0, 2.5, rng.uniform(0, 100), rng.randrange(100))),
               rng.randrange(n_tasks)) for _ in range(rng.randrange(1, 12))]
             for _ in range(n_tasks)]

    async def main():
        loop = asyncio.get_running_loop()
        trace: list = []
        events = [asyncio.Event() for _ in range(n_tasks)]
        tasks: list = []

        async def worker(i, plan):
            try:
                for step, (op, d, j) in enumerate(plan):
                    trace.append((i, step, op, loop.time()))
                    if op == "sleep":
                        await asyncio.sleep(d)
                    elif op == "zero":
                        await asyncio.sleep(0)
                    elif op == "wait_for":
                        try:
                            await asyncio.wait_for(events[j].wait(), d)
                            trace.append((i, step, "woken", loop.time()))
                        except TimeoutError:
                            trace.append((i, step, "timed out", loop.time()))
                    elif op == "event":
                        loop.call_later(d, events[j].set)
                    elif op == "timer":
                        loop.call_later(d, trace.append, (i, step, "timer", d))
                    elif op == "cancel" and j < len(tasks) and j != i:
                        loop.call_later(d, tasks[j].cancel)
            except asyncio.CancelledError:
                trace.append((i, "cancelled", loop.time()))
            trace.append((i, "done", loop.time()))

        for i, plan in enumerate(plans):
            tasks.append(asyncio.ensure_future(worker(i, plan)))
        await asyncio.gather(*tasks)
        await asyncio.sleep(200)  # the timers scheduled last run too
        trace.append(("end", loop.time()))
        return trace

    return main


def trace_on(module_name: str, seed: int) -> list:
    mod = importlib.import_module(module_name)
    loop = mod.new_event_loop(virtual_time=True)
    try:
        return run(loop, program(seed)())
    finally:
        loop.close()


@pytest.fixture
def implementations(request) -> list[str]:
    mods = ["qloop._fallback"]
    if c_extensions_disabled(request.config) is None:
        mods.insert(0, "qloop._core")
    return mods


@pytest.mark.parametrize("seed", range(12))
def test_same_trace_on_every_run_and_both_implementations(implementations, seed):
    traces = [trace_on(m, seed) for m in implementations for _ in range(2)]
    assert len(traces[0]) > 10
    for other in traces[1:]:
        assert other == traces[0]


def test_a_fixed_program_gives_a_known_trace(implementations):
    """A small program whose trace is written out by hand (ties run FIFO)."""

    async def main():
        loop = asyncio.get_running_loop()
        trace = []

        async def sleeper(name, d):
            await asyncio.sleep(d)
            trace.append((name, loop.time()))

        loop.call_later(2, lambda: trace.append(("timer", loop.time())))
        await asyncio.gather(sleeper("a", 2), sleeper("b", 1), sleeper("c", 2), sleeper("d", 0))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.5)
        trace.append(("timeout", loop.time()))
        return trace

    expected = [("d", 0.0), ("b", 1.0), ("timer", 2.0), ("a", 2.0), ("c", 2.0),
                ("timeout", 2.5)]
    for name in implementations:
        loop = importlib.import_module(name).new_event_loop(virtual_time=True)
        try:
            assert run(loop, main()) == expected
        finally:
            loop.close()
