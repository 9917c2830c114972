"""Load client for the ``echo`` workload: the same client for every server implementation.

    python -m bench._echo_client --port P [--host 127.0.0.1] [--conns 100] [--msize 1024]

Opens ``--conns`` TCP connections, warms up, prints ``READY``, then obeys commands on stdin:
``RUN <n>`` makes n request/response round trips in total, spread evenly over the
connections (each connection keeps exactly one ``--msize`` message in flight) and prints one
JSON line ``{"rt": n, "elapsed": s, "client_cpu": s}``; ``QUIT`` (or EOF) exits.  Runs on
uvloop when it is installed (the fastest Python client available), else asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time


class Client(asyncio.Protocol):
    def __init__(self, msg: bytes) -> None:
        self.msg = msg
        self.msize = len(msg)
        self.transport = None
        self.got = 0
        self.left = 0
        self.done = None
        self.lost = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.lost = exc or ConnectionError("connection closed by the server")
        if self.done is not None and not self.done.done():
            self.done.set_exception(self.lost)

    def start(self, count: int, done) -> None:
        self.left = count
        self.done = done
        if self.lost is not None:
            done.set_exception(self.lost)
        elif count <= 0:
            done.set_result(None)
        else:
            self.transport.write(self.msg)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= self.msize:
            if self.got > self.msize:
                self.done.set_exception(
                    RuntimeError(f"echo returned {self.got} bytes for {self.msize}")
                )
                return
            self.got = 0
            self.left -= 1
            if self.left > 0:
                self.transport.write(self.msg)
            else:
                self.done.set_result(None)


async def run(loop, clients, n: int) -> None:
    per, extra = divmod(n, len(clients))
    futs = []
    for i, c in enumerate(clients):
        fut = loop.create_future()
        c.start(per + (1 if i < extra else 0), fut)
        futs.append(fut)
    await asyncio.gather(*futs)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--msize", type=int, default=1024)
    ap.add_argument(
        "--warmup", type=int, default=10, help="round trips per connection before READY"
    )
    args = ap.parse_args(argv)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
        kind = "uvloop"
    except ImportError:
        loop = asyncio.new_event_loop()
        kind = "asyncio"
    msg = b"x" * args.msize

    async def connect():
        out = []
        for _ in range(args.conns):
            _, proto = await loop.create_connection(
                lambda: Client(msg), args.host, args.port
            )
            out.append(proto)
        return out

    clients = loop.run_until_complete(connect())
    loop.run_until_complete(run(loop, clients, args.warmup * args.conns))
    print(f"READY {kind}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "QUIT":
            break
        if cmd[0] != "RUN":
            print(json.dumps({"error": f"unknown command {line!r}"}), flush=True)
            continue
        n = int(cmd[1])
        cpu0, t0 = _cpu(), time.perf_counter()
        loop.run_until_complete(run(loop, clients, n))
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        print(json.dumps({"rt": n, "elapsed": elapsed, "client_cpu": cpu}), flush=True)
    for c in clients:
        c.transport.close()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
