"""bh_batch: 1,000 BHs scheduled, one ``ctx.poll(True)`` runs them all; repeated up to N calls.

qloop: the 1,000 BHs are created once (setup); each batch schedules all of them and polls
until the batch has run (one poll, by the spec: every BH pending at aio_bh_poll runs).
asyncio/uvloop: 1,000 ``loop.call_soon(cb)`` then ``loop.call_soon(loop.stop)`` and
``loop.run_forever()`` per batch.  N defaults to 1,000,000 callbacks.
Bar: qloop-core >= 3x uvloop; qloop-fallback >= 1x asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import run_rounds, scaled

BATCH = 1000
N_BATCHES = max(1, scaled(1_000_000) // BATCH)
N = N_BATCHES * BATCH


class _Counter:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def qloop_setup(impl):
    ctx = impl.open()
    counter = _Counter()

    def cb():
        counter.n += 1

    bhs = [ctx.bh_new(cb) for _ in range(BATCH)]
    return ctx, bhs, counter


def qloop_bh_batch(ctx, bhs, counter, n_batches: int):
    poll = ctx.poll
    schedules = [bh.schedule for bh in bhs]
    polls = 0
    target = counter.n
    for _ in range(n_batches):
        for schedule in schedules:
            schedule()
        target += len(schedules)
        while counter.n < target:
            poll(True)
            polls += 1
    return counter.n, polls


def asyncio_setup(impl):
    return impl.open(), None, _Counter()


def asyncio_call_soon_batch(loop, _unused, counter, n_batches: int):
    def cb():
        counter.n += 1

    call_soon = loop.call_soon
    run_forever = loop.run_forever
    stop = loop.stop
    rng = range(BATCH)
    polls = 0
    for _ in range(n_batches):
        for _i in rng:
            call_soon(cb)
        call_soon(stop)
        run_forever()
        polls += 1
    return counter.n, polls


@pytest.mark.benchmark(group="bh_batch")
def test_bh_batch(benchmark, impl):
    if impl.is_qloop:
        setup, body = qloop_setup, qloop_bh_batch
    else:
        setup, body = asyncio_setup, asyncio_call_soon_batch
    run_rounds(
        benchmark,
        lambda obj, bhs, counter: body(obj, bhs, counter, N_BATCHES),
        setup=lambda: setup(impl),
        cleanup=lambda obj, bhs, counter: impl.close(obj),
        ops=N,
        # every batch ran completely, in exactly one poll / loop pass
        expect=(N, N_BATCHES),
        unit="callbacks",
        batch=BATCH,
    )
