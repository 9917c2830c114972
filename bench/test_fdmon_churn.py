"""fdmon_churn: connection churn, where registration changes dominate the fd monitor's work.

A TCP server on 127.0.0.1 inside the benchmark process, on ``AioContext(fdmon=...)`` driven by
``ctx.poll(True)``: the listening socket's read handler accepts every pending connection and
registers a read handler for it; that handler reads the client's 64 bytes, echoes them, removes
itself and closes the socket.  The load (``bench._churn_client``, 4 threads in another process)
opens N short connections per round (default 10,000), one exchange each.  So every connection
adds and removes one handler: epoll_ctl ADD and DEL under epoll; under io_uring a POLL_ADD
queued into the next wait, and (the handler removing itself after its completion) no cancel.
qloop-core only, ``"epoll"`` against ``"io_uring"`` (and ``"auto"``), in one run.

The figure compared is the server's CPU time per connection (``time.process_time()`` of this
process across the round; the client runs elsewhere): ``extra_info["cpu_min_s"]``, the least
of the rounds.  Bar: io_uring's CPU per connection <= epoll's.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from bench._common import REPO_ROOT, ROUNDS, run_rounds, scaled

N = scaled(10_000, minimum=50)
THREADS = 4


class ChurnServer:
    def __init__(self, impl, fdmon: str) -> None:
        self.ctx = impl.open(fdmon=fdmon)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.conns: dict[int, socket.socket] = {}
        self.done = 0
        self.cpu: list[float] = []
        self.ctx.set_fd_handler(self.lsock, io_read=self.on_accept)
        self.fdmon = self.ctx.fdmon

    def on_accept(self) -> None:
        set_fd_handler = self.ctx.set_fd_handler
        while True:
            try:
                conn, _ = self.lsock.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            fd = conn.fileno()
            self.conns[fd] = conn
            set_fd_handler(fd, io_read=lambda fd=fd: self.on_read(fd))

    def on_read(self, fd: int) -> None:
        conn = self.conns[fd]
        try:
            data = conn.recv(256)
        except BlockingIOError:
            return
        if data:
            conn.send(data)
        self.ctx.set_fd_handler(fd, None)
        del self.conns[fd]
        conn.close()
        self.done += 1

    def start_client(self) -> tuple:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._churn_client", str(self.port), str(N), str(THREADS)],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return (proc,)

    def run(self, proc) -> int:
        poll = self.ctx.poll
        self.done = 0
        start = time.process_time()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        while self.done < N:
            poll(True)
        self.cpu.append(time.process_time() - start)
        out, _ = proc.communicate(timeout=60)
        assert out.split() == ["DONE", str(N)], out
        return self.done

    @staticmethod
    def stop_client(proc) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.ctx.close()
        for conn in self.conns.values():
            conn.close()
        self.lsock.close()


@pytest.mark.benchmark(group="fdmon_churn")
@pytest.mark.parametrize("fdmon", ["epoll", "io_uring", "auto"])
def test_fdmon_churn(benchmark, impl, fdmon):
    if impl.name != "qloop-core":
        pytest.skip("the core's fd monitors only")
    if fdmon == "io_uring":
        impl.skip_without_fdmon(fdmon)  # the fallback, or a kernel/sandbox without io_uring
    server = ChurnServer(impl, fdmon)
    try:
        run_rounds(
            benchmark,
            server.run,
            setup=server.start_client,
            cleanup=server.stop_client,
            ops=N,
            expect=N,
            rounds=max(ROUNDS, 5),
            unit="connections",
            fdmon_asked=fdmon,
            fdmon=server.fdmon,
        )
        benchmark.extra_info["cpu_min_s"] = min(server.cpu)
        benchmark.extra_info["fdmon"] = server.ctx.fdmon  # auto moves at its first wait
    finally:
        server.close()
