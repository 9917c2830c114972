"""Signal storm: BH.schedule() from a Python SIGALRM handler (driven by setitimer) while the
owner sleeps in poll(True).  Every signal must be seen promptly (the BH runs after each one
with a bounded latency), with no deadlock (bounded total time), on both arms."""

from __future__ import annotations

import signal
import threading
import time

import pytest

N_SIGNALS = 2000
INTERVAL = 0.0002  # s between SIGALRMs
MAX_LATENCY = 0.5  # s from a signal handler's schedule() to the BH running
TOTAL_BUDGET = 20.0  # s


pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="Python signal handlers run in the main thread only",
)


@pytest.mark.parametrize("fdmon", ["poll", "epoll"])
def test_sigalrm_storm_schedules_bh(make_ctx, qloop_module, fdmon, watchdog):
    c = make_ctx(fdmon=fdmon)
    handled = [0]  # signal handler invocations
    unseen_since = [None]  # time of the oldest signal the BH has not seen yet
    seen = [0]  # handler count the BH saw last
    bh_runs = [0]
    max_latency = [0.0]

    def on_bh():
        bh_runs[0] += 1
        seen[0] = handled[0]
        if unseen_since[0] is not None:
            lat = time.monotonic() - unseen_since[0]
            max_latency[0] = max(max_latency[0], lat)
            unseen_since[0] = None

    bh = c.bh_new(on_bh)

    def on_alarm(signum, frame):
        handled[0] += 1
        if unseen_since[0] is None:
            unseen_since[0] = time.monotonic()
        bh.schedule()
        if handled[0] >= N_SIGNALS:
            signal.setitimer(signal.ITIMER_REAL, 0)

    old = signal.signal(signal.SIGALRM, on_alarm)
    dog = watchdog(c, TOTAL_BUDGET)
    t0 = time.monotonic()
    polls = 0
    try:
        signal.setitimer(signal.ITIMER_REAL, INTERVAL, INTERVAL)
        while seen[0] < N_SIGNALS:
            assert not dog.fired, (f"deadlock: {handled[0]} signals, BH saw {seen[0]}, "
                                   f"{bh_runs[0]} runs in {polls} polls")
            c.poll(True)  # sleeps: nothing else is pending
            polls += 1
            if unseen_since[0] is not None and seen[0] < handled[0]:
                assert time.monotonic() - unseen_since[0] < MAX_LATENCY + 1.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        dog.cancel()
    elapsed = time.monotonic() - t0
    while c.poll(False):
        pass
    print(f"\nSIGALRM storm ({fdmon}): {handled[0]} signals, {bh_runs[0]} BH runs, "
          f"{polls} blocking polls, max latency {max_latency[0] * 1000:.2f} ms, "
          f"{elapsed:.2f} s")
    assert handled[0] == N_SIGNALS
    assert seen[0] == N_SIGNALS  # the last signal was seen
    assert unseen_since[0] is None  # ... and none is left unseen
    assert 1 <= bh_runs[0] <= N_SIGNALS
    assert max_latency[0] < MAX_LATENCY
    assert elapsed < TOTAL_BUDGET
