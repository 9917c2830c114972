"""bh_chain: one BH reschedules itself N times (default 1,000,000), one per ``ctx.poll(True)``.

qloop: ``bh = ctx.bh_new(cb)``, ``cb`` counts and calls ``bh.schedule()`` until N, driven by
``while n < N: ctx.poll(True)``.  asyncio/uvloop: a ``loop.call_soon(cb)`` chain that stops the
loop after N calls.  Bar: qloop-core >= 3x uvloop; qloop-fallback >= 1x asyncio.
"""

from __future__ import annotations

import pytest

from bench._common import run_rounds, scaled

N = scaled(1_000_000)


def qloop_bh_chain(ctx, n_total: int) -> int:
    n = 0

    def cb():
        nonlocal n
        n += 1
        if n < n_total:
            schedule()

    bh = ctx.bh_new(cb)
    schedule = bh.schedule
    poll = ctx.poll
    schedule()
    while n < n_total:
        poll(True)
    bh.delete()
    return n


def asyncio_call_soon_chain(loop, n_total: int) -> int:
    n = 0

    def cb():
        nonlocal n
        n += 1
        if n < n_total:
            call_soon(cb)
        else:
            loop.stop()

    call_soon = loop.call_soon
    call_soon(cb)
    loop.run_forever()
    return n


@pytest.mark.benchmark(group="bh_chain")
def test_bh_chain(benchmark, impl):
    body = qloop_bh_chain if impl.is_qloop else asyncio_call_soon_chain
    run_rounds(
        benchmark,
        lambda obj: body(obj, N),
        setup=lambda: (impl.open(),),
        cleanup=impl.close,
        ops=N,
        expect=N,
        unit="callbacks",
    )
