"""The ASGI application of the uvicorn tests (``tests/compat/test_uvicorn.py``).

Plain ASGI, no framework, so that every await it makes is the loop's:

* ``GET /`` -- ``hello``;
* ``GET /loop`` -- JSON: the running loop's class and ``qloop.IMPLEMENTATION`` (``null``
  when qloop is not imported), so a test sees which loop uvicorn really made;
* ``POST /echo`` -- the request body, read in as many ``http.request`` messages as uvicorn
  sends, back with its SHA-256 in ``x-sha256``;
* ``GET /stream?n=N`` -- N chunks (``more_body``), each after an ``asyncio.sleep(0)``;
* ``GET /work`` -- a task, a ``run_in_executor`` call and a ``call_later`` timer, awaited;
* lifespan: ``startup`` and ``shutdown`` print ``LIFESPAN startup`` / ``LIFESPAN shutdown``
  on stdout, so a test sees that uvicorn's graceful shutdown ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import threading
from typing import Any


async def _respond(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _loop_info() -> dict:
    loop = asyncio.get_running_loop()
    qloop = sys.modules.get("qloop")
    cls = type(loop)
    return {
        "loop": f"{cls.__module__}.{cls.__qualname__}",
        "implementation": getattr(qloop, "IMPLEMENTATION", None),
    }


async def _work() -> dict:
    loop = asyncio.get_running_loop()

    async def child() -> int:
        await asyncio.sleep(0)
        return 7

    task = asyncio.create_task(child())
    thread_name = await loop.run_in_executor(None, lambda: threading.current_thread().name)
    timer: asyncio.Future = loop.create_future()
    loop.call_later(0.001, timer.set_result, "fired")
    return {
        "task": await task,
        "executor_thread_is_other": thread_name != threading.current_thread().name,
        "timer": await asyncio.wait_for(timer, 10),
    }


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print("LIFESPAN startup", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("LIFESPAN shutdown", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/" and method == "GET":
        await _respond(send, 200, b"hello")
    elif path == "/loop":
        await _respond(send, 200, json.dumps(_loop_info()).encode())
    elif path == "/echo" and method == "POST":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        digest = hashlib.sha256(body).hexdigest().encode()
        await _respond(send, 200, body, [(b"x-sha256", digest)])
    elif path == "/stream":
        n = int(scope["query_string"].decode().partition("n=")[2] or 0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(n):
            await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": b"%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/work":
        await _respond(send, 200, json.dumps(await _work()).encode())
    else:
        await _respond(send, 404, b"not found")
