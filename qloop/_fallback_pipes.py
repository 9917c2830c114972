"""The asyncio loop's pipe transports (``connect_read_pipe`` / ``connect_write_pipe``, and a
subprocess's stdin/stdout/stderr), pure Python: the twin of ``qloop/_core_pipes.pxi`` (same
classes, same methods, same behaviour).

Each transport's bound ``_on_read``/``_on_write`` are its fd's handler in the AioContext.  The
read transport reads up to 256 KiB per readiness event; the write transport writes at once
and buffers only the rest, flushed when the fd is writable.  A write pipe that is a FIFO or a
socket is also watched for reading: it becomes readable when the reader goes away, which
closes the transport (``BrokenPipeError`` if data was still buffered), as in asyncio.
"""

from __future__ import annotations

import asyncio
import errno
import os
import warnings
from typing import Any

from . import _eventloop, _transport_support

__all__ = ["_ReadPipeTransport", "_WritePipeTransport", "_make_read_pipe_transport",
           "_make_write_pipe_transport"]

_READ_MAX = _transport_support.READ_MAX
_os_read = os.read
_os_write = os.write
_set_result_unless_cancelled = _eventloop._set_result_unless_cancelled
_callback_failed = _transport_support.callback_failed
_fatal_error_report = _transport_support.fatal_error
_protocol_failed = _transport_support.protocol_failed


class _ReadPipeTransport(asyncio.ReadTransport):
    """The read end of a pipe, FIFO, socket or character device (asyncio's ReadTransport
    API); created by the event loop."""

    _loop: Any
    _pipe: Any
    _fd: int
    _protocol: Any
    _data_received: Any
    _extra: dict[str, Any]
    _closing: bool
    _paused: bool
    _reg_read: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("transports are created by the event loop")

    # ---- registration with the context

    def _register(self, on: bool) -> None:
        if on == self._reg_read:
            return
        loop = self._loop
        if loop is not None and not loop._ctx._closed:
            loop._ctx._set_handler(self._fd, self._on_read if on else None, None, None, None)
        self._reg_read = on

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._register(True)

    # ---- the read path

    def _on_read(self) -> None:
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
        self._register(False)
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)

    # ---- reading control

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        """Stop calling the protocol with data until ``resume_reading()``."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._register(False)
        if self._loop._debug:
            _transport_support.debug_log("debug", "%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._register(True)
        if self._loop._debug:
            _transport_support.debug_log("debug", "%r resumes reading", self)

    # ---- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; ``connection_lost(None)`` follows (the pipe is closed then)."""
        if not self._closing:
            self._close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        _fatal_error_report(self, self._loop, self._protocol, exc, message, errno.EIO)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._register(False)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._register(False)
            pipe = self._pipe
            self._pipe = None
            if pipe is not None:
                pipe.close()
            self._protocol = self._data_received = None
            self._loop = None

    # ---- the rest of the Transport API

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._data_received = protocol.data_received

    def get_protocol(self) -> Any:
        return self._protocol

    def __repr__(self) -> str:
        loop = self._loop
        return _transport_support.pipe_repr(
            type(self).__name__, self._fd, self._pipe is None, self._closing,
            loop is not None and not loop.is_closed(), self._reg_read, None)

    def __del__(self) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self,
                          stacklevel=1)
            pipe.close()
            self._pipe = None


class _WritePipeTransport(asyncio.WriteTransport):
    """The write end of a pipe, FIFO, socket or character device (asyncio's WriteTransport
    API, with flow control); created by the event loop."""

    _loop: Any
    _pipe: Any
    _fd: int
    _protocol: Any
    _extra: dict[str, Any]
    _buffer: bytearray
    _conn_lost: int
    _closing: bool
    _lost: bool                     # connection_lost is scheduled (or ran)
    _watch_peer: bool               # a FIFO or socket: readable when the reader goes away
    _reg_read: bool
    _reg_write: bool
    _protocol_paused: bool
    _high: int
    _low: int

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

    def _start_watching(self) -> None:
        if not self._closing:
            self._register(True, self._reg_write)

    # ---- the peer went away

    def _on_read(self) -> None:
        loop = self._loop
        prev = loop._enter()
        try:
            if loop._debug:
                _transport_support.debug_log("info", "%r was closed by peer", self)
            self._close(BrokenPipeError() if self._buffer else None)
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
        if not self._buffer:
            try:
                n = _os_write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            self._register(self._reg_read, True)
        self._buffer += data[n:] if n else data
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        """Write every item of ``list_of_data`` (bytes-like objects), in order."""
        self.write(b"".join(list_of_data))

    def _on_write(self) -> None:
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
                buf.clear()
                self._conn_lost += 1
                self._register(self._reg_read, False)
                self._fatal_error(n, "Fatal write error on pipe transport")
                return
            if n == len(buf):
                buf.clear()
                self._register(self._reg_read, False)
                self._maybe_resume_protocol()  # may write more
                if self._closing and not self._buffer:
                    self._register(False, False)
                    self._lost = True
                    self._call_connection_lost(None)
            elif n:
                del buf[:n]
        finally:
            loop._leave(prev)

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) <= self._high or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _protocol_failed(self, self._loop, self._protocol, exc, "pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low:
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
        return len(self._buffer)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Close once the buffer is flushed; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._register(False, False)
            self._lost = True
            self._loop.call_soon(self._call_connection_lost, None)

    # ---- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the buffered data is written (``write_eof()``)."""
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self) -> None:
        """Close now, dropping buffered data; ``connection_lost(None)`` follows."""
        self._close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        _fatal_error_report(self, self._loop, self._protocol, exc, message)
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._buffer.clear()
        self._register(False, False)
        if self._lost or self._loop is None:
            return
        self._lost = True
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._register(False, False)
            pipe = self._pipe
            self._pipe = None
            if pipe is not None:
                pipe.close()
            self._protocol = None
            self._loop = None

    # ---- the rest of the Transport API

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def __repr__(self) -> str:
        loop = self._loop
        return _transport_support.pipe_repr(
            type(self).__name__, self._fd, self._pipe is None, self._closing,
            loop is not None and not loop.is_closed(), self._reg_write, len(self._buffer))

    def __del__(self) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self,
                          stacklevel=1)
            pipe.close()
            self._pipe = None


def _make_read_pipe_transport(loop: Any, pipe: Any, protocol: Any, waiter: Any = None,
                              extra: dict[str, Any] | None = None) -> _ReadPipeTransport:
    """A read transport on ``pipe`` (a pipe, FIFO, socket or character device; made
    non-blocking); schedules ``connection_made``, then reading, then ``waiter``'s result."""
    fd, _ = _transport_support.pipe_fd(pipe, False)
    t = object.__new__(_ReadPipeTransport)
    t._loop = loop
    t._pipe = pipe
    t._fd = fd
    t._extra = _transport_support.pipe_extra(pipe, extra)
    t._closing = t._paused = t._reg_read = False
    t.set_protocol(protocol)
    loop._transports[fd] = t
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
    fd, watch_peer = _transport_support.pipe_fd(pipe, True)
    t = object.__new__(_WritePipeTransport)
    t._loop = loop
    t._pipe = pipe
    t._fd = fd
    t._extra = _transport_support.pipe_extra(pipe, extra)
    t._buffer = bytearray()
    t._conn_lost = 0
    t._closing = t._lost = False
    t._watch_peer = watch_peer
    t._reg_read = t._reg_write = False
    t._protocol_paused = False
    t._high = _transport_support.HIGH_WATER
    t._low = _transport_support.HIGH_WATER // 4
    t.set_protocol(protocol)
    loop._transports[fd] = t
    loop.call_soon(protocol.connection_made, t)
    if watch_peer:
        loop.call_soon(t._start_watching)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
