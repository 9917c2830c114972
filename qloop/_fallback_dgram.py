"""The asyncio loop's datagram transport (UDP and Unix datagram sockets), pure Python: the
twin of ``qloop/_core_dgram.pxi`` (same class, same methods, same behaviour).

The transport's bound ``_on_read``/``_on_write`` are its socket's fd handler in the
AioContext.  A readiness event receives up to 32 datagrams (each one ``datagram_received``
call) until the socket would block.  ``sendto()`` sends at once and buffers only when the
socket would block; the buffer is flushed when the socket is writable.
"""

from __future__ import annotations

import asyncio
import collections
import warnings
from typing import Any

from . import _eventloop, _transport_support
from ._fallback_loop import _NOT_ENTERED

__all__ = ["_DatagramTransport", "_make_datagram_transport"]

_READ_MAX = _transport_support.READ_MAX
_READ_ROUNDS = 32       # datagrams per readiness event, at most
_HEADER = _transport_support.DGRAM_HEADER_SIZE
_set_result_unless_cancelled = _eventloop._set_result_unless_cancelled
_callback_failed = _transport_support.callback_failed
_fatal_error_report = _transport_support.fatal_error
_protocol_failed = _transport_support.protocol_failed


class _DatagramTransport(asyncio.Transport, asyncio.DatagramTransport):
    """A datagram socket transport (asyncio's DatagramTransport API, with flow control);
    created by the event loop."""

    _loop: Any
    _sock: Any
    _fd: int
    _protocol: Any
    _datagram_received: Any
    _extra: dict[str, Any]
    _address: Any                   # the remote_addr given, or None
    _connected: bool                # the socket has a peer: send(), not sendto()
    _buffer: collections.deque[tuple[bytes, Any]]
    _buffer_size: int
    _closing: bool
    _paused: bool
    _reg_read: bool
    _reg_write: bool
    _protocol_paused: bool
    _protocol_connected: bool
    _conn_lost: int
    _high: int
    _low: int
    _recvfrom: Any
    _sendto: Any
    _send: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("transports are created by the event loop")

    # ---- registration with the context

    def _register(self, on_read: bool, on_write: bool) -> None:
        if on_read == self._reg_read and on_write == self._reg_write:
            return
        loop = self._loop
        if loop is not None and not loop._ctx._closed:
            loop._ctx._set_handler(self._fd, self._on_read if on_read else None,
                                   self._on_write if on_write else None, None, None)
        self._reg_read = on_read
        self._reg_write = on_write

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._register(True, self._reg_write)

    # ---- the read path

    def _on_read(self) -> None:
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
        if self._conn_lost:
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
        self._buffer_size += len(data) + _HEADER
        self._maybe_pause_protocol()

    def _on_write(self) -> None:
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
                    self._buffer_size -= len(data) + _HEADER
                    self._error_received(exc)
                    return
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal write error on datagram transport")
                    return
                buf.popleft()
                self._buffer_size -= len(data) + _HEADER
            self._maybe_resume_protocol()  # may send more
            if not self._buffer:
                self._register(self._reg_read, False)
                if self._closing:
                    self._call_connection_lost(None)
        finally:
            loop._leave(prev)

    def _maybe_pause_protocol(self) -> None:
        if self._buffer_size <= self._high or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _protocol_failed(self, self._loop, self._protocol, exc, "pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffer_size <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _protocol_failed(self, self._loop, self._protocol, exc, "resume_writing")

    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None:
        """Call ``pause_writing()`` above ``high`` buffered bytes, ``resume_writing()`` at or
        below ``low`` (defaults: 64 KiB, high / 4)."""
        if high is None:
            high = _transport_support.HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    # ---- reading control

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """Stop calling the protocol with datagrams until ``resume_reading()``."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._register(False, self._reg_write)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._register(True, self._reg_write)

    # ---- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the buffered datagrams are sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._register(False, self._reg_write)
        if not self._buffer:
            self._conn_lost += 1
            self._register(False, False)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close now, dropping buffered datagrams; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._buffer.clear()
        self._buffer_size = 0
        self._register(False, False)
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        _fatal_error_report(self, self._loop, self._protocol, exc, message)
        self._force_close(exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        # from here on the fd may be closed and reused: writes must not reach it
        if not self._conn_lost:
            self._conn_lost = 1
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._register(False, False)
            sock = self._sock
            self._sock = None
            if sock is not None:
                sock.close()
            self._protocol = self._datagram_received = None
            self._recvfrom = self._sendto = self._send = None
            self._loop = None

    # ---- the rest of the Transport API

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._datagram_received = protocol.datagram_received
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    def __repr__(self) -> str:
        return _transport_support.transport_repr(
            type(self).__name__, self._fd, self._sock is None, self._closing,
            self._reg_read, self._reg_write, self._buffer_size)

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self,
                          stacklevel=1)
            sock.close()
            self._sock = None


def _make_datagram_transport(loop: Any, sock: Any, protocol: Any, address: Any = None,
                             waiter: Any = None,
                             extra: dict[str, Any] | None = None) -> _DatagramTransport:
    """A datagram transport on ``sock`` (non-blocking) for ``protocol``, sending to
    ``address`` by default; schedules ``connection_made``, then reading, then ``waiter``'s
    result (asyncio's order)."""
    t = object.__new__(_DatagramTransport)
    t._loop = loop
    t._sock = sock
    t._fd = sock.fileno()
    t._extra = _transport_support.socket_extra(sock, extra)
    t._address = address
    t._connected = bool(t._extra["peername"])
    t._buffer = collections.deque()
    t._buffer_size = 0
    t._closing = t._paused = False
    t._reg_read = t._reg_write = False
    t._protocol_paused = t._protocol_connected = False
    t._conn_lost = 0
    t._high = _transport_support.HIGH_WATER
    t._low = _transport_support.HIGH_WATER // 4
    t._recvfrom = sock.recvfrom
    t._sendto = sock.sendto
    t._send = sock.send
    t.set_protocol(protocol)
    loop._transports[t._fd] = t
    loop.call_soon(protocol.connection_made, t)
    loop.call_soon(t._start_reading)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
