"""timer_scale: the cost of one timer re-arm with 1,000,000 armed timers vs with 1,000.

Setup (untimed, once per test): ``armed`` background timers at random expiries 1-2 hours
ahead, plus 100 probe timers.  One round re-arms the probes K times (default 100,000) at random
expiries inside the background range, so each re-arm lands in the middle of the queue.
qloop: ``t.mod_ns(deadline)``.  asyncio/uvloop have no re-arm: ``handle.cancel()`` then
``loop.call_at(when, cb)``.  Between rounds the loop does one non-blocking pass (asyncio drops
cancelled handles there); nothing is due, so no callback runs.  The cyclic GC is off while a
round is timed: with it on, collections triggered by the live-object count make the *small*
case slower on asyncio/uvloop (measured: 140 ms vs 80 ms per round), hiding the scaling.
Bar: qloop-core's cost per re-arm with 1M armed <= 2x the cost with 1k (log-time, not linear).
"""

from __future__ import annotations

import random

import pytest

from bench._common import run_rounds, scaled

SMALL = 1000
LARGE = scaled(1_000_000, minimum=10_000)
K = scaled(100_000, minimum=1000)
PROBES = 100
BASE_S = 3600.0  # background timers expire 1-2 hours from now: they never fire
SPAN_S = 3600.0


def _noop():
    pass


def _deadlines(seed: int, n: int) -> list[float]:
    """n random offsets (seconds) inside [BASE_S, BASE_S + SPAN_S)."""
    rng = random.Random(seed)
    return [BASE_S + rng.random() * SPAN_S for _ in range(n)]


class QloopScale:
    def __init__(self, impl, armed: int) -> None:
        mod = impl.module
        self.ctx = ctx = impl.open()
        clock = mod.ClockType.REALTIME
        now = mod.clock_get_ns(clock)
        self.background = []
        for off in _deadlines(1, armed):
            t = ctx.timer_new_ns(clock, _noop)
            t.mod_ns(now + int(off * 1e9))
            self.background.append(t)
        self.probes = [ctx.timer_new_ns(clock, _noop) for _ in range(PROBES)]
        for t, off in zip(self.probes, _deadlines(2, PROBES), strict=True):
            t.mod_ns(now + int(off * 1e9))
        self.deadlines = [now + int(off * 1e9) for off in _deadlines(3, K)]
        self.clock_get_ns = mod.clock_get_ns
        self.clock = clock

    def between_rounds(self):
        self.ctx.poll(False)
        return ()

    def run(self) -> int:
        probes = self.probes
        n = len(probes)
        i = 0
        for deadline in self.deadlines:
            probes[i].mod_ns(deadline)
            i += 1
            if i == n:
                i = 0
        return len(self.deadlines)

    def pending(self) -> int:
        return sum(1 for t in self.background if t.pending) + sum(
            1 for t in self.probes if t.pending
        )

    def close(self):
        self.background.clear()
        self.probes.clear()
        self.ctx.close()


class AsyncioScale:
    def __init__(self, impl, armed: int) -> None:
        self.loop = loop = impl.open()
        now = loop.time()
        self.background = [
            loop.call_at(now + off, _noop) for off in _deadlines(1, armed)
        ]
        self.probes = [loop.call_at(now + off, _noop) for off in _deadlines(2, PROBES)]
        self.deadlines = [now + off for off in _deadlines(3, K)]

    def between_rounds(self):
        loop = self.loop
        loop.call_soon(loop.stop)
        loop.run_forever()
        return ()

    def run(self) -> int:
        probes = self.probes
        call_at = self.loop.call_at
        n = len(probes)
        i = 0
        for when in self.deadlines:
            probes[i].cancel()
            probes[i] = call_at(when, _noop)
            i += 1
            if i == n:
                i = 0
        return len(self.deadlines)

    def pending(self) -> int:
        return sum(1 for h in self.background if not h.cancelled()) + sum(
            1 for h in self.probes if not h.cancelled()
        )

    def close(self):
        for h in self.background:
            h.cancel()
        for h in self.probes:
            h.cancel()
        self.background.clear()
        self.probes.clear()
        self.loop.close()


@pytest.mark.benchmark(group="timer_scale")
@pytest.mark.parametrize("armed", ["armed_1k", "armed_1M"])
def test_timer_scale(benchmark, impl, armed):
    n_armed = SMALL if armed == "armed_1k" else LARGE
    state = (QloopScale if impl.is_qloop else AsyncioScale)(impl, n_armed)
    try:
        run_rounds(
            benchmark,
            lambda: state.run(),
            setup=state.between_rounds,
            ops=K,
            expect=K,
            rounds=5,
            gc_disabled=True,
            unit="re-arms",
            armed=n_armed,
            probes=PROBES,
        )
        # nothing fired, nothing was lost
        assert state.pending() == n_armed + PROBES
    finally:
        state.close()
