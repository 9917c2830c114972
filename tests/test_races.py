"""Races between the owner thread polling and other threads, on both arms.

Every wait is bounded: a REALTIME watchdog timer makes a lost wake-up a failure (the
watchdog fired / a deadline passed), never a hang; thread joins have timeouts.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from _mainloop_support import wait_until_thread_sleeps

N_THREADS = 8
ROUNDS = 5
PER_THREAD_BH = 1000
PER_THREAD_IDLE = 250
PER_THREAD_TIMERS = 250


def test_threads_schedule_arm_notify_while_owner_polls(ctx, qloop_module, threads, watchdog,
                                                       fast_switching):
    RT = qloop_module.ClockType.REALTIME
    durations = []
    for rnd in range(ROUNDS):
        counts = {"bh": 0, "idle": 0, "timer": 0}
        lock = threading.Lock()

        def bump(kind):
            def cb():
                with lock:
                    counts[kind] += 1
            return cb

        # each BH / timer is fired exactly once, so every count is exact
        bhs = [[ctx.bh_new(bump("bh")) for _ in range(PER_THREAD_BH)] for _ in range(N_THREADS)]
        idles = [[ctx.bh_new(bump("idle")) for _ in range(PER_THREAD_IDLE)]
                 for _ in range(N_THREADS)]
        timers = [[ctx.timer_new_ns(RT, bump("timer")) for _ in range(PER_THREAD_TIMERS)]
                  for _ in range(N_THREADS)]
        start = threading.Barrier(N_THREADS + 1)

        def worker(k):
            start.wait(5)
            for i in range(PER_THREAD_BH):
                bhs[k][i].schedule()
                if i % 4 == 0:
                    idles[k][i // 4].schedule_idle()
                    timers[k][i // 4].mod_ns(qloop_module.clock_get_ns(RT))
                if i % 16 == 0:
                    ctx.notify()

        dog = watchdog(ctx, 10.0)
        for k in range(N_THREADS):
            threads.start(worker, k)
        start.wait(5)
        want = {"bh": N_THREADS * PER_THREAD_BH, "idle": N_THREADS * PER_THREAD_IDLE,
                "timer": N_THREADS * PER_THREAD_TIMERS}
        t0 = time.monotonic()
        polls = 0
        while counts != want:
            assert not dog.fired, f"round {rnd}: lost wake-up, counts {counts} != {want}"
            assert counts["bh"] <= want["bh"] and counts["timer"] <= want["timer"], counts
            ctx.poll(True)
            polls += 1
        threads.join_all(5)
        durations.append(time.monotonic() - t0)
        dog.cancel()
        while ctx.poll(False):
            pass
        assert counts == want  # nothing ran twice
        assert not any(t.pending for row in timers for t in row)
        for row in bhs + idles:
            for bh in row:
                bh.delete()
        threads.threads.clear()
    print(f"\n{N_THREADS} threads x {ROUNDS} rounds: "
          f"{N_THREADS * (PER_THREAD_BH + PER_THREAD_IDLE + PER_THREAD_TIMERS)} callbacks per "
          f"round, max {max(durations) * 1000:.0f} ms per round")
    assert max(durations) < 5.0


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads as much as CPython allows
    yield
    sys.setswitchinterval(old)


def test_delete_races_schedule(ctx, threads, watchdog, fast_switching):
    """The owner deletes a BH while 8 threads schedule it: no crash, RuntimeError after the
    delete (and never before), no run after the delete, runs <= successful schedules."""
    stats = []
    for _round in range(10):
        runs = [0]
        ok = [0] * N_THREADS
        refused = [0] * N_THREADS
        final_refused = [False] * N_THREADS
        deleting = threading.Event()  # set just before delete()
        deleted = threading.Event()  # set just after delete() returned

        def cb():
            runs[0] += 1

        bh = ctx.bh_new(cb)

        def worker(k):
            for _ in range(20_000):  # until the delete is seen (bounded)
                try:
                    bh.schedule() if k % 2 else bh.schedule_idle()
                except RuntimeError:
                    assert deleting.is_set(), "RuntimeError before delete()"
                    refused[k] += 1
                    break
                ok[k] += 1
            assert deleted.wait(5), "the owner never deleted the BH"
            n = 0
            for i in range(3):  # once deleted, always refused
                try:
                    bh.cancel() if i else bh.schedule()
                except RuntimeError:
                    n += 1
            final_refused[k] = n == 3

        dog = watchdog(ctx, 10.0)
        for k in range(N_THREADS):
            threads.start(worker, k)
        deadline = time.monotonic() + 10
        while runs[0] < 1:
            assert time.monotonic() < deadline and not dog.fired
            ctx.poll(True)
        deleting.set()
        bh.delete()  # races with the threads still scheduling
        deleted.set()
        with pytest.raises(RuntimeError):
            bh.schedule()
        ctx.poll(False)  # applies the delete
        frozen = runs[0]
        threads.join_all(10)
        threads.threads.clear()
        while ctx.poll(False):
            pass
        dog.cancel()
        assert all(final_refused), f"a deleted BH accepted schedule()/cancel(): {refused}"
        assert runs[0] == frozen, "the BH ran after it was deleted"
        assert runs[0] <= sum(ok)
        stats.append((sum(ok), runs[0]))
    print(f"\ndelete vs schedule: 10 rounds, (successful schedules, runs) = {stats}")


@pytest.mark.parametrize("fdmon", ["poll", "epoll", "io_uring"])
def test_set_fd_handler_from_thread_wakes_sleeping_owner(make_ctx, qloop_module, fdmon,
                                                        threads, watchdog):
    c = make_ctx(fdmon=fdmon)
    owner = threading.get_native_id()
    latencies = []
    for rnd in range(20):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.send(b"ping")  # readable before it is even registered
        got = []
        registered = [0.0]

        def reader():
            got.append(a.recv(16))
            c.set_fd_handler(a, None)

        def registrar():
            assert wait_until_thread_sleeps(owner, 5), \
                "the owner never went to sleep in poll(True)"
            registered[0] = time.monotonic()
            c.set_fd_handler(a, io_read=reader)

        dog = watchdog(c, 5.0)
        while c.poll(False):
            pass
        threads.start(registrar)
        polls = 0
        while not got:
            assert not dog.fired, f"round {rnd}: the sleeping poll did not pick up the new fd"
            assert polls < 4, f"round {rnd}: {polls} blocking polls without dispatching"
            c.poll(True)
            polls += 1
        latencies.append(time.monotonic() - registered[0])
        threads.join_all(5)
        threads.threads.clear()
        dog.cancel()
        assert got == [b"ping"]
        a.close()
        b.close()
    print(f"\nset_fd_handler from a thread ({fdmon}): max wake-up "
          f"{max(latencies) * 1000:.1f} ms over 20 rounds")
    assert max(latencies) < 2.0


def test_nonblocking_poll_is_bounded_while_threads_schedule(ctx, qloop_module, threads, request):
    """poll(False) must return in bounded time while other threads keep calling schedule()
    (QEMU moves the whole pending list in one atomic step; it never chases producers)."""
    bh = ctx.bh_new(lambda: None)
    stop = threading.Event()
    done = [0] * 4

    def spam(k):
        for i in range(1_000_000):
            if stop.is_set():
                return
            bh.schedule()
            done[k] = i

    for k in range(4):
        threads.start(spam, k)
    deadline = time.monotonic() + 10
    while min(done) < 20_000:  # all four are running (bounded wait)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    worst = 0.0
    try:
        for _ in range(20):
            t0 = time.monotonic()
            ctx.poll(False)
            worst = max(worst, time.monotonic() - t0)
            if worst > 0.5:
                break
    finally:
        stop.set()
        threads.join_all(60)
    assert worst < 0.5, f"one poll(False) took {worst:.2f} s while 4 threads scheduled"
    bh.delete()


def test_rescheduling_a_pending_bh_is_constant_space(ctx, qloop_module, request):
    """schedule() of an already-pending BH is a no-op (QEMU: the PENDING flag is already
    set, nothing is pushed), so 200,000 calls before the next poll take O(1) memory."""
    import tracemalloc

    bh = ctx.bh_new(lambda: None)
    bh.schedule()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(200_000):
            bh.schedule()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert ctx.poll(False) is True
    assert grown < 64 * 1024, f"200,000 schedule() of a pending BH allocated {grown} bytes"


def test_oneshots_from_threads_each_run_exactly_once(ctx, threads, watchdog, fast_switching):
    """One-shot BHs are recycled by their context once they ran: eight threads posting
    one-shots while the owner polls still get every callback exactly once, and none twice
    (a recycled BH is never run for an old callback)."""
    per_thread = 2000
    seen = [[0] * per_thread for _ in range(N_THREADS)]
    dog = watchdog(ctx, 20.0)

    def poster(t):
        row = seen[t]

        def make(i):
            def cb():
                row[i] += 1
            return cb

        for i in range(per_thread):
            ctx.bh_schedule_oneshot(make(i))

    for t in range(N_THREADS):
        threads.start(poster, t)
    total = N_THREADS * per_thread
    while sum(map(sum, seen)) < total and not dog.fired:
        ctx.poll(True)
    threads.join_all()
    while ctx.poll(False):
        pass
    assert not dog.fired
    assert all(c == 1 for row in seen for c in row)
