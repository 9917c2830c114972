"""The asyncio loop's stream transports (TCP and Unix sockets), pure Python: the twin of
``qloop/_cy/transports.pxi`` (same class, same methods, same behaviour).

The transport's bound ``_on_read``/``_on_write`` are its socket's fd handler in the AioContext.
``write()`` tries ``send`` at once and buffers only the rest; the buffer is flushed with
``sendmsg`` (several buffers per call) when the socket is writable.
"""

from __future__ import annotations

import asyncio
import asyncio.log
import contextvars
import socket
import warnings
from asyncio import constants, protocols
from typing import Any

from .._aio import helpers as _helpers, transport_support as _transport_support
from .loop import _NOT_ENTERED

__all__ = ["_ReadableTransport", "_StreamTransport", "_TransportBase", "_make_stream_transport"]

_READ_MAX = _transport_support.READ_MAX
_WRITE_IOV_MAX = 64
_READ_ROUNDS = 16  # reads per readiness event while they fill the buffer
_BufferedProtocol = protocols.BufferedProtocol
_set_result_unless_cancelled = _helpers._set_result_unless_cancelled
_fatal_error_report = _transport_support.fatal_error
_protocol_failed = _transport_support.protocol_failed
_copy_context = contextvars.copy_context


def _in_context(t: Any, handler: Any) -> None:
    """Run the fd handler ``handler`` of transport ``t`` in the transport's context (the one
    current when it was set up), as asyncio runs its transports' reader and writer handles.
    While it runs, ``t._context`` is None: a nested dispatch of ``t`` runs in it as it is."""
    ctx = t._context
    t._context = None
    try:
        ctx.run(handler)
    finally:
        t._context = ctx


class _TransportBase(asyncio.BaseTransport):
    """What qloop's transports share: the loop, the socket or pipe (``_sock``), registration with
    the context, flow control, closing."""

    __slots__ = (
        "__weakref__",
        "_closing",
        "_conn_lost",
        "_context",
        "_fd",
        "_high",
        "_loop",
        "_low",
        "_protocol",
        "_protocol_connected",
        "_protocol_paused",
        "_reg_read",
        "_reg_write",
        "_server",
        "_sock",
        "_wsize",
    )
    _loop: Any
    _sock: Any
    _fd: int
    _protocol: Any
    _server: Any
    _extra: dict[str, Any]
    _closing: bool
    _reg_read: bool
    _reg_write: bool
    _protocol_paused: bool
    _protocol_connected: bool
    _conn_lost: int
    _context: contextvars.Context | None
    _wsize: int
    _high: int
    _low: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("transports are created by the event loop")

    def _setup(self, loop: Any, sock: Any, protocol: Any, extra: dict[str, Any]) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._extra = extra
        self._server = None
        self._closing = False
        self._reg_read = self._reg_write = False
        self._protocol_paused = self._protocol_connected = False
        self._conn_lost = 0
        self._context = _copy_context()  # protocol calls from the fd handlers run in it
        self._wsize = 0
        self._high = _transport_support.HIGH_WATER
        self._low = _transport_support.HIGH_WATER // 4
        self.set_protocol(protocol)
        loop._transports[self._fd] = self

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

    def _on_read(self) -> None:
        raise NotImplementedError

    def _on_write(self) -> None:
        raise NotImplementedError

    def _clear_buffer(self) -> None:
        self._wsize = 0

    def _forget_protocol(self) -> None:
        pass

    # ---- flow control

    def _maybe_pause_protocol(self) -> None:
        if self._wsize <= self._high or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _protocol_failed(self, self._loop, self._protocol, exc, "pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._wsize <= self._low:
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
        return self._wsize

    # ---- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the buffered data is sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._register(False, self._reg_write)
        if not self._wsize:
            self._conn_lost += 1
            self._register(False, False)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close now, dropping buffered data; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._wsize:
            self._clear_buffer()
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
            self._protocol = None
            self._forget_protocol()
            self._loop = None
            server = self._server
            self._server = None
            if server is not None:
                server._detach(self)

    # ---- the rest of the Transport API

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    def __repr__(self) -> str:
        return _transport_support.transport_repr(
            type(self).__name__, self._fd, self._sock is None, self._closing,
            self._reg_read, self._reg_write, self._wsize)

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self,
                          stacklevel=1)
            sock.close()
            self._sock = None


class _ReadableTransport(_TransportBase):
    """A transport that reads: reading starts once ``connection_made`` was called, and
    ``pause_reading``/``resume_reading`` (sockets, read pipes)."""

    __slots__ = ("_paused",)
    _paused: bool

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._register(True, self._reg_write)

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """Stop calling the protocol with data until ``resume_reading()``."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._register(False, self._reg_write)
        if self._loop._debug:
            asyncio.log.logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._register(True, self._reg_write)
        if self._loop._debug:
            asyncio.log.logger.debug("%r resumes reading", self)


class _StreamTransport(_ReadableTransport, asyncio.Transport):
    """A socket stream transport (asyncio's Transport API); created by the event loop."""

    __slots__ = (
        "_buffer_updated",
        "_data_received",
        "_empty_waiter",
        "_eof",
        "_get_buffer",
        "_recv",
        "_send",
        "_wbuf",
        "_wpos",
    )
    _data_received: Any
    _get_buffer: Any
    _buffer_updated: Any
    _eof: bool
    _paused: bool
    _wbuf: list[Any]
    _wpos: int
    _empty_waiter: Any
    _recv: Any
    _send: Any

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE  # loop.sendfile: os.sendfile

    def _make_empty_waiter(self) -> Any:
        """A future done once the write buffer is empty (sendfile waits for it)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._wsize:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            _TransportBase._call_connection_lost(self, exc)
        finally:
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    def _clear_buffer(self) -> None:
        del self._wbuf[:]
        self._wsize = 0
        self._wpos = 0

    def _forget_protocol(self) -> None:
        self._data_received = self._get_buffer = self._buffer_updated = None
        self._recv = self._send = None

    # ---- the read path

    def _on_read(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_read)
            return
        if self._conn_lost:
            return
        if self._data_received is None:
            self._read_into_buffer()
            return
        loop = self._loop
        try:
            data = self._recv(_READ_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = exc
        prev = _NOT_ENTERED if loop._running else loop._enter()
        rounds = _READ_ROUNDS
        try:
            while True:
                if type(data) is not bytes:
                    self._fatal_error(data, "Fatal read error on socket transport")
                    return
                if not data:
                    self._read_eof()
                    return
                try:
                    self._data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
                    return
                # a full buffer: more is likely waiting; read on (as libuv does) unless the
                # protocol paused or closed the transport meanwhile
                rounds -= 1
                if len(data) < _READ_MAX or not rounds or self._conn_lost or not self._reg_read:
                    return
                try:
                    data = self._recv(_READ_MAX)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    data = exc
        finally:
            if prev is not _NOT_ENTERED:
                loop._leave(prev)

    def _read_into_buffer(self) -> None:
        loop = self._loop
        prev = loop._enter()
        try:
            try:
                buf = memoryview(self._get_buffer(-1)).cast("B")
                if buf.readonly:
                    raise BufferError("get_buffer() returned a read-only buffer")
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                return
            if not len(buf):
                buf.release()
                self._fatal_error(RuntimeError("get_buffer() returned an empty buffer"),
                                  "Fatal error: protocol.get_buffer() call failed.")
                return
            try:
                n = self._sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal_error(exc, "Fatal read error on socket transport")
                return
            finally:
                buf.release()
            if not n:
                self._read_eof()
                return
            try:
                self._buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
        finally:
            loop._leave(prev)

    def _read_eof(self) -> None:
        if self._loop._debug:
            asyncio.log.logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            self._register(False, self._reg_write)  # half-closed: keep writing
        else:
            self.close()

    # ---- the write path

    def write(self, data: Any) -> None:
        """Send ``data`` (bytes-like) now if the socket takes it; buffer the rest."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"{_transport_support.WRITE_TYPE_ERROR}, "
                                f"not {type(data).__name__!r}")
            data = memoryview(data).cast("B")  # BufferError unless C-contiguous
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                _transport_support.lost_write_warning()
            self._conn_lost += 1
            return
        n = 0
        if not self._wsize:
            try:
                n = self._send(data, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if n == len(data):
                return
            self._register(self._reg_read, True)
        if n == 0 and type(data) is bytes:
            self._wbuf.append(data)
        else:
            data = bytes(data[n:])
            self._wbuf.append(data)
        self._wsize += len(data)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write every item of ``list_of_data`` (bytes-like objects), in order."""
        self.write(b"".join(list_of_data))

    def _on_write(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_write)
            return
        if self._conn_lost:
            return
        wbuf = self._wbuf
        loop = self._loop
        if wbuf:
            views: list[Any] = wbuf[:_WRITE_IOV_MAX]
            if self._wpos:
                views[0] = memoryview(views[0])[self._wpos:]
            try:
                sent = self._sock.sendmsg(views, [], socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                sent = exc
        else:
            sent = 0
        prev = loop._enter()
        try:
            if type(sent) is not int:
                self._register(self._reg_read, False)
                del wbuf[:]
                self._wsize = 0
                self._wpos = 0
                self._fatal_error(sent, "Fatal write error on socket transport")
                if self._empty_waiter is not None:
                    self._empty_waiter.set_exception(sent)
                return
            self._consume(sent)
            self._maybe_resume_protocol()  # may write more
            if not self._wsize:
                self._register(self._reg_read, False)
                if self._empty_waiter is not None:
                    self._empty_waiter.set_result(None)
                if self._closing:
                    self._call_connection_lost(None)
                elif self._eof:
                    self._sock.shutdown(socket.SHUT_WR)
        finally:
            loop._leave(prev)

    def _consume(self, n: int) -> None:
        wbuf = self._wbuf
        self._wsize -= n
        k = 0
        nbuf = len(wbuf)
        while n > 0 and k < nbuf:
            left = len(wbuf[k]) - self._wpos
            if n >= left:
                n -= left
                self._wpos = 0
                k += 1
            else:
                self._wpos += n
                n = 0
        if k:
            del wbuf[:k]

    def write_eof(self) -> None:
        """Close the write side once the buffer is flushed (shutdown(SHUT_WR))."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._wsize:
            self._sock.shutdown(socket.SHUT_WR)

    def can_write_eof(self) -> bool:
        return True

    def set_protocol(self, protocol: Any) -> None:
        if isinstance(protocol, _BufferedProtocol):
            self._data_received = None
            self._get_buffer = protocol.get_buffer
            self._buffer_updated = protocol.buffer_updated
        else:
            self._data_received = protocol.data_received
            self._get_buffer = self._buffer_updated = None
        _TransportBase.set_protocol(self, protocol)


def _make_stream_transport(loop: Any, sock: socket.socket, protocol: Any, waiter: Any = None,
                           extra: dict[str, Any] | None = None,
                           server: Any = None) -> _StreamTransport:
    """A stream transport on ``sock`` (non-blocking, connected) for ``protocol``; schedules
    ``connection_made``, then reading, then ``waiter``'s result (asyncio's order)."""
    t = object.__new__(_StreamTransport)
    t._recv = sock.recv
    t._send = sock.send
    t._wbuf = []
    t._wpos = 0
    t._eof = t._paused = False
    t._empty_waiter = None
    t._setup(loop, sock, protocol, _transport_support.socket_extra(sock, extra))
    t._server = server
    if server is not None:
        server._attach(t)
    _transport_support.set_nodelay(sock)
    loop.call_soon(protocol.connection_made, t)
    loop.call_soon(t._start_reading)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
