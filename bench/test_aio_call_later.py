"""aio_call_later: N timers (default 200,000) at random delays <= 50 ms, one in ten cancelled.

``loop.call_later(delay, cb)`` for every delay (drawn in the untimed setup, the same seed for
everyone), then every tenth handle is cancelled, then the loop runs until every other timer
fired (the last one stops it).  Checked: every live timer fired once, no cancelled one ran.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import random

import pytest

from bench._common import run_rounds, scaled

N = scaled(200_000, minimum=10)
WINDOW_S = 0.050
CANCEL_EVERY = 10
N_CANCELLED = len(range(0, N, CANCEL_EVERY))


def delays_s(seed: int = 12345) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.0, WINDOW_S) for _ in range(N)]


def call_later_timers(loop, delays: list[float]) -> tuple[int, int]:
    fired = 0
    wrong = 0
    live = len(delays) - len(range(0, len(delays), CANCEL_EVERY))

    def cb() -> None:
        nonlocal fired
        fired += 1
        if fired == live:
            loop.stop()

    def cancelled_cb() -> None:
        nonlocal wrong
        wrong += 1

    call_later = loop.call_later
    handles = [
        call_later(d, cancelled_cb if i % CANCEL_EVERY == 0 else cb)
        for i, d in enumerate(delays)
    ]
    for handle in handles[::CANCEL_EVERY]:
        handle.cancel()
    loop.run_forever()
    return fired, wrong


@pytest.mark.benchmark(group="aio_call_later")
def test_aio_call_later(benchmark, loop_impl):
    delays = delays_s()
    run_rounds(
        benchmark,
        lambda loop: call_later_timers(loop, delays),
        setup=lambda: (loop_impl.open(),),
        cleanup=loop_impl.close,
        ops=N,
        expect=(N - N_CANCELLED, 0),
        unit="timers",
        cancelled=N_CANCELLED,
        window_s=WINDOW_S,
    )
