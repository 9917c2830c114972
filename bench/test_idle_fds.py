"""idle_fds: one active socketpair ping-pong with 10,000 idle registered sockets vs with none.

Both ends of one ``socket.socketpair()`` have read handlers in the same loop; each handler
reads the byte and sends one back, so a round trip is two wake-ups.  The idle sockets (5,000
socketpairs) have read handlers that never fire.  qloop: ``AioContext(fdmon="epoll")`` and
``ctx.set_fd_handler(sock, io_read=...)``; asyncio/uvloop: ``loop.add_reader(sock, ...)``
(both use epoll on Linux).  M round trips per round (default 20,000).
Bar: qloop-core and qloop-fallback are at most 1.2x slower with the idle sockets.
"""

from __future__ import annotations

import socket

import pytest

from bench._common import ROUNDS, raise_nofile_limit, run_rounds, scaled

IDLE = scaled(10_000, minimum=100)
M = scaled(20_000, minimum=200)
FDMON = "epoll"


def _noop():
    pass


class PingPong:
    """Two ends of a socketpair bouncing one byte; ``n`` counts completed round trips."""

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.n = 0
        self.target = 0
        self.done = None  # asyncio: loop.stop

    def on_a(self):
        self.a.recv(1)
        self.n += 1
        if self.n < self.target:
            self.a.send(b"x")
        elif self.done is not None:
            self.done()

    def on_b(self):
        self.b.recv(1)
        self.b.send(b"y")

    def close(self):
        self.a.close()
        self.b.close()


class Bench:
    def __init__(self, impl, n_idle: int) -> None:
        limit = raise_nofile_limit(n_idle + 256)
        if limit < n_idle + 64:
            pytest.skip(f"RLIMIT_NOFILE {limit} is too low for {n_idle} idle sockets")
        self.impl = impl
        self.idle: list[socket.socket] = []
        self.obj = None
        self.pp = PingPong()
        try:
            for _ in range(n_idle // 2):
                self.idle.extend(socket.socketpair())
            if impl.is_qloop:
                self.obj = ctx = impl.open(fdmon=FDMON)
                for s in self.idle:
                    ctx.set_fd_handler(s, io_read=_noop)
                ctx.set_fd_handler(self.pp.a, io_read=self.pp.on_a)
                ctx.set_fd_handler(self.pp.b, io_read=self.pp.on_b)
                self.fdmon = ctx.fdmon
            else:
                self.obj = loop = impl.open()
                for s in self.idle:
                    loop.add_reader(s, _noop)
                loop.add_reader(self.pp.a, self.pp.on_a)
                loop.add_reader(self.pp.b, self.pp.on_b)
                self.pp.done = loop.stop
                selector = getattr(loop, "_selector", None)
                self.fdmon = (
                    type(selector).__name__ if selector is not None else "libuv"
                )
        except BaseException:
            self.close()
            raise

    def run(self) -> int:
        pp = self.pp
        pp.n = 0
        pp.target = M
        pp.a.send(b"x")
        if self.impl.is_qloop:
            poll = self.obj.poll
            while pp.n < M:
                poll(True)
        else:
            self.obj.run_forever()
        return pp.n

    def close(self):
        Impl = type(self.impl)
        Impl.close(
            self.obj
        )  # the loop first: user fds are closed after their handlers go
        self.obj = None
        self.pp.close()
        for s in self.idle:
            s.close()
        self.idle.clear()


@pytest.mark.benchmark(group="idle_fds")
@pytest.mark.parametrize("idle", ["idle_0", "idle_10k"])
def test_idle_fds(benchmark, impl, idle):
    n_idle = 0 if idle == "idle_0" else IDLE
    state = Bench(impl, n_idle)
    try:
        run_rounds(
            benchmark,
            state.run,
            ops=M,
            expect=M,
            rounds=max(ROUNDS, 5),  # short rounds; the bar is a ratio of two of them
            unit="round trips",
            idle_sockets=n_idle,
            fdmon=state.fdmon,
        )
    finally:
        state.close()
