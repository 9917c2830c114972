"""Cold-path pieces shared by both implementations' pipe and datagram transports
(``qloop/_core_pipes.pxi`` / ``qloop/_fallback_pipes.py``, ``qloop/_core_dgram.pxi`` /
``qloop/_fallback_dgram.py``): fd checks, extra info, repr, the exception-handler reports.
Nothing here runs per read or per write."""

from __future__ import annotations

import asyncio
import asyncio.log
import os
import socket
import stat
from asyncio import trsock
from typing import Any

__all__ = [
    "CONNLOST_LOG_THRESHOLD",
    "DGRAM_HEADER_SIZE",
    "callback_failed",
    "dgram_extra",
    "pipe_extra",
    "pipe_fd",
    "pipe_repr",
]

# asyncio's figures: what a buffered datagram counts for besides its payload; when writes
# after a lost connection start being logged
DGRAM_HEADER_SIZE = 8
CONNLOST_LOG_THRESHOLD = 5


def pipe_fd(pipe: Any, writing: bool) -> tuple[int, bool]:
    """The fd of ``pipe`` after asyncio's checks (a FIFO, a socket or a character device;
    ValueError otherwise), made non-blocking; and whether the read end's closing can be
    watched (a write pipe that is a FIFO or a socket becomes readable when its peer goes)."""
    fd = pipe.fileno()
    mode = os.fstat(fd).st_mode
    is_fifo = stat.S_ISFIFO(mode)
    is_sock = stat.S_ISSOCK(mode)
    if not (is_fifo or is_sock or stat.S_ISCHR(mode)):
        if writing:
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        raise ValueError("Pipe transport is for pipes/sockets only.")
    os.set_blocking(fd, False)
    return fd, is_fifo or is_sock


def pipe_extra(pipe: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = dict(extra) if extra else {}
    info["pipe"] = pipe
    return info


def pipe_repr(name: str, fd: int, closed: bool, closing: bool, loop_open: bool,
              polling: bool, bufsize: int | None) -> str:
    """asyncio's repr of a pipe transport: ``<name fd=N polling|idle|open|closed ...>``."""
    info = [name]
    if closed:
        info.append("closed")
    elif closing:
        info.append("closing")
    info.append(f"fd={fd}")
    if closed:
        info.append("closed")
    elif loop_open:
        info.append("polling" if polling else "idle")
        if bufsize is not None:
            info.append(f"bufsize={bufsize}")
    else:
        info.append("open")
    return "<{}>".format(" ".join(info))


def callback_failed(transport: Any, loop: Any, protocol: Any, exc: BaseException,
                    what: str) -> None:
    """A protocol callback raised where asyncio lets the exception reach the loop (its
    transports call ``data_received`` of pipes and ``datagram_received`` from a plain
    handle): reported through the exception handler, the transport goes on."""
    if loop is not None:
        loop.call_exception_handler({
            "message": f"Exception in protocol.{what}() called by {transport!r}",
            "exception": exc,
            "transport": transport,
            "protocol": protocol,
        })


def lost_pipe_write_warning() -> None:
    asyncio.log.logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")


def lost_dgram_write_warning() -> None:
    asyncio.log.logger.warning("socket.send() raised exception.")


def debug_log(level: str, msg: str, *args: Any) -> None:
    getattr(asyncio.log.logger, level)(msg, *args)


def dgram_extra(sock: socket.socket, extra: dict[str, Any] | None) -> dict[str, Any]:
    """A datagram transport's ``get_extra_info`` dict: ``extra`` plus socket, sockname and
    peername (None when the socket is not connected)."""
    info: dict[str, Any] = dict(extra) if extra else {}
    info["socket"] = trsock.TransportSocket(sock)
    try:
        info["sockname"] = sock.getsockname()
    except OSError:
        info["sockname"] = None
    if "peername" not in info:
        try:
            info["peername"] = sock.getpeername()
        except OSError:
            info["peername"] = None
    return info
