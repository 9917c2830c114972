"""User-space instructions per HTTP request of each loop's server, under callgrind.

    python -m bench.http_instructions [--app raw aiohttp uvicorn] [--impl ...] [--requests N]

wrk's requests/s moves with whatever else the machine runs; an instruction count does not.
Each server (``bench._http_server``) runs under ``valgrind --tool=callgrind`` twice, once
serving N keep-alive requests and once 2N (8 connections, one request in flight on each), and
the difference divided by N is its cost per request without the start-up.  Kernel time (the
syscalls) is not counted, so this ranks the user-space work only: the loop's own share and
the framework's, which is the same code on every loop.

Needs valgrind (Debian: ``apt-get install valgrind``).  Takes a few minutes per server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

from bench._common import REPO_ROOT
from bench._http_server import APPS, IMPLS

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
CONNECTIONS = 8


def _drive(port: int, total: int) -> None:
    """``total`` requests over CONNECTIONS keep-alive connections, each waiting for its answer."""
    errors: list[BaseException] = []

    def one_connection() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                for _ in range(total // CONNECTIONS):
                    sock.sendall(REQUEST)
                    answer = b""
                    while not answer.endswith(b"Hello, World!"):
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("the server closed the connection")
                        answer += data
        except (OSError, ConnectionError) as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=one_connection) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def instructions(impl: str, app: str, requests: int, workdir: str) -> int:
    """Total instructions (callgrind's summary) of one server serving ``requests``."""
    out = os.path.join(workdir, f"callgrind.{impl}.{app}.{requests}")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if impl == "qloop-fallback":
        env["QLOOP_NO_EXTENSIONS"] = "1"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
           "-m", "bench._http_server", "--impl", impl, "--app", app]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=env, cwd=REPO_ROOT) as server:
        assert server.stdin is not None and server.stdout is not None
        while True:
            line = server.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"{impl}/{app}: the server exited before READY")
            if line.startswith("READY"):
                break
        _drive(int(line.split()[1]), requests)
        server.stdin.close()
        server.wait()
    with open(out) as f:
        match = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", nargs="+", choices=APPS, default=list(APPS))
    parser.add_argument("--impl", nargs="+", choices=IMPLS,
                        default=["qloop-core", "asyncio", "uvloop", "rloop"])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.requests < CONNECTIONS:
        parser.error(f"--requests must be at least {CONNECTIONS}")
    with tempfile.TemporaryDirectory(prefix="qloop-http-ir.") as workdir:
        for app in args.app:
            for impl in args.impl:
                once = instructions(impl, app, args.requests, workdir)
                twice = instructions(impl, app, 2 * args.requests, workdir)
                print(f"{app:8s} {impl:15s} {(twice - once) / args.requests:10,.0f} "
                      "instructions/request", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
