"""fdmon_auto: the fd monitor ``fdmon="auto"`` picks, against ``"poll"``, ``"epoll"`` and
``"io_uring"`` forced (io_uring: the core only, where the kernel offers it).

One socketpair ping-pong (as in ``test_idle_fds.py``: both ends have read handlers in the same
context, each reads the byte and sends one back) through ``AioContext(fdmon=...)`` driven by
``ctx.poll(True)``, with N idle registered socketpairs: N = 1, 8, 30 and 64 pairs, and 0 and
10,000 idle fds.  qloop only (asyncio and uvloop have no fd-monitor choice).  The context is
polled once before the timed rounds, so auto's move to epoll is not inside a round.

The figure compared is round trips per CPU-second of the process (the whole ping-pong runs in
it; CPU time is steadier than wall time on a shared machine): ``extra_info["cpu_min_s"]``, the
least CPU time of a round (9 rounds).  ``forced poll`` at 10,000 idle fds runs fewer round trips (each
wait walks every fd).
Bars: auto >= 0.95x the better of poll and epoll at every N (core and fallback); 10,000 idle
fds cost at most 1.05x no idle fd under auto.  io_uring (core): CPU per round trip <= 1.0x
epoll's at every N, and 10,000 idle fds cost at most 1.05x no idle fd.
"""

from __future__ import annotations

import socket
import time

import pytest

from bench._common import ROUNDS, raise_nofile_limit, run_rounds, scaled

M = scaled(10_000, minimum=200)
M_SLOW = scaled(1_000, minimum=20)  # forced poll with 10k idle fds
IDLE = {
    "fds_0": 0,
    "pairs_1": 2,
    "pairs_8": 16,
    "pairs_30": 60,
    "pairs_64": 128,
    "fds_10k": scaled(10_000, minimum=100),
}


def _noop():
    pass


class PingPong:
    def __init__(self, impl, fdmon: str, n_idle: int) -> None:
        limit = raise_nofile_limit(n_idle + 256)
        if limit < n_idle + 64:
            pytest.skip(f"RLIMIT_NOFILE {limit} is too low for {n_idle} idle sockets")
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.idle: list[socket.socket] = []
        self.n = 0
        self.target = 0
        self.cpu: list[float] = []
        self.ctx = impl.open(fdmon=fdmon)
        try:
            for _ in range(n_idle // 2):
                self.idle.extend(socket.socketpair())
            for s in self.idle:
                self.ctx.set_fd_handler(s, io_read=_noop)
            self.ctx.set_fd_handler(self.a, io_read=self.on_a)
            self.ctx.set_fd_handler(self.b, io_read=self.on_b)
            while self.ctx.poll(False):  # auto moves to epoll here, outside the rounds
                pass
            self.fdmon = self.ctx.fdmon
        except BaseException:
            self.close()
            raise

    def on_a(self):
        self.a.recv(1)
        self.n += 1
        if self.n < self.target:
            self.a.send(b"x")

    def on_b(self):
        self.b.recv(1)
        self.b.send(b"y")

    def run(self, m: int) -> int:
        self.n = 0
        self.target = m
        poll = self.ctx.poll
        start = time.process_time()
        self.a.send(b"x")
        while self.n < m:
            poll(True)
        self.cpu.append(time.process_time() - start)
        return self.n

    def close(self):
        if self.ctx is not None:
            self.ctx.close()  # the context first: user fds are closed after their handlers go
            self.ctx = None
        self.a.close()
        self.b.close()
        for s in self.idle:
            s.close()
        self.idle.clear()


@pytest.mark.benchmark(group="fdmon_auto")
@pytest.mark.parametrize("fdmon", ["poll", "epoll", "auto", "io_uring"])
@pytest.mark.parametrize("idle", list(IDLE))
def test_fdmon_auto(benchmark, impl, idle, fdmon):
    if not impl.is_qloop:
        pytest.skip("qloop's fd monitors only")
    if fdmon == "io_uring":
        impl.skip_without_fdmon(fdmon)  # the fallback, or a kernel/sandbox without io_uring
    n_idle = IDLE[idle]
    m = M_SLOW if (fdmon == "poll" and n_idle > 1000) else M
    state = PingPong(impl, fdmon, n_idle)
    try:
        run_rounds(
            benchmark,
            lambda: state.run(m),
            ops=m,
            expect=m,
            rounds=max(ROUNDS, 9),  # short rounds; the bars compare the least CPU of each
            unit="round trips",
            idle_fds=n_idle,
            fdmon_asked=fdmon,
            fdmon=state.fdmon,
        )
        benchmark.extra_info["cpu_min_s"] = min(state.cpu)
    finally:
        state.close()
