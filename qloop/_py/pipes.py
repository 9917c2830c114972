"""The asyncio loop's pipe transports (``connect_read_pipe`` / ``connect_write_pipe``, and a
subprocess's stdin/stdout/stderr), pure Python: the twin of ``qloop/_cy/pipes.pxi`` (same
classes, same methods, same behaviour), on the transport bases of
``qloop/_py/transports.py``.

Each transport's bound ``_on_read``/``_on_write`` are its fd's handler in the AioContext.  The
read transport reads up to 256 KiB per readiness event; the write transport writes at once
and buffers only the rest, flushed when the fd is writable.  A write pipe that is a FIFO or a
socket is also watched for reading: it becomes readable when the reader goes away, which
closes the transport (``BrokenPipeError`` if data was still buffered), as in asyncio.  The
pipe's file object is the base's ``_sock`` (``_pipe`` here, as asyncio names it).
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

from .._aio import helpers as _helpers, transport_support as _transport_support
from .transports import _in_context, _ReadableTransport, _TransportBase

__all__ = ["_ReadPipeTransport", "_WritePipeTransport", "_make_read_pipe_transport",
           "_make_write_pipe_transport"]

_READ_MAX = _transport_support.READ_MAX
_os_read = os.read
_os_write = os.write
_set_result_unless_cancelled = _helpers._set_result_unless_cancelled
_callback_failed = _transport_support.callback_failed
_fatal_error_report = _transport_support.fatal_error


class _ReadPipeTransport(_ReadableTransport, asyncio.ReadTransport):
    """The read end of a pipe, FIFO, socket or character device (asyncio's ReadTransport
    API); created by the event loop."""

    _data_received: Any

    @property
    def _pipe(self) -> Any:
        return self._sock

    @_pipe.setter
    def _pipe(self, pipe: Any) -> None:
        self._sock = pipe

    def _forget_protocol(self) -> None:
        self._data_received = None

    def set_protocol(self, protocol: Any) -> None:
        self._data_received = protocol.data_received
        _TransportBase.set_protocol(self, protocol)

    # ---- the read path

    def _on_read(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_read)
            return
        data: Any
        try:
            data = _os_read(self._fd, _READ_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = exc
        loop = self._loop
        prev = loop._enter()
        try:
            if type(data) is not bytes:
                self._fatal_error(data, "Fatal read error on pipe transport")
            elif data:
                try:
                    self._data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(self, loop, self._protocol, exc, "data_received")
            else:
                self._read_eof()
        finally:
            loop._leave(prev)

    def _read_eof(self) -> None:
        loop = self._loop
        if loop._debug:
            _transport_support.debug_log("info", "%r was closed by peer", self)
        self._closing = True
        self._conn_lost += 1
        self._register(False, False)
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)

    # ---- closing: the base's (close() stops reading, connection_lost(None) follows)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        # EIO is how a pty's reader learns that the other side closed: not worth a report
        _fatal_error_report(self, self._loop, self._protocol, exc, message, errno.EIO)
        self._force_close(exc)

    def __repr__(self) -> str:
        loop = self._loop
        return _transport_support.pipe_repr(
            type(self).__name__, self._fd, self._sock is None, self._closing,
            loop is not None and not loop.is_closed(), self._reg_read, None)


class _WritePipeTransport(_TransportBase, asyncio.WriteTransport):
    """The write end of a pipe, FIFO, socket or character device (asyncio's WriteTransport
    API, with flow control); created by the event loop."""

    _buffer: bytearray              # what the pipe did not take yet (_wsize bytes)

    @property
    def _pipe(self) -> Any:
        return self._sock

    @_pipe.setter
    def _pipe(self, pipe: Any) -> None:
        self._sock = pipe

    def _clear_buffer(self) -> None:
        self._buffer.clear()
        self._wsize = 0

    def _start_watching(self) -> None:
        if not self._closing:
            self._register(True, self._reg_write)

    # ---- the peer went away

    def _on_read(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_read)
            return
        loop = self._loop
        prev = loop._enter()
        try:
            if loop._debug:
                _transport_support.debug_log("info", "%r was closed by peer", self)
            self._force_close(BrokenPipeError() if self._wsize else None)
        finally:
            loop._leave(prev)

    # ---- the write path

    def write(self, data: Any) -> None:
        """Write ``data`` (bytes-like) now if the pipe takes it; buffer the rest."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data argument must be a bytes-like object, "
                                f"not {type(data).__name__!r}")
            data = memoryview(data).cast("B")
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                _transport_support.lost_pipe_write_warning()
            self._conn_lost += 1
            return
        n = 0
        if not self._wsize:
            try:
                n = _os_write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            self._register(self._reg_read, True)
        self._buffer += data[n:] if n else data
        self._wsize += len(data) - n
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write every item of ``list_of_data`` (bytes-like objects), in order."""
        self.write(b"".join(list_of_data))

    def _on_write(self) -> None:
        if self._context is not None:
            _in_context(self, self._on_write)
            return
        buf = self._buffer
        if not buf:
            return
        n: Any
        try:
            n = _os_write(self._fd, buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            n = exc
        loop = self._loop
        prev = loop._enter()
        try:
            if type(n) is not int:
                self._fatal_error(n, "Fatal write error on pipe transport")
            elif n == len(buf):
                buf.clear()
                self._wsize = 0
                self._register(self._reg_read, False)
                self._maybe_resume_protocol()  # may write more
                if self._closing and not self._wsize:
                    self._call_connection_lost(None)
            elif n:
                del buf[:n]
                self._wsize -= n
        finally:
            loop._leave(prev)

    # ---- the read side: asyncio's write pipe transport is a full Transport whose read-side
    # methods raise NotImplementedError

    def is_reading(self) -> bool:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close once the buffer is flushed; ``connection_lost(None)`` follows.  Unlike a
        socket's close(), the reader stays watched while the buffer drains."""
        if self._closing:
            return
        self._closing = True
        if not self._wsize:
            self._conn_lost += 1
            self._register(False, False)
            self._loop.call_soon(self._call_connection_lost, None)

    # ---- closing: the base's, but close() is write_eof() (all a write pipe needs)

    def close(self) -> None:
        """Close after the buffered data is written (``write_eof()``)."""
        if self._sock is not None and not self._closing:
            self.write_eof()

    def __repr__(self) -> str:
        loop = self._loop
        return _transport_support.pipe_repr(
            type(self).__name__, self._fd, self._sock is None, self._closing,
            loop is not None and not loop.is_closed(), self._reg_write, self._wsize)


def _make_read_pipe_transport(loop: Any, pipe: Any, protocol: Any, waiter: Any = None,
                              extra: dict[str, Any] | None = None) -> _ReadPipeTransport:
    """A read transport on ``pipe`` (a pipe, FIFO, socket or character device; made
    non-blocking); schedules ``connection_made``, then reading, then ``waiter``'s result."""
    _transport_support.pipe_fd(pipe, False)
    t = object.__new__(_ReadPipeTransport)
    t._paused = False
    t._setup(loop, pipe, protocol, _transport_support.pipe_extra(pipe, extra))
    loop.call_soon(protocol.connection_made, t)
    loop.call_soon(t._start_reading)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t


def _make_write_pipe_transport(loop: Any, pipe: Any, protocol: Any, waiter: Any = None,
                               extra: dict[str, Any] | None = None) -> _WritePipeTransport:
    """A write transport on ``pipe`` (a pipe, FIFO, socket or character device; made
    non-blocking); schedules ``connection_made``, then the peer watch, then ``waiter``'s
    result."""
    _, watch_peer = _transport_support.pipe_fd(pipe, True)
    t = object.__new__(_WritePipeTransport)
    t._buffer = bytearray()
    t._setup(loop, pipe, protocol, _transport_support.pipe_extra(pipe, extra))
    loop.call_soon(protocol.connection_made, t)
    if watch_peer:
        loop.call_soon(t._start_watching)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
