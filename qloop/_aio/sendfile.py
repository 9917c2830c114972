"""qloop's asyncio event loop: ``sendfile`` (a file to a transport) and ``sock_sendfile`` (a
file to a socket), shared by both implementations.

The native path is ``os.sendfile`` (zero copy) from the file's fd to the socket, waiting for
writability with a writer on the socket between calls; it needs a regular file and a plain
stream socket.  Otherwise (``fallback=True``) the file is read in the default executor and
written through the transport (with its flow control) or ``sock_sendall``.  The file position
ends at ``offset`` plus the bytes sent whatever happened: also on error, on cancellation and
when nothing was sent (an offset at or past the end of the file), as asyncio's loop leaves it
from 3.13 on; the fallback reads from ``offset`` even when it is 0 (CPython gh-150107).  A transport says which path it allows with
``_sendfile_compatible`` (asyncio's convention: qloop's stream transports try the native path,
asyncio's TLS transport only allows the fallback).  Arguments, errors and the
``SendfileNotAvailableError`` cases are asyncio's.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import socket
from asyncio import constants
from typing import Any

from .base import MixinBase

__all__ = ["SendfileMixin"]

_SendfileMode = constants._SendfileMode
_FALLBACK_BLOCK = 256 * 1024        # bytes per read of sock_sendfile's fallback
_TRANSPORT_FALLBACK_BLOCK = 16 * 1024  # ... of sendfile's: small writes keep flow control tight
_NotAvailable = asyncio.SendfileNotAvailableError


def _check_sendfile_params(sock: Any, file: Any, offset: Any, count: Any) -> None:
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


def _seek_after(fileno: int, offset: int, total_sent: int) -> None:
    # os.sendfile with an offset does not move the file position: move it past what was sent
    # (to offset when nothing was, unless the fd cannot seek: then there is no position)
    try:
        os.lseek(fileno, offset + total_sent, os.SEEK_SET)
    except OSError:
        if total_sent > 0:
            raise


class _NativeSend:
    """One ``os.sendfile`` transfer: a writer on the socket calls ``step`` while it needs to
    wait; ``fut`` gets the number of bytes sent."""

    def __init__(self, loop: Any, fut: Any, sock: Any, fileno: int, offset: int,
                 count: int | None, blocksize: int) -> None:
        self.loop = loop
        self.fut = fut
        self.fd = sock.fileno()
        self.fileno = fileno
        self.start = offset
        self.offset = offset
        self.count = count
        self.blocksize = blocksize
        self.total = 0
        self.waiting = False
        fut.add_done_callback(self._done)

    def _done(self, fut: Any) -> None:
        self._stop_waiting()
        if fut.cancelled():
            _seek_after(self.fileno, self.start, self.total)

    def _stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            self.loop._remove_writer(self.fd)

    def _finish(self, exc: BaseException | None = None) -> None:
        self._stop_waiting()
        _seek_after(self.fileno, self.start, self.total)
        if exc is None:
            self.fut.set_result(self.total)
        else:
            self.fut.set_exception(exc)

    def step(self) -> None:
        if self.fut.done():
            return
        blocksize = self.blocksize
        if self.count:
            blocksize = self.count - self.total
            if blocksize <= 0:
                self._finish()
                return
        try:
            sent = os.sendfile(self.fd, self.fileno, self.offset, blocksize)
        except (BlockingIOError, InterruptedError):
            self._wait()
            return
        except OSError as exc:
            if self.total == 0:
                # not a file the kernel can send from (and nothing sent yet): the caller may
                # fall back on reading and sending
                err: BaseException = _NotAvailable("os.sendfile call failed")
                err.__cause__ = exc
            elif exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                # the peer went away in the middle: the same error on every platform
                err = ConnectionError("socket is not connected", errno.ENOTCONN)
                err.__cause__ = exc
            else:
                err = exc
            self._finish(err)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._finish(exc)
            return
        if sent == 0:
            self._finish()  # end of file
            return
        self.offset += sent
        self.total += sent
        self._wait()

    def _wait(self) -> None:
        if not self.waiting:
            self.waiting = True
            self.loop._add_writer(self.fd, self.step, ())


class _SendfileFallbackProtocol(asyncio.Protocol):
    """Stands in for a transport's protocol while ``sendfile`` writes through it: reading is
    paused, ``drain()`` waits for the transport's flow control; ``restore()`` puts the
    protocol back (with the resume_writing() it may be owed)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._proto = transport.get_protocol()
        self._should_resume_reading = transport.is_reading()
        self._should_resume_writing = bool(getattr(transport, "_protocol_paused", False))
        transport.pause_reading()
        transport.set_protocol(self)
        self._loop = asyncio.get_running_loop()
        self._write_ready: Any | None = None
        if self._should_resume_writing:
            self._write_ready = self._loop.create_future()

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        fut = self._write_ready
        if fut is not None:
            await fut

    def connection_made(self, transport: Any) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc: BaseException | None) -> None:
        fut = self._write_ready
        if fut is not None and not fut.done():
            fut.set_exception(exc if exc is not None
                              else ConnectionError("Connection is closed by peer"))
        self._proto.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._write_ready is None:
            self._write_ready = self._loop.create_future()

    def resume_writing(self) -> None:
        fut = self._write_ready
        if fut is not None:
            self._write_ready = None
            if not fut.done():
                fut.set_result(False)

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> bool:
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self) -> None:
        self._transport.set_protocol(self._proto)
        if self._should_resume_reading:
            self._transport.resume_reading()
        fut = self._write_ready
        if fut is not None:
            fut.cancel()
        if self._should_resume_writing:
            self._proto.resume_writing()


class SendfileMixin(MixinBase):
    """``sendfile`` and ``sock_sendfile`` of qloop's EventLoop."""

    async def sock_sendfile(self, sock: Any, file: Any, offset: int = 0,
                            count: int | None = None, *, fallback: bool = True) -> int:
        """Send ``file`` (a regular file opened in binary mode) from ``offset`` (``count``
        bytes, or to its end) over the connected non-blocking stream socket ``sock``;
        returns the number of bytes sent."""
        self._sock_checks(sock)
        _check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except _NotAvailable:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock: Any, file: Any, offset: int,
                                    count: int | None) -> int:
        if not hasattr(os, "sendfile"):
            raise _NotAvailable("os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise _NotAvailable("not a regular file") from None
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise _NotAvailable("not a regular file") from None
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # an empty file
        fut = self.create_future()
        _NativeSend(self, fut, sock, fileno, offset, count, blocksize).step()
        return await fut  # type: ignore[no-any-return]

    async def _sock_sendfile_fallback(self, sock: Any, file: Any, offset: int,
                                      count: int | None) -> int:
        if hasattr(file, "seek"):
            file.seek(offset)  # 0 too: the file may be positioned elsewhere
        blocksize = min(count, _FALLBACK_BLOCK) if count else _FALLBACK_BLOCK
        buf = bytearray(blocksize)
        total = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                n = await self.run_in_executor(
                    None, file.readinto, view)
                if not n:
                    break  # end of file
                await self.sock_sendall(sock, view[:n])
                total += n
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    async def sendfile(self, transport: Any, file: Any, offset: int = 0,
                       count: int | None = None, *, fallback: bool = True) -> int:
        """Send ``file`` (a regular file opened in binary mode) from ``offset`` (``count``
        bytes, or to its end) through ``transport``: ``os.sendfile`` on qloop's stream
        transports, else (``fallback``) reads written through the transport.  Returns the
        number of bytes sent."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", _SendfileMode.UNSUPPORTED)
        if mode is _SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is _SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except _NotAvailable:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(f"fallback is disabled and native sendfile is not supported "
                               f"for transport {transport!r}")
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transport: Any, file: Any, offset: int,
                               count: int | None) -> int:
        sock = transport.get_extra_info("socket")
        # the transport's buffer goes first; write() refuses new data meanwhile (raises if
        # another sendfile holds the transport)
        flushed = transport._make_empty_waiter()
        resume_reading = transport.is_reading()
        transport.pause_reading()
        try:
            await flushed
            return await self.sock_sendfile(sock, file, offset, count, fallback=False)
        finally:
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()

    async def _sendfile_fallback(self, transport: Any, file: Any, offset: int,
                                 count: int | None) -> int:
        if hasattr(file, "seek"):
            file.seek(offset)  # 0 too: the file may be positioned elsewhere
        blocksize = min(count, _TRANSPORT_FALLBACK_BLOCK) if count else _TRANSPORT_FALLBACK_BLOCK
        buf = bytearray(blocksize)
        total = 0
        proto = _SendfileFallbackProtocol(transport)
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        return total
                view = memoryview(buf)[:blocksize]
                n = await self.run_in_executor(
                    None, file.readinto, view)
                if not n:
                    return total  # end of file
                await proto.drain()
                transport.write(view[:n])
                total += n
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
            await proto.restore()
