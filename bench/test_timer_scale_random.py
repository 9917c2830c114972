"""timer_scale_random / timer_mod_1m: re-arm a *randomly chosen* timer among 1,000,000 armed
ones, vs among 1,000.

Setup (untimed): ``armed`` timers at random expiries 1-2 hours ahead (they never fire), and
K picks (default 200,000) of a random armed timer each with a random new expiry in the same
range, shuffled anew for every round.  One round re-arms every pick: qloop
``t.mod_ns(deadline)``; asyncio/uvloop have no re-arm: ``handle.cancel()`` then
``loop.call_at(when, cb)`` (the new handle replaces the old in the table of armed ones).
The cyclic GC is off while a round is timed (as in ``timer_scale``).

The *floor* rounds touch the same random timers without re-arming them (``t.expired(0)``;
asyncio/uvloop: ``h.cancelled()``): the cache and TLB misses of a random pick among a million
objects, which no timer structure can avoid.  ``extra_info["floor_s"]`` keeps it, so the table
can show what the re-arm itself adds at 1M over 1k.

Bars: timer_scale_random: qloop-core cost(1M) <= 3x cost(1k) (at most about one cache miss
more than the 1k case); timer_mod_1m: qloop-core >= 5x uvloop at 1M armed.
"""

from __future__ import annotations

import gc
import random
import time

import pytest

from bench._common import run_rounds, scaled

SMALL = 1000
LARGE = scaled(1_000_000, minimum=10_000)
K = scaled(200_000, minimum=1000)
BASE_S = 3600.0
SPAN_S = 3600.0


def _noop():
    pass


class _State:
    def __init__(self, impl, armed: int) -> None:
        self.impl = impl
        rng = random.Random(armed)
        self.rng = rng
        self.offsets = [BASE_S + rng.random() * SPAN_S for _ in range(armed)]
        self.pick_idx = [rng.randrange(armed) for _ in range(K)]
        self.new_offsets = [BASE_S + rng.random() * SPAN_S for _ in range(K)]
        self.round = 0


class QloopRandom(_State):
    def __init__(self, impl, armed: int) -> None:
        super().__init__(impl, armed)
        mod = impl.module
        self.ctx = ctx = impl.open()
        clock = mod.ClockType.REALTIME
        now = mod.clock_get_ns(clock)
        self.timers = []
        for off in self.offsets:
            t = ctx.timer_new_ns(clock, _noop)
            t.mod_ns(now + int(off * 1e9))
            self.timers.append(t)
        self.deadlines = [now + int(off * 1e9) for off in self.new_offsets]

    def setup(self):
        self.ctx.poll(False)
        self.round += 1
        random.Random(self.round).shuffle(self.pick_idx)
        timers = self.timers
        return ([timers[i] for i in self.pick_idx],)

    def run(self, picks) -> int:
        for t, d in zip(picks, self.deadlines, strict=True):
            t.mod_ns(d)
        return len(picks)

    def floor(self, picks) -> float:
        t0 = time.perf_counter()
        for t, d in zip(picks, self.deadlines, strict=True):  # noqa: B007 - the run loop's shape
            t.expired(0)
        return time.perf_counter() - t0

    def pending(self) -> int:
        return sum(1 for t in self.timers if t.pending)

    def close(self):
        self.timers.clear()
        self.ctx.close()


class AsyncioRandom(_State):
    def __init__(self, impl, armed: int) -> None:
        super().__init__(impl, armed)
        self.loop = loop = impl.open()
        now = loop.time()
        self.handles = [loop.call_at(now + off, _noop) for off in self.offsets]
        self.deadlines = [now + off for off in self.new_offsets]

    def setup(self):
        loop = self.loop
        loop.call_soon(loop.stop)
        loop.run_forever()  # drops the cancelled handles, as a poll does
        self.round += 1
        random.Random(self.round).shuffle(self.pick_idx)
        return (self.pick_idx,)

    def run(self, picks) -> int:
        handles = self.handles
        call_at = self.loop.call_at
        for i, when in zip(picks, self.deadlines, strict=True):
            handles[i].cancel()
            handles[i] = call_at(when, _noop)
        return len(picks)

    def floor(self, picks) -> float:
        handles = self.handles
        t0 = time.perf_counter()
        for i, when in zip(picks, self.deadlines, strict=True):  # noqa: B007 - the run loop's shape
            handles[i].cancelled()
        return time.perf_counter() - t0

    def pending(self) -> int:
        return sum(1 for h in self.handles if not h.cancelled())

    def close(self):
        for h in self.handles:
            h.cancel()
        self.handles.clear()
        self.loop.close()


@pytest.mark.benchmark(group="timer_scale_random")
@pytest.mark.parametrize("armed", ["armed_1k", "armed_1M"])
def test_timer_scale_random(benchmark, impl, armed):
    n_armed = SMALL if armed == "armed_1k" else LARGE
    state = (QloopRandom if impl.is_qloop else AsyncioRandom)(impl, n_armed)
    try:
        run_rounds(
            benchmark,
            state.run,
            setup=state.setup,
            ops=K,
            expect=K,
            rounds=5,
            gc_disabled=True,
            unit="re-arms",
            armed=n_armed,
        )
        gc.disable()
        try:
            floors = [state.floor(*state.setup()) for _ in range(5)]
        finally:
            gc.enable()
        benchmark.extra_info["floor_s"] = min(floors)
        assert state.pending() == n_armed  # nothing fired, nothing was lost
    finally:
        state.close()
