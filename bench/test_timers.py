"""timers: N timers (default 200,000) armed at random expiries within 50 ms; run until all fired.

qloop: ``t = ctx.timer_new_ns(ClockType.REALTIME, cb)``, ``t.mod_ns(now + offset)``, then
``while fired < N: ctx.poll(True)``.  asyncio/uvloop: ``loop.call_later(offset, cb)``, the last
callback stops ``loop.run_forever()``.  The timed part creates, arms and runs the timers; the
random offsets (same seed for everyone) are drawn in the untimed setup.
Bar: qloop-core >= 2x uvloop; qloop-fallback >= 1x asyncio.
"""

from __future__ import annotations

import random

import pytest

from bench._common import run_rounds, scaled

N = scaled(200_000)
WINDOW_S = 0.050


def offsets_s(seed: int = 12345) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, WINDOW_S) for _ in range(N)]


def qloop_timers(mod, ctx, offsets_ns: list[int]) -> int:
    fired = 0

    def cb():
        nonlocal fired
        fired += 1

    clock = mod.ClockType.REALTIME
    new = ctx.timer_new_ns
    timers = []
    append = timers.append
    now = mod.clock_get_ns(clock)
    for off in offsets_ns:
        t = new(clock, cb)
        t.mod_ns(now + off)
        append(t)
    n = len(timers)
    poll = ctx.poll
    while fired < n:
        poll(True)
    return fired


def asyncio_timers(loop, offsets: list[float]) -> int:
    fired = 0
    n = len(offsets)

    def cb():
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    call_later = loop.call_later
    for off in offsets:
        call_later(off, cb)
    loop.run_forever()
    return fired


@pytest.mark.benchmark(group="timers")
def test_timers(benchmark, impl):
    offs = offsets_s()
    if impl.is_qloop:
        offs_ns = [int(o * 1e9) for o in offs]

        def target(ctx):
            return qloop_timers(impl.module, ctx, offs_ns)
    else:

        def target(loop):
            return asyncio_timers(loop, offs)

    run_rounds(
        benchmark,
        target,
        setup=lambda: (impl.open(),),
        cleanup=impl.close,
        ops=N,
        expect=N,
        unit="timers",
        window_ms=WINDOW_S * 1e3,
    )
