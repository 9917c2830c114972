"""The asyncio event loop: subprocess_exec / subprocess_shell, the subprocess transport and
asyncio.create_subprocess_* on qloop's two implementations and asyncio's loop (the
reference); on qloop's, children are reaped by the loop's own pidfd child watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import warnings
from types import ModuleType
from typing import Any

import pytest

from _aio_support import RecordingProtocol, collect, run

PY = sys.executable
ECHO = "import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data.upper())"


class Recording(RecordingProtocol, asyncio.SubprocessProtocol):
    """Records the calls it gets, in order; ``done`` resolves on connection_lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.data: dict = {1: bytearray(), 2: bytearray()}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.data[fd] += data

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self) -> None:
        self.events.append(("exited", self.transport.get_returncode()))


def test_exec_communicate(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> Any:
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", ECHO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        out, err = await proc.communicate(b"hello " * 10000)
        return out, err, proc.returncode, await proc.wait()

    out, err, rc, rc2 = run(loop, main())
    assert out == b"HELLO " * 10000 and err == b"" and rc == rc2 == 0


def test_shell_and_exit_status(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> Any:
        proc = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2; exit 7", stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, _ = await proc.communicate()
        return out, proc.returncode

    out, rc = run(loop, main())
    assert sorted(out.split()) == [b"err", b"out"] and rc == 7


def test_devnull_and_fds(loop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    target = tmp_path / "out.txt"

    async def main(fd: int) -> Any:
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; print(len(sys.stdin.read())); print('x', file=sys.stderr)",
            stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.DEVNULL)
        assert proc.stdin is None and proc.stdout is None and proc.stderr is None
        return await proc.wait()

    with open(target, "wb") as f:
        assert run(loop, main(f.fileno())) == 0
    assert target.read_bytes().strip() == b"0"


def test_protocol_event_order(loop: asyncio.AbstractEventLoop) -> None:
    # asyncio's order: pipe data, then every pipe_connection_lost and process_exited (in any
    # order), connection_lost last; wait() returns once connection_lost ran (before Python
    # 3.13; from 3.13 once the process exited)
    async def main() -> Any:
        transport, proto = await loop.subprocess_exec(
            lambda: Recording(loop), PY, "-c",
            "import sys; sys.stdout.write('o'); sys.stderr.write('e'); sys.exit(3)",
            stdin=subprocess.PIPE)
        assert proto.events == ["made"]
        assert transport.get_pid() > 0
        for fd in (0, 1, 2):
            assert transport.get_pipe_transport(fd) is not None
        assert transport.get_pipe_transport(3) is None
        transport.get_pipe_transport(0).close()
        rc = await transport._wait()
        if sys.version_info < (3, 13):
            assert proto.done.done()  # wait() is answered after connection_lost
        # (from Python 3.13, at the exit: connection_lost may follow)
        await proto.done
        transport.close()
        return rc, proto

    rc, proto = run(loop, main())
    assert rc == 3
    assert proto.data == {1: bytearray(b"o"), 2: bytearray(b"e")}
    events = proto.events
    assert events[0] == "made" and events[-1] == ("lost", None)
    middle = events[1:-1]
    assert sorted(middle, key=str) == sorted(
        [("pipe_lost", 0, None), ("pipe_lost", 1, None), ("pipe_lost", 2, None),
         ("exited", 3)], key=str)


def test_signals_to_the_child(loop: asyncio.AbstractEventLoop) -> None:
    async def one(action: str, expected: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys, time; print('ready', flush=True); time.sleep(60)",
            stdout=subprocess.PIPE)
        assert await proc.stdout.readline() == b"ready\n"  # type: ignore[union-attr]
        if action == "send_signal":
            proc.send_signal(signal.SIGUSR1)
        else:
            getattr(proc, action)()
        assert await proc.wait() == expected
        if sys.version_info < (3, 13):
            with pytest.raises(ProcessLookupError):
                proc.kill()  # the transport is gone with the process
        else:
            # wait() is answered at the exit, maybe before the transport is gone: kill()
            # does nothing or raises ProcessLookupError
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def main() -> None:
        await one("terminate", -signal.SIGTERM)
        await one("kill", -signal.SIGKILL)
        await one("send_signal", -signal.SIGUSR1)

    run(loop, main())


def test_close_kills_a_running_child(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> Any:
        transport, proto = await loop.subprocess_exec(
            lambda: Recording(loop), PY, "-c", "import time; time.sleep(60)")
        assert transport.get_returncode() is None
        transport.close()
        await proto.done
        return transport.get_returncode()

    assert run(loop, main()) == -signal.SIGKILL


def test_bad_arguments(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        proto = asyncio.SubprocessProtocol
        for kwargs, message in (({"universal_newlines": True}, "universal_newlines"),
                                ({"bufsize": 4096}, "bufsize must be 0"),
                                ({"text": True}, "text must be False"),
                                ({"encoding": "utf-8"}, "encoding must be None"),
                                ({"errors": "strict"}, "errors must be None")):
            with pytest.raises(ValueError, match=message):
                await loop.subprocess_exec(proto, PY, "-c", "pass", **kwargs)
            with pytest.raises(ValueError, match=message):
                await loop.subprocess_shell(proto, "true", **kwargs)
        with pytest.raises(ValueError, match="shell must be False"):
            await loop.subprocess_exec(proto, PY, shell=True)
        with pytest.raises(ValueError, match="shell must be True"):
            await loop.subprocess_shell(proto, "true", shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(proto, ["true"])
        with pytest.raises(FileNotFoundError):
            await loop.subprocess_exec(proto, "/nonexistent/program")

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        run(loop, main())
        collect()


def test_many_children_at_once(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> list[int]:
        procs = [await asyncio.create_subprocess_exec(PY, "-c", f"import sys; sys.exit({i})")
                 for i in range(12)]
        return list(await asyncio.gather(*(p.wait() for p in procs)))

    assert run(loop, main()) == list(range(12))


def test_reaped_by_the_loops_child_watch(qloop_loop: asyncio.AbstractEventLoop) -> None:
    policy = asyncio.get_event_loop_policy()
    watcher_before = getattr(policy, "_watcher", None)

    async def main() -> tuple[int, int]:
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        return proc.pid, await proc.wait()

    pid, rc = run(qloop_loop, main())
    assert rc == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped, by the loop
    assert getattr(policy, "_watcher", None) is watcher_before  # no asyncio child watcher


def test_status_when_popen_reaped_first(qloop_loop: asyncio.AbstractEventLoop) -> None:
    # Popen.wait() reaps before the loop's watch: the transport still gets the real status
    async def main() -> Any:
        transport, proto = await qloop_loop.subprocess_exec(
            lambda: Recording(qloop_loop), PY, "-c", "import sys; sys.exit(5)",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        popen = transport.get_extra_info("subprocess")
        popen.wait()
        await proto.done
        transport.close()
        return transport.get_returncode()

    logging.getLogger("qloop").disabled = True  # "reaped elsewhere" is expected here
    try:
        assert run(qloop_loop, main()) == 5
    finally:
        logging.getLogger("qloop").disabled = False


def test_close_loop_with_a_running_child(qloop_loop_factory: Any) -> None:
    loop = qloop_loop_factory()
    fds_before = set(os.listdir("/proc/self/fd"))

    async def start() -> Any:
        return await loop.subprocess_exec(
            asyncio.SubprocessProtocol, PY, "-c", "import time; time.sleep(60)",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    transport, _ = run(loop, start())
    popen = transport.get_extra_info("subprocess")
    loop.close()  # the pidfd watch goes with the loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        transport.close()  # kills the child
    assert popen.wait(10) == -signal.SIGKILL
    del transport
    collect()
    assert set(os.listdir("/proc/self/fd")) <= fds_before  # no pidfd or pipe left


def test_subprocess_inside_main_loop(main_loop: ModuleType, guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())
    result: list[Any] = []

    async def job() -> None:
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", ECHO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        result.append(await proc.communicate(b"abc"))
        result.append(proc.returncode)

    task = loop.create_task(job())
    task.add_done_callback(
        lambda _: mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT))
    try:
        assert mod.main_loop() == 0
    finally:
        loop.close()
    task.result()
    assert result == [(b"ABC", None), 0]


def test_debug_mode_logs(loop: asyncio.AbstractEventLoop, caplog: Any) -> None:
    loop.set_debug(True)

    async def main() -> int:
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass", stdout=subprocess.PIPE)
        await proc.communicate()
        return proc.returncode  # type: ignore[return-value]

    with caplog.at_level("DEBUG", logger="asyncio"):
        assert run(loop, main()) == 0
    assert any("execute program" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not hasattr(asyncio, "AbstractChildWatcher"),
                    reason="asyncio's child-watcher API is gone from Python 3.14")
def test_policy_child_watcher_api(qloop_module: Any) -> None:
    # qloop's loops reap their own children; the policy still keeps a watcher for code that
    # calls asyncio's child-watcher API, as asyncio's Unix policy does
    policy = qloop_module.EventLoopPolicy()
    first = policy.get_child_watcher()
    assert isinstance(first, asyncio.AbstractChildWatcher)  # type: ignore[attr-defined]
    assert policy.get_child_watcher() is first
    closed = []
    first.close = lambda: closed.append(first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        second = asyncio.SafeChildWatcher()  # type: ignore[attr-defined]
    policy.set_child_watcher(second)
    assert closed == [first]
    assert policy.get_child_watcher() is second
    with pytest.raises(TypeError, match="AbstractChildWatcher"):
        policy.set_child_watcher(object())
    policy.set_child_watcher(None)
