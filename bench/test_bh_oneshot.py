"""bh_oneshot: 1,000 ``ctx.bh_schedule_oneshot(cb)`` then one ``ctx.poll(False)`` that runs
them all (checked), repeated 300 times per round (QEMU's ``aio_bh_schedule_oneshot``, the
call_soon of this API: every call allocates and schedules).

asyncio/uvloop: 1,000 ``loop.call_soon(cb)``, then ``call_soon(loop.stop)`` and
``run_forever()``.  Bars: qloop-core >= 3x uvloop; qloop-fallback >= 1x asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import run_rounds, scaled

BATCH = 1000
N_BATCHES = scaled(300, minimum=3)
N = BATCH * N_BATCHES


class _Counter:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def qloop_oneshot(ctx, counter: _Counter) -> int:
    def cb():
        counter.n += 1

    oneshot = ctx.bh_schedule_oneshot
    poll = ctx.poll
    rng = range(BATCH)
    target = counter.n
    for _ in range(N_BATCHES):
        for _i in rng:
            oneshot(cb)
        target += BATCH
        poll(False)
        if counter.n != target:
            raise AssertionError(f"one poll ran {counter.n - target + BATCH} of {BATCH}")
    return counter.n


def asyncio_call_soon_batch(loop, counter: _Counter) -> int:
    def cb():
        counter.n += 1

    call_soon = loop.call_soon
    stop = loop.stop
    run_forever = loop.run_forever
    rng = range(BATCH)
    for _ in range(N_BATCHES):
        for _i in rng:
            call_soon(cb)
        call_soon(stop)
        run_forever()
    return counter.n


@pytest.mark.benchmark(group="bh_oneshot")
def test_bh_oneshot(benchmark, impl):
    body = qloop_oneshot if impl.is_qloop else asyncio_call_soon_batch
    run_rounds(
        benchmark,
        lambda obj, counter: body(obj, counter),
        setup=lambda: (impl.open(), _Counter()),
        cleanup=lambda obj, counter: impl.close(obj),
        ops=N,
        expect=N,
        unit="callbacks",
    )
