"""uvicorn (with httptools) on qloop's loop, started the way users start it, hit over HTTP.

* ``test_uvicorn_command_line``: ``python -m uvicorn --loop qloop:new_event_loop --http
  httptools --host 127.0.0.1 --port 0 ...`` in a child process (the fallback arm with
  ``QLOOP_NO_EXTENSIONS=1`` in its environment; asyncio's arm: ``--loop asyncio``).  uvicorn
  imports ``--loop``'s ``module:function`` and calls it with no arguments to make the loop
  (uvicorn >= 0.36).  Real requests on 127.0.0.1 (``http.client``, blocking, with timeouts):
  the loop the app reports, keep-alive, a 1 MiB POST echoed, a chunked stream, a task, an
  executor call and a timer in a handler, 8 concurrent clients; then SIGINT and uvicorn's
  graceful shutdown (lifespan shutdown, exit status 0).
* ``test_uvicorn_server_in_process``: ``uvicorn.Server(config).serve(sockets=[...])`` run by
  ``asyncio.Runner(loop_factory=...)`` with an aiohttp client on the same loop.

Every wait is bounded; nothing sleeps to let the server settle: the listening socket exists
before the first connect, so a request waits in its backlog until uvicorn accepts it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from _mainloop_support import package_root, subprocess_env

from ._asgi_app import app

uvicorn = pytest.importorskip("uvicorn", reason="pip install -r requirements/test.txt")
pytest.importorskip("httptools", reason="pip install -r requirements/test.txt")

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 60.0
TIMEOUT_S = 30.0


def _child_env(loop_impl) -> dict:
    mod = loop_impl.module
    if mod is not None:
        return subprocess_env(mod)
    import qloop

    env = dict(os.environ)
    root = package_root(qloop)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _wait_for_port(proc: subprocess.Popen) -> tuple[int, str]:
    """Read uvicorn's log (stderr) until it says where it runs; (port, the log so far)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + START_TIMEOUT_S
    log = b""
    while True:
        remaining = deadline - time.monotonic()
        text = log.decode(errors="replace")
        assert remaining > 0, f"uvicorn did not start within {START_TIMEOUT_S} s:\n{text}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"uvicorn exited ({proc.wait(TIMEOUT_S)}) before it ran:\n{text}"
        log += chunk
        m = re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log)
        if m:
            return int(m.group(1)), log.decode(errors="replace")


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def _expected_loop(loop_impl) -> tuple[str, str | None]:
    if loop_impl.name == "asyncio":
        return "asyncio.", None
    return "qloop.", loop_impl.name.removeprefix("qloop-")


def _client_session(port: int, n: int) -> list[bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        return [_get(conn, "/")[1] for _ in range(n)]
    finally:
        conn.close()


def test_uvicorn_command_line(loop_impl):
    loop_arg = "asyncio" if loop_impl.name == "asyncio" else "qloop:new_event_loop"
    cmd = [
        sys.executable, "-m", "uvicorn",
        "--loop", loop_arg,
        "--http", "httptools",
        "--host", "127.0.0.1", "--port", "0",
        "--lifespan", "on",
        "--no-access-log",
        "--app-dir", str(HERE),
        "_asgi_app:app",
    ]
    proc = subprocess.Popen(
        cmd,
        env=_child_env(loop_impl),
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        port, log = _wait_for_port(proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)

        # which loop uvicorn made from --loop
        status, body = _get(conn, "/loop")
        assert status == 200, body
        info = json.loads(body)
        prefix, implementation = _expected_loop(loop_impl)
        assert info["loop"].startswith(prefix), info
        if implementation is not None:
            assert info["implementation"] == implementation, info

        # keep-alive: 100 requests on one connection
        sock = conn.sock
        assert [_get(conn, "/") for _ in range(100)] == [(200, b"hello")] * 100
        assert conn.sock is sock, "the connection was not kept alive"

        # a 1 MiB body, echoed
        payload = os.urandom(1 << 20)
        conn.request("POST", "/echo", body=payload)
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == payload
        assert response.getheader("x-sha256") == hashlib.sha256(payload).hexdigest()

        # a chunked stream
        status, body = _get(conn, "/stream?n=200")
        assert status == 200
        assert body == b"".join(b"%d\n" % i for i in range(200))

        # a task, an executor call and a timer inside a handler
        status, body = _get(conn, "/work")
        assert status == 200, body
        assert json.loads(body) == {"task": 7, "executor_thread_is_other": True, "timer": "fired"}
        assert _get(conn, "/missing")[0] == 404
        conn.close()

        # 8 concurrent clients, 25 requests each
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(_client_session, [port] * 8, [25] * 8, timeout=TIMEOUT_S))
        assert results == [[b"hello"] * 25] * 8

        # graceful shutdown on SIGINT (Ctrl+C)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        stdout = out.decode()
        log += err.decode(errors="replace")
        assert proc.returncode == 0, log
        assert stdout.splitlines() == ["LIFESPAN startup", "LIFESPAN shutdown"], stdout
        assert "Application shutdown complete" in log, log
        assert "Traceback" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT_S)


def test_uvicorn_server_in_process(loop_impl):
    aiohttp = pytest.importorskip("aiohttp", reason="pip install -r requirements/test.txt")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    port = lsock.getsockname()[1]
    config = uvicorn.Config(
        app, http="httptools", lifespan="on", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)

    async def main() -> tuple[dict, list]:
        serving = asyncio.create_task(server.serve(sockets=[lsock]))
        try:
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{port}"
                async with session.get(base + "/loop") as r:
                    info = await r.json(content_type=None)

                async def one(i: int) -> tuple[int, bytes]:
                    data = b"%d" % i * (1 + i % 50)
                    async with session.post(base + "/echo", data=data) as r:
                        return r.status, await r.read()

                answers = await asyncio.gather(*(one(i) for i in range(200)))
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, TIMEOUT_S)
        return info, answers

    with asyncio.Runner(loop_factory=loop_impl.new_loop) as runner:
        info, answers = runner.run(asyncio.wait_for(main(), TIMEOUT_S))
        loop_cls = type(runner.get_loop())
    lsock.close()
    assert info["loop"] == f"{loop_cls.__module__}.{loop_cls.__qualname__}"
    assert answers == [(200, b"%d" % i * (1 + i % 50)) for i in range(200)]
