"""Cold-path pieces shared by both implementations' transports (stream:
``qloop/_cy/transports.pxi`` / ``qloop/_py/transports.py``; pipes:
``qloop/_cy/pipes.pxi`` / ``qloop/_py/pipes.py``; datagrams: ``qloop/_cy/dgram.pxi``
/ ``qloop/_py/dgram.py``): fd checks, the extra-info dicts, TCP_NODELAY, repr, the
exception-handler reports and log lines.  Nothing here runs per read or per write."""

from __future__ import annotations

import asyncio
import asyncio.log
import os
import socket
import stat
import sys
from asyncio import trsock
from typing import Any

__all__ = [
    "callback_failed",
    "fatal_error",
    "pipe_extra",
    "pipe_fd",
    "pipe_repr",
    "protocol_failed",
    "set_nodelay",
    "shadow_class",
    "socket_extra",
    "transport_repr",
]

# asyncio's figures: bytes per read, the write-buffer limits, when writes after a lost
# connection start being logged, what a buffered datagram counts for besides its payload
READ_MAX = 256 * 1024
HIGH_WATER = 64 * 1024
CONNLOST_LOG_THRESHOLD = 5
# a stream transport's write() of something not bytes-like: asyncio's words, which changed in
# Python 3.13 (its datagram sendto() kept the older ones)
WRITE_TYPE_ERROR = ("data argument must be a bytes, bytearray, or memoryview object"
                    if sys.version_info >= (3, 13) else "data argument must be a bytes-like object")
DGRAM_HEADER_SIZE = 8


def socket_extra(sock: socket.socket, extra: dict[str, Any] | None) -> dict[str, Any]:
    """A socket transport's ``get_extra_info`` dict: ``extra`` plus socket, sockname and
    peername (None when the kernel cannot tell, e.g. an unconnected datagram socket)."""
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
    """A pipe transport's ``get_extra_info`` dict: ``extra`` plus the pipe (file object)."""
    info: dict[str, Any] = dict(extra) if extra else {}
    info["pipe"] = pipe
    return info


def set_nodelay(sock: socket.socket) -> None:
    """TCP_NODELAY on TCP sockets, as asyncio sets it."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            and sock.proto == socket.IPPROTO_TCP):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _repr_head(name: str, fd: int, closed: bool, closing: bool) -> list[str]:
    info = [name]
    if closed:
        info.append("closed")
    elif closing:
        info.append("closing")
    info.append(f"fd={fd}")
    return info


def transport_repr(name: str, fd: int, closed: bool, closing: bool, reading: bool | None,
                   writing: bool | None, bufsize: int) -> str:
    """asyncio's repr of a socket transport: ``<name fd=N read=polling write=<idle, ...>>``."""
    info = _repr_head(name, fd, closed, closing)
    if reading is not None and not closed:
        info.append("read=polling" if reading else "read=idle")
    if writing is not None and not closed:
        info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={bufsize}>")
    return "<{}>".format(" ".join(info))


def pipe_repr(name: str, fd: int, closed: bool, closing: bool, loop_open: bool,
              polling: bool, bufsize: int | None) -> str:
    """asyncio's repr of a pipe transport: ``<name fd=N polling|idle|open|closed ...>``."""
    info = _repr_head(name, fd, closed, closing)
    if closed:
        info.append("closed")
    elif loop_open:
        info.append("polling" if polling else "idle")
        if bufsize is not None:
            info.append(f"bufsize={bufsize}")
    else:
        info.append("open")
    return "<{}>".format(" ".join(info))


async def wait_connected(waiter: Any, transport: Any) -> None:
    """Await a new transport's ``waiter`` (resolved once the protocol saw connection_made);
    if that fails or is cancelled, the transport is closed and the error propagates."""
    try:
        await waiter
    except BaseException:
        transport.close()
        # the exception's traceback holds this frame and the waiter holds the exception:
        # no cycle keeping the transport alive
        waiter = transport = None
        raise


def fatal_error(transport: Any, loop: Any, protocol: Any, exc: BaseException,
                message: str, quiet_errno: int = 0) -> None:
    """Report what broke a transport: an OSError only in debug mode (a peer going away is not
    the program's fault; with ``quiet_errno``, only an OSError of that errno, as a pty's EIO
    for a read pipe), anything else through the exception handler."""
    if isinstance(exc, OSError) and (not quiet_errno or exc.errno == quiet_errno):
        if loop is not None and loop.get_debug():
            asyncio.log.logger.debug("%r: %s", transport, message, exc_info=True)
    elif loop is not None:
        loop.call_exception_handler({
            "message": message,
            "exception": exc,
            "transport": transport,
            "protocol": protocol,
        })


def protocol_failed(transport: Any, loop: Any, protocol: Any, exc: BaseException,
                    what: str) -> None:
    """pause_writing()/resume_writing() raised: reported, the transport goes on."""
    if loop is not None:
        loop.call_exception_handler({
            "message": f"protocol.{what}() failed",
            "exception": exc,
            "transport": transport,
            "protocol": protocol,
        })


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


def lost_write_warning() -> None:
    asyncio.log.logger.warning("socket.send() raised exception.")


def lost_pipe_write_warning() -> None:
    asyncio.log.logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")


def debug_log(level: str, msg: str, *args: Any) -> None:
    getattr(asyncio.log.logger, level)(msg, *args)


def shadow_class(module: str, name: str, *bases: type) -> type:
    """What a compiled transport reports as its ``__class__``: a subclass of asyncio's
    ``Transport`` with the same name, so that ``isinstance(t, asyncio.Transport)`` holds (a C
    class cannot inherit from asyncio's).  ``type(t)`` is still the C class."""
    return type(name, bases or (asyncio.Transport,), {"__slots__": (), "__module__": module,
                                                      "__qualname__": name})
