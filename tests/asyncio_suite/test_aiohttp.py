"""A real third-party program on the loop under test: an aiohttp server and client.

The server and the client share one loop, started the way the README tells users to
(``asyncio.Runner(loop_factory=...)``; on 3.12+ ``asyncio.run(..., loop_factory=...)`` is the
same).  1,000 requests of several kinds (GET with a query, POST with a body that the server
echoes, a streamed response, a keep-alive pool of 20 connections used concurrently) must all
come back intact, in time.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

import pytest

from ._loops import LoopArm

aiohttp = pytest.importorskip(
    "aiohttp",
    reason="aiohttp is not installed (pip install -r requirements/asyncio-suite.txt)",
)
from aiohttp import web

REQUESTS = 1000
CONCURRENCY = 20
STREAM_CHUNKS = 16
TIMEOUT_S = 120.0


SERVED = web.AppKey("served", list)  # the path of every request the server answered


@web.middleware
async def _count(request: web.Request, handler):  # type: ignore[no-untyped-def]
    response = await handler(request)
    request.app[SERVED].append(request.path)
    return response


def _payload(n: int) -> bytes:
    return (b"%d:" % n) * (1 + n % 97)


async def _handle_get(request: web.Request) -> web.Response:
    n = int(request.query["n"])
    return web.json_response({"n": n, "square": n * n})


async def _handle_post(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(
        body=body[::-1], headers={"X-Sha256": hashlib.sha256(body).hexdigest()}
    )


async def _handle_stream(request: web.Request) -> web.StreamResponse:
    n = int(request.match_info["n"])
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(STREAM_CHUNKS):
        await response.write(b"%d-%d;" % (n, i))
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def _one_request(session: aiohttp.ClientSession, base: str, n: int) -> None:
    kind = n % 3
    if kind == 0:
        async with session.get(f"{base}/get", params={"n": str(n)}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"n": n, "square": n * n}
    elif kind == 1:
        body = _payload(n)
        async with session.post(f"{base}/post", data=body) as resp:
            assert resp.status == 200
            assert resp.headers["X-Sha256"] == hashlib.sha256(body).hexdigest()
            assert await resp.read() == body[::-1]
    else:
        async with session.get(f"{base}/stream/{n}") as resp:
            assert resp.status == 200
            expected = b"".join(b"%d-%d;" % (n, i) for i in range(STREAM_CHUNKS))
            assert await resp.read() == expected


async def _exchange() -> tuple[int, asyncio.AbstractEventLoop]:
    app = web.Application(middlewares=[_count])
    app[SERVED] = []
    app.router.add_get("/get", _handle_get)
    app.router.add_post("/post", _handle_post)
    app.router.add_get("/stream/{n}", _handle_stream)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(REQUESTS):
                queue.put_nowait(n)
            done = 0

            async def worker() -> None:
                nonlocal done
                while not queue.empty():
                    await _one_request(session, base, queue.get_nowait())
                    done += 1

            async with asyncio.timeout(TIMEOUT_S):
                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        assert len(app[SERVED]) == REQUESTS, len(app[SERVED])
        return done, asyncio.get_running_loop()
    finally:
        await runner.cleanup()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is Python 3.11+")
def test_aiohttp_server_and_client_exchange_1000_requests(loop_arm: LoopArm) -> None:
    with asyncio.Runner(loop_factory=loop_arm.new_event_loop) as runner:
        done, loop = runner.run(_exchange())
        assert loop is runner.get_loop()
    # the program really ran on the arm's loop class
    package = (loop_arm.module_name or "asyncio").partition(".")[0]
    assert type(loop).__module__.partition(".")[0] == package, type(loop)
    assert done == REQUESTS
