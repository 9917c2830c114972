"""qloop's asyncio event loop: ``subprocess_exec`` / ``subprocess_shell``, shared by both
implementations.

The transport is asyncio's own ``base_subprocess.BaseSubprocessTransport`` (the protocol
plumbing, ``get_pipe_transport``, ``send_signal``/``terminate``/``kill``, ``_wait``, and the
order in which ``pipe_connection_lost``, ``process_exited`` and ``connection_lost`` reach the
protocol, as each Python version defines it), started with ``subprocess.Popen``.  What qloop
provides: the pipes are qloop's pipe transports (``connect_read_pipe`` /
``connect_write_pipe``), and the child is reaped by qloop's pidfd child watch on the loop's
own AioContext (``qloop/_main/childwatch.py``), never by an asyncio child watcher; its exit status
reaches the transport through the loop's ready queue.
"""

from __future__ import annotations

import asyncio.log
import contextvars
import subprocess
from asyncio import base_subprocess
from collections.abc import Callable
from typing import Any

from .._main.childwatch import UNKNOWN_RETURNCODE, ChildWatch, watch_child
from .base import MixinBase

__all__ = ["SubprocessMixin"]


def _check_popen_args(universal_newlines: Any, bufsize: Any, text: Any, encoding: Any,
                      errors: Any) -> None:
    # asyncio speaks bytes through its pipe transports, unbuffered
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


def _describe_stdio(prefix: str, stdin: Any, stdout: Any, stderr: Any) -> str:
    parts = [prefix]
    if stdin is not None:
        parts.append(f"stdin={_stdio_name(stdin)}")
    if stdout is not None and stderr == subprocess.STDOUT:
        parts.append(f"stdout=stderr={_stdio_name(stdout)}")
    else:
        if stdout is not None:
            parts.append(f"stdout={_stdio_name(stdout)}")
        if stderr is not None:
            parts.append(f"stderr={_stdio_name(stderr)}")
    return " ".join(parts)


def _stdio_name(fd: Any) -> str:
    if fd == subprocess.PIPE:
        return "<pipe>"
    if fd == subprocess.STDOUT:
        return "<stdout>"
    return repr(fd)


class _SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's subprocess transport, the child started with ``subprocess.Popen``."""

    def _start(self, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
               bufsize: int, **kwargs: Any) -> None:
        self._proc = subprocess.Popen(args, shell=shell, stdin=stdin, stdout=stdout,
                                      stderr=stderr, universal_newlines=False,
                                      bufsize=bufsize, **kwargs)

    def _child_reaped(self, returncode: int) -> None:
        """The child watch's report (from the ready queue)."""
        try:
            proc = self._proc
            if (returncode == UNKNOWN_RETURNCODE and proc is not None
                    and proc.returncode is not None):
                # Popen reaped it first (poll()/wait() on it): its status is the real one
                returncode = proc.returncode
            if self._returncode is None:
                self._process_exited(returncode)
        finally:
            loop: Any = self._loop
            if loop._vt_enabled:
                # the status is queued for the protocol and the waiters: a virtual-time loop
                # may move its clock again (see _make_subprocess_transport)
                loop._real_work_end()


class SubprocessMixin(MixinBase):
    """Subprocesses of qloop's EventLoop."""

    _child_watches: dict[int, ChildWatch] | None = None

    async def subprocess_exec(self, protocol_factory: Callable[[], Any], program: Any,
                              *args: Any, stdin: Any = subprocess.PIPE,
                              stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE,
                              universal_newlines: bool = False, shell: bool = False,
                              bufsize: int = 0, encoding: Any = None, errors: Any = None,
                              text: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        """Run ``program`` with ``args`` (no shell); returns ``(transport, protocol)`` once
        the child runs and its pipes are connected."""
        _check_popen_args(universal_newlines, bufsize, text, encoding, errors)
        if shell:
            raise ValueError("shell must be False")
        # the arguments are not logged: they may hold secrets, or be huge
        return await self._start_subprocess(
            protocol_factory, f"execute program {program!r}", (program, *args), False,
            stdin, stdout, stderr, bufsize, kwargs)

    async def subprocess_shell(self, protocol_factory: Callable[[], Any], cmd: Any, *,
                               stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE,
                               stderr: Any = subprocess.PIPE,
                               universal_newlines: bool = False, shell: bool = True,
                               bufsize: int = 0, encoding: Any = None, errors: Any = None,
                               text: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        """Run ``cmd`` (str or bytes) with the shell; returns ``(transport, protocol)`` once
        the child runs and its pipes are connected."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")  # noqa: TRY004 - asyncio's error
        _check_popen_args(universal_newlines, bufsize, text, encoding, errors)
        if not shell:
            raise ValueError("shell must be True")
        return await self._start_subprocess(
            protocol_factory, f"run shell command {cmd!r}", cmd, True,
            stdin, stdout, stderr, bufsize, kwargs)

    async def _start_subprocess(self, protocol_factory: Callable[[], Any], what: str,
                                args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
                                bufsize: int, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """subprocess_exec/_shell once their arguments are checked: ``what`` names the child
        in the debug-mode log lines."""
        protocol = protocol_factory()
        debug = self.get_debug()
        if debug:
            asyncio.log.logger.debug(_describe_stdio(what, stdin, stdout, stderr))
        transport = await self._make_subprocess_transport(
            protocol, args, shell, stdin, stdout, stderr, bufsize, **kwargs)
        if debug:
            asyncio.log.logger.info("%s: %r", what, transport)
        return transport, protocol

    async def _make_subprocess_transport(self, protocol: Any, args: Any, shell: bool,
                                         stdin: Any, stdout: Any, stderr: Any, bufsize: int,
                                         extra: Any = None, **kwargs: Any) -> Any:
        self._check_closed_py()
        waiter = self.create_future()
        transport = _SubprocessTransport(self, protocol, args, shell,  # type: ignore[arg-type]
                                         stdin, stdout, stderr, bufsize, waiter=waiter,
                                         extra=extra, **kwargs)
        try:
            self._watch_child(transport)
        except BaseException:
            transport.close()  # kills the child: nothing would ever reap it
            raise
        if self._vt_enabled:
            # the child runs in real time: a virtual-time loop must not jump past it while
            # it runs; _child_reaped ends this once the exit status reached the loop
            self._real_work_begin()
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _watch_child(self, transport: _SubprocessTransport) -> None:
        """Reap the transport's child from the loop's AioContext; its status goes to the
        transport from the ready queue."""
        watches = self._child_watches
        if watches is None:
            watches = self._child_watches = {}
        pid = transport.get_pid()
        # the exit status reaches the protocol in the context the transport was set up in
        # (as the pipes' data does)
        context = contextvars.copy_context()

        def reaped(pid: int, returncode: int) -> None:
            self.call_soon_threadsafe(
                transport._child_reaped, returncode, context=context)

        def forget(watch: ChildWatch) -> None:
            if watches.get(watch.pid) is watch:
                del watches[watch.pid]

        watches[pid] = watch_child(self.aio_context, pid, reaped,  # type: ignore
                                   on_done=forget)

    def _close_child_watches(self) -> None:
        """close(): stop watching (the children are left to ``subprocess``'s own reaping)."""
        watches = self._child_watches
        if not watches:
            return
        for watch in list(watches.values()):
            watch.cancel()
        watches.clear()
