"""The asyncio loop's datagram transport (UDP and Unix datagram sockets), pure Python: the
twin of ``qloop/_cy/dgram.pxi`` (same class, same methods, same behaviour).

The transport's bound ``_on_read``/``_on_write`` are its socket's fd handler in the
AioContext.  A readiness event receives up to 32 datagrams (each one ``datagram_received``
call) until the socket would block.  ``sendto()`` sends at once and buffers only when the
socket would block; the buffer is flushed when the socket is writable.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from .._aio import helpers as _helpers, transport_support as _transport_support
from .loop import _NOT_ENTERED
from .transports import _in_context, _ReadableTransport, _TransportBase

__all__ = ["_DatagramTransport", "_make_datagram_transport"]

_READ_MAX = _transport_support.READ_MAX
_READ_ROUNDS = 32       # datagrams per readiness event, at most
_HEADER = _transport_support.DGRAM_HEADER_SIZE
_set_result_unless_cancelled = _helpers._set_result_unless_cancelled
_callback_failed = _transport_support.callback_failed


class _DatagramTransport(_ReadableTransport, asyncio.Transport, asyncio.DatagramTransport):
    """A datagram socket transport (asyncio's DatagramTransport API, with flow control);
    created by the event loop."""

    __slots__ = ("_address", "_buffer", "_connected", "_datagram_received", "_recvfrom",
                 "_send", "_sendto")
    _datagram_received: Any
    _address: Any                   # the remote_addr given, or None
    _connected: bool                # the socket has a peer: send(), not sendto()
    _buffer: collections.deque[tuple[bytes, Any]]  # _wsize counts 8 more per datagram
    _recvfrom: Any
    _sendto: Any
    _send: Any

    def _clear_buffer(self) -> None:
        self._buffer.clear()
        self._wsize = 0

    def _forget_protocol(self) -> None:
        self._datagram_received = None
        self._recvfrom = self._sendto = self._send = None

    def set_protocol(self, protocol: Any) -> None:
        self._datagram_received = protocol.datagram_received
        _TransportBase.set_protocol(self, protocol)

    # ---- the read path

    def _on_read(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_read)
            return
        if self._conn_lost:
            return
        try:
            data, addr = self._recvfrom(_READ_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data, addr = exc, None
        loop = self._loop
        prev = _NOT_ENTERED if loop._running else loop._enter()
        rounds = _READ_ROUNDS
        try:
            while True:
                if type(data) is not bytes:
                    self._error_received(data)
                    return
                try:
                    self._datagram_received(data, addr)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(self, loop, self._protocol, exc, "datagram_received")
                rounds -= 1
                if not rounds or self._conn_lost or not self._reg_read:
                    return
                try:
                    data, addr = self._recvfrom(_READ_MAX)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    data, addr = exc, None
        finally:
            if prev is not _NOT_ENTERED:
                loop._leave(prev)

    def _error_received(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            _callback_failed(self, self._loop, self._protocol, err, "error_received")

    # ---- the write path

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Send ``data`` (bytes-like) to ``addr`` (None: the connected peer) now, or buffer
        it while the socket would block.  An OSError goes to ``error_received()``."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data argument must be a bytes-like object, "
                                f"not {type(data).__name__!r}")
            data = memoryview(data).cast("B")  # BufferError unless C-contiguous
        address = self._address
        if address is not None:
            if addr is not None and addr is not address and addr != address:
                raise ValueError(f"Invalid address: must be None or {address}")
            addr = address
        # after close(): ignored on a connected socket, as asyncio does; an unconnected one
        # still sends until connection_lost() closes it (asyncio's then fails on it)
        if self._conn_lost and (address is not None or self._sock is None):
            if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                _transport_support.lost_write_warning()
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                if self._connected:
                    self._send(data)
                else:
                    self._sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._register(self._reg_read, True)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        data = bytes(data)  # what is buffered must not change
        self._buffer.append((data, addr))
        self._wsize += len(data) + _HEADER
        self._maybe_pause_protocol()

    def _on_write(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_write)
            return
        if self._conn_lost:
            return
        loop = self._loop
        prev = loop._enter()
        try:
            buf = self._buffer
            while buf:
                data, addr = buf[0]
                try:
                    if self._connected:
                        self._send(data)
                    else:
                        self._sendto(data, addr)
                except (BlockingIOError, InterruptedError):
                    return  # the rest when the socket is writable again
                except OSError as exc:
                    buf.popleft()
                    self._wsize -= len(data) + _HEADER
                    self._error_received(exc)
                    return
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal write error on datagram transport")
                    return
                buf.popleft()
                self._wsize -= len(data) + _HEADER
            self._maybe_resume_protocol()  # may send more
            if not self._buffer:
                self._register(self._reg_read, False)
                if self._closing:
                    self._call_connection_lost(None)
        finally:
            loop._leave(prev)


def _make_datagram_transport(loop: Any, sock: Any, protocol: Any, address: Any = None,
                             waiter: Any = None,
                             extra: dict[str, Any] | None = None) -> _DatagramTransport:
    """A datagram transport on ``sock`` (non-blocking) for ``protocol``, sending to
    ``address`` by default; schedules ``connection_made``, then reading, then ``waiter``'s
    result (asyncio's order)."""
    t = object.__new__(_DatagramTransport)
    t._recvfrom = sock.recvfrom
    t._sendto = sock.sendto
    t._send = sock.send
    t._buffer = collections.deque()
    t._paused = False
    t._setup(loop, sock, protocol, _transport_support.socket_extra(sock, extra))
    t._address = address
    t._connected = bool(t._extra["peername"])
    loop.call_soon(protocol.connection_made, t)
    loop.call_soon(t._start_reading)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
