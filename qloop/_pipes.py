"""qloop's asyncio event loop: pipe transports (``connect_read_pipe``/``connect_write_pipe``),
shared by both implementations.

Pipes are not a hot path: the transports are plain Python over the loop's own readers and
writers (``_add_reader``/``_add_writer``), with asyncio's behaviour for pipes, sockets and
character devices (a pty).  The subprocess transports will use them.
"""

from __future__ import annotations

import asyncio
import asyncio.log
import errno
import os
import stat
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

from . import _eventloop, _transport_support

__all__ = ["PipeMixin", "ReadPipeTransport", "WritePipeTransport"]

_READ_MAX = _transport_support.READ_MAX


def _logger() -> Any:
    return asyncio.log.logger


def _report(loop: Any, transport: Any, protocol: Any, exc: BaseException, message: str) -> None:
    # EIO is what a pty's reader gets once the other side is gone: not an error
    if isinstance(exc, OSError) and exc.errno == errno.EIO:
        if loop.get_debug():
            _logger().debug("%r: %s", transport, message, exc_info=True)
        return
    loop.call_exception_handler({
        "message": message,
        "exception": exc,
        "transport": transport,
        "protocol": protocol,
    })


class ReadPipeTransport(asyncio.ReadTransport):
    """The read end of a pipe (or a socket, a character device) as asyncio's ReadTransport."""

    def __init__(self, loop: Any, pipe: Any, protocol: Any, waiter: Any = None,
                 extra: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe  # type: ignore[attr-defined]
        self._loop: Any = loop
        self._pipe: Any = pipe
        self._fileno = pipe.fileno()
        self._protocol: Any = protocol
        self._closing = False
        self._paused = False
        mode = os.fstat(self._fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._pipe = None
            self._protocol = None
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._add_reader)  # once connection_made() was called
        if waiter is not None:
            loop.call_soon(_eventloop._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        state = "closed" if self._pipe is None else "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fileno} {state}>"

    def _add_reader(self) -> None:
        if self.is_reading():
            self._loop._add_reader(self._fileno, self._read_ready, ())

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fileno, _READ_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._loop.get_debug():
            _logger().info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._loop._remove_reader(self._fileno)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop._add_reader(self._fileno, self._read_ready, ())

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on pipe "
                     "transport") -> None:
        _report(self._loop, self, self._protocol, exc, message)
        self._close(exc)

    def _close(self, exc: Optional[BaseException]) -> None:
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


class WritePipeTransport(asyncio.WriteTransport):
    """The write end of a pipe (or a socket, a character device) as asyncio's WriteTransport,
    with its flow control."""

    def __init__(self, loop: Any, pipe: Any, protocol: Any, waiter: Any = None,
                 extra: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe  # type: ignore[attr-defined]
        self._loop: Any = loop
        self._pipe: Any = pipe
        self._fileno = pipe.fileno()
        self._protocol: Any = protocol
        self._buffer = bytearray()
        self._conn_lost = 0
        self._closing = False
        self._protocol_paused = False
        self._high = _transport_support.HIGH_WATER
        self._low = self._high // 4
        mode = os.fstat(self._fileno).st_mode
        is_socket = stat.S_ISSOCK(mode)
        is_fifo = stat.S_ISFIFO(mode)
        if not (stat.S_ISCHR(mode) or is_fifo or is_socket):
            self._pipe = None
            self._protocol = None
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        if is_socket or is_fifo:
            # the read side of a write end tells when the reader went away
            loop.call_soon(loop._add_reader, self._fileno, self._read_ready, ())
        if waiter is not None:
            loop.call_soon(_eventloop._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        state = "closed" if self._pipe is None else "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fileno} {state} bufsize={len(self._buffer)}>"

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> Tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: Optional[int] = None,
                                low: Optional[int] = None) -> None:
        if high is None:
            high = _transport_support.HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) <= self._high or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _transport_support.protocol_failed(self, self._loop, self._protocol, exc,
                                               "pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _transport_support.protocol_failed(self, self._loop, self._protocol, exc,
                                                   "resume_writing")

    def _read_ready(self) -> None:
        # readable write end: the reader closed its side
        if self._loop.get_debug():
            _logger().info("%r was closed by peer", self)
        if self._buffer:
            self._close(BrokenPipeError())
        else:
            self._close()

    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if isinstance(data, bytearray):
            data = memoryview(data)
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                _logger().warning("pipe closed by peer or os.write(pipe, data) raised "
                                  "exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            if n > 0:
                data = memoryview(data)[n:]
            self._loop._add_writer(self._fileno, self._write_ready, ())
        self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        try:
            n = os.write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if n == len(self._buffer):
            self._buffer.clear()
            self._loop._remove_writer(self._fileno)
            self._maybe_resume_protocol()  # may write more
            if self._closing:
                self._loop._remove_reader(self._fileno)
                self._call_connection_lost(None)
            return
        if n > 0:
            del self._buffer[:n]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()  # all a write pipe needs to close

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def abort(self) -> None:
        self._close(None)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on pipe "
                     "transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                _logger().debug("%r: %s", self, message, exc_info=True)
        else:
            _report(self._loop, self, self._protocol, exc, message)
        self._close(exc)

    def _close(self, exc: Optional[BaseException] = None) -> None:
        self._closing = True
        if self._buffer:
            self._loop._remove_writer(self._fileno)
        self._buffer.clear()
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


class PipeMixin:
    """``connect_read_pipe``/``connect_write_pipe`` of qloop's EventLoop."""

    async def connect_read_pipe(self, protocol_factory: Callable[[], Any],
                                pipe: Any) -> Tuple[Any, Any]:
        """Wrap the read end ``pipe`` (a file object) in a read transport."""
        return await self._connect_pipe(ReadPipeTransport, protocol_factory, pipe, "Read")

    async def connect_write_pipe(self, protocol_factory: Callable[[], Any],
                                 pipe: Any) -> Tuple[Any, Any]:
        """Wrap the write end ``pipe`` (a file object) in a write transport."""
        return await self._connect_pipe(WritePipeTransport, protocol_factory, pipe, "Write")

    async def _connect_pipe(self, cls: Any, protocol_factory: Callable[[], Any], pipe: Any,
                            kind: str) -> Tuple[Any, Any]:
        protocol = protocol_factory()
        waiter = self.create_future()  # type: ignore[attr-defined]
        transport = cls(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self.get_debug():  # type: ignore[attr-defined]
            _logger().debug("%s pipe %r connected: (%r, %r)", kind, pipe.fileno(), transport,
                            protocol)
        return transport, protocol
