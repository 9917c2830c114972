"""HTTP "hello" servers on an asyncio event loop, for the ``http_*`` workloads (wrk load).

    python -m bench._http_server --impl {qloop-core,qloop-fallback,asyncio,uvloop,rloop} \
        --app {raw,aiohttp,uvicorn}

Binds 127.0.0.1 on an ephemeral port and, once the server runs on its loop, prints one line
``READY <port> <loop class> <qloop implementation or ->`` and serves until its stdin reaches
EOF (or it is terminated).  Every server answers every request with the same 13-byte body
(``Hello, World!``), HTTP/1.1 keep-alive:

* ``raw``: an ``asyncio.Protocol`` that splits requests at the blank line ending their headers
  and writes a fixed response per request (GET without a body, pipelining allowed);
* ``aiohttp``: an aiohttp ``web.Application`` with one route, served by ``web.AppRunner`` and
  ``web.SockSite`` on the listening socket, access log off;
* ``uvicorn``: a plain ASGI app under uvicorn with ``http="httptools"``, access log off, its loop
  chosen the way a user chooses it: ``uvicorn.Config(loop=...)``, the value of ``--loop``
  (``"qloop:new_event_loop"``, ``"asyncio"``, ``"uvloop"``, ``"rloop:new_event_loop"``).

The two qloop arms both use the public ``qloop.new_event_loop``: the parent starts the fallback
arm with ``QLOOP_NO_EXTENSIONS=1`` in the environment, and this process checks that
``qloop.IMPLEMENTATION`` is the one asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import socket
import sys
import threading
from collections.abc import Callable

IMPLS = ("qloop-core", "qloop-fallback", "asyncio", "uvloop", "rloop")
APPS = ("raw", "aiohttp", "uvicorn")
BODY = b"Hello, World!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n%s" % (len(BODY), BODY)
)
# uvicorn's --loop value for each implementation (a module:function is called with no
# arguments to make the loop)
UVICORN_LOOP = {
    "qloop-core": "qloop:new_event_loop",
    "qloop-fallback": "qloop:new_event_loop",
    "asyncio": "asyncio",
    "uvloop": "uvloop",
    "rloop": "rloop:new_event_loop",
}


def _listen(host: str) -> socket.socket:
    """A listening TCP socket on ``host``, an ephemeral port.

    Made with ``proto=IPPROTO_TCP``, as ``getaddrinfo`` gives it when a server binds a host and
    port itself: asyncio (and qloop) set TCP_NODELAY on accepted connections only when the
    listening socket says it is TCP; with ``proto=0`` a server that writes its headers and its
    body separately (uvicorn) waits for delayed ACKs, ~40 ms per request.
    """
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, 0))
    lsock.listen(1024)
    lsock.setblocking(False)
    return lsock


def loop_factory(impl: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of a new event loop of ``impl`` (the qloop arms: ``qloop.new_event_loop``)."""
    if impl in ("qloop-core", "qloop-fallback"):
        qloop = importlib.import_module("qloop")
        want = "core" if impl == "qloop-core" else "fallback"
        if qloop.IMPLEMENTATION != want:
            raise RuntimeError(
                f"{impl}: qloop.IMPLEMENTATION is {qloop.IMPLEMENTATION!r}, expected {want!r} "
                f"(QLOOP_NO_EXTENSIONS={os.environ.get('QLOOP_NO_EXTENSIONS', '')!r})"
            )
        return qloop.new_event_loop  # type: ignore[no-any-return]
    if impl == "asyncio":
        return asyncio.SelectorEventLoop
    if impl == "uvloop":
        return importlib.import_module("uvloop").new_event_loop  # type: ignore[no-any-return]
    if impl == "rloop":
        return importlib.import_module("rloop").new_event_loop  # type: ignore[no-any-return]
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")


def _ready(port: int) -> None:
    loop = asyncio.get_running_loop()
    qloop = sys.modules.get("qloop")
    impl = getattr(qloop, "IMPLEMENTATION", "-") if qloop is not None else "-"
    cls = type(loop)
    print(f"READY {port} {cls.__module__}.{cls.__qualname__} {impl}", flush=True)


class HelloProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: one fixed response per request (requests end at a blank line)."""

    __slots__ = ("buf", "transport")

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n = buf.count(b"\r\n\r\n")
        if n:
            self.transport.write(RESPONSE * n)
            buf = buf[buf.rindex(b"\r\n\r\n") + 4 :]
        self.buf = buf


async def _serve_raw(lsock, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    port = lsock.getsockname()[1]  # rloop's create_server takes the socket over
    server = await loop.create_server(HelloProtocol, sock=lsock, backlog=1024)
    _ready(port)
    try:
        await stop.wait()
    finally:
        server.close()


async def _serve_aiohttp(lsock, stop: asyncio.Event) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = lsock.getsockname()[1]
    site = web.SockSite(runner, lsock, backlog=1024)
    await site.start()
    _ready(port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run_on_loop(impl: str, app: str, lsock) -> None:
    serve = _serve_raw if app == "raw" else _serve_aiohttp

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_stdin() -> None:
            if not os.read(0, 4096):
                stop.set()

        loop.add_reader(0, on_stdin)
        try:
            await serve(lsock, stop)
        finally:
            loop.remove_reader(0)

    with asyncio.Runner(loop_factory=loop_factory(impl)) as runner:
        runner.run(main())


async def hello_asgi(scope, receive, send) -> None:
    """The uvicorn app: ``Hello, World!`` for every request; READY at lifespan startup."""
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
            }
        )
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _ready(int(os.environ["QLOOP_BENCH_HTTP_PORT"]))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _run_uvicorn(impl: str, lsock) -> None:
    import uvicorn

    loop_factory(impl)  # the qloop arms: check the implementation that will run
    os.environ["QLOOP_BENCH_HTTP_PORT"] = str(lsock.getsockname()[1])
    config = uvicorn.Config(
        hello_asgi,
        loop=UVICORN_LOOP[impl],
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=1024,
    )
    server = uvicorn.Server(config)

    def stop_at_eof() -> None:
        while os.read(0, 4096):
            pass
        server.should_exit = True

    threading.Thread(target=stop_at_eof, daemon=True).start()
    server.run(sockets=[lsock])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--impl", choices=IMPLS, required=True)
    ap.add_argument("--app", choices=APPS, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    lsock = _listen(args.host)
    if args.app == "uvicorn":
        _run_uvicorn(args.impl, lsock)
    else:
        _run_on_loop(args.impl, args.app, lsock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
