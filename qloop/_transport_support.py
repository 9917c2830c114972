"""Cold-path pieces shared by both implementations' transports (``qloop/_core_transports.pxi``
and ``qloop/_fallback_transports.py``): the extra-info dict, TCP_NODELAY, repr, the
exception-handler reports.  Nothing here runs per read or per write."""

from __future__ import annotations

import asyncio
import asyncio.log
import socket
from asyncio import trsock
from typing import Any, Dict, Optional

__all__ = ["stream_extra", "set_nodelay", "transport_repr", "fatal_error", "protocol_failed",
           "shadow_class"]

# asyncio's figures: bytes per read, the write-buffer limits, when writes after a lost
# connection start being logged
READ_MAX = 256 * 1024
HIGH_WATER = 64 * 1024
CONNLOST_LOG_THRESHOLD = 5


def stream_extra(sock: socket.socket, extra: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """A stream transport's ``get_extra_info`` dict: ``extra`` plus socket, sockname and
    peername (None when the kernel cannot tell)."""
    info: Dict[str, Any] = dict(extra) if extra else {}
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


def set_nodelay(sock: socket.socket) -> None:
    """TCP_NODELAY on TCP sockets, as asyncio sets it."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            and sock.proto == socket.IPPROTO_TCP):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def transport_repr(name: str, fd: int, closed: bool, closing: bool, reading: Optional[bool],
                   writing: Optional[bool], bufsize: int) -> str:
    """asyncio's repr of a socket transport: ``<name fd=N read=polling write=<idle, ...>>``."""
    info = [name]
    if closed:
        info.append("closed")
    elif closing:
        info.append("closing")
    info.append(f"fd={fd}")
    if reading is not None and not closed:
        info.append("read=polling" if reading else "read=idle")
    if writing is not None and not closed:
        info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={bufsize}>")
    return "<{}>".format(" ".join(info))


def fatal_error(transport: Any, loop: Any, protocol: Any, exc: BaseException,
                message: str) -> None:
    """Report what broke a transport: OSErrors only in debug mode (a peer going away is not
    the program's fault), anything else through the exception handler."""
    if isinstance(exc, OSError):
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
    """A protocol callback raised (datagram_received, error_received): reported, the
    transport goes on, as asyncio's handle running it would have it."""
    if loop is not None:
        loop.call_exception_handler({
            "message": f"Exception in callback {type(protocol).__name__}.{what}()",
            "exception": exc,
            "transport": transport,
            "protocol": protocol,
        })


def lost_write_warning() -> None:
    asyncio.log.logger.warning("socket.send() raised exception.")


def shadow_class(module: str, name: str, *bases: type) -> type:
    """What a compiled transport reports as its ``__class__``: a subclass of asyncio's
    ``Transport`` with the same name, so that ``isinstance(t, asyncio.Transport)`` holds (a C
    class cannot inherit from asyncio's).  ``type(t)`` is still the C class."""
    return type(name, bases or (asyncio.Transport,), {"__slots__": (), "__module__": module,
                                                      "__qualname__": name})
