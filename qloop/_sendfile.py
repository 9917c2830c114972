"""qloop's asyncio event loop: ``sock_sendfile`` and ``sendfile``, shared by both
implementations.

The native path is ``os.sendfile`` driven by the loop's writer on the socket; the fallback
reads the file in the default executor and sends what it read (``sock_sendall``, or the
transport's ``write`` with its flow control).  Behaviour and errors are asyncio's.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from typing import Any, Optional

__all__ = ["SendfileMixin"]

_FALLBACK_BLOCK = 256 * 1024  # file bytes read per step of sock_sendfile's fallback
_TRANSPORT_FALLBACK_BLOCK = 16384  # ... and of sendfile's


def _not_available(message: str) -> Exception:
    return asyncio.SendfileNotAvailableError(message)


def _check_params(sock: Any, file: Any, offset: Any, count: Any) -> None:
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


class _NativeSend:
    """One native sendfile: os.sendfile steps, each when the socket is writable."""

    def __init__(self, loop: Any, fut: Any, sock: Any, fileno: int, offset: int,
                 count: Optional[int], blocksize: int) -> None:
        self.loop = loop
        self.fut = fut
        self.fd = sock.fileno()
        self.fileno = fileno
        self.offset = offset
        self.count = count
        self.blocksize = blocksize
        self.total = 0
        self.waiting = False
        fut.add_done_callback(self._done)

    def _done(self, fut: Any) -> None:
        if self.waiting:
            self.waiting = False
            self.loop.remove_writer(self.fd)
        if fut.cancelled():
            self._update_filepos()

    def _update_filepos(self) -> None:
        if self.total > 0:
            os.lseek(self.fileno, self.offset, os.SEEK_SET)

    def _finish(self, result: Any = None, exc: Optional[BaseException] = None) -> None:
        self._update_filepos()
        if self.fut.done():
            return
        if exc is not None:
            self.fut.set_exception(exc)
        else:
            self.fut.set_result(result)

    def step(self) -> None:
        if self.fut.done():
            return
        if self.count:
            self.blocksize = self.count - self.total
            if self.blocksize <= 0:
                self._finish(self.total)
                return
        try:
            sent = os.sendfile(self.fd, self.fileno, self.offset, self.blocksize)
        except (BlockingIOError, InterruptedError):
            self._wait()
            return
        except OSError as exc:
            if self.total == 0:
                # not a file sendfile(2) can read (a pipe, ...): let the caller fall back
                self._finish(exc=_not_available("os.sendfile call failed"))
            else:
                if exc.errno == 107 and type(exc) is not ConnectionError:  # ENOTCONN
                    err = ConnectionError("socket is not connected", exc.errno)
                    err.__cause__ = exc
                    exc = err
                self._finish(exc=exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._finish(exc=exc)
            return
        if sent == 0:
            self._finish(self.total)  # end of file
            return
        self.offset += sent
        self.total += sent
        self._wait()

    def _wait(self) -> None:
        if not self.waiting:
            self.waiting = True
            self.loop._add_writer(self.fd, self._writable, ())

    def _writable(self) -> None:
        self.step()


def _writing_paused(transport: Any) -> bool:
    probe = getattr(transport, "_writing_paused", None)
    if probe is not None:
        return bool(probe())
    return bool(getattr(transport, "_protocol_paused", False))  # asyncio's transports


def _can_fall_back(transport: Any) -> bool:
    """Whether ``transport`` reports pause_writing() (qloop's, or asyncio's TLS transport)."""
    if hasattr(transport, "_writing_paused"):
        return True
    modes = getattr(getattr(asyncio, "constants", None), "_SendfileMode", None)
    mode = getattr(transport, "_sendfile_compatible", None)
    return modes is not None and mode in (getattr(modes, "FALLBACK", None),
                                          getattr(modes, "TRY_NATIVE", None))


class _PausedApp(asyncio.Protocol):
    """Stands in for the application's protocol while sendfile writes through a transport
    (reading paused); ``drain()`` waits while the transport asks for a pause."""

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._app = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        transport.pause_reading()
        self._ready: Optional[Any] = None
        if _writing_paused(transport):
            self._ready = loop.create_future()
        transport.set_protocol(self)

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._ready is not None:
            await self._ready

    def connection_made(self, transport: Any) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc or ConnectionError("Connection is closed by peer"))
        self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._ready is None:
            self._ready = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._ready is not None:
            if not self._ready.done():
                self._ready.set_result(False)
            self._ready = None

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def restore(self) -> None:
        self._transport.set_protocol(self._app)
        if self._resume_reading:
            self._transport.resume_reading()


class SendfileMixin:
    """``sock_sendfile`` and ``sendfile`` of qloop's EventLoop."""

    async def sock_sendfile(self, sock: Any, file: Any, offset: int = 0,
                            count: Optional[int] = None, *, fallback: bool = True) -> int:
        """Send ``file`` (binary, from ``offset``, ``count`` bytes or to the end) on the
        non-blocking stream socket ``sock``: os.sendfile, else a read-and-send fallback."""
        self._sock_checks(sock)  # type: ignore[attr-defined]
        _check_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock: Any, file: Any, offset: int,
                                    count: Optional[int]) -> int:
        if not hasattr(os, "sendfile"):
            raise _not_available("os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise _not_available("not a regular file") from None
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise _not_available("not a regular file") from None
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # an empty file
        fut = self.create_future()  # type: ignore[attr-defined]
        _NativeSend(self, fut, sock, fileno, offset, count, blocksize).step()
        return await fut  # type: ignore[no-any-return]

    async def _sock_sendfile_fallback(self, sock: Any, file: Any, offset: int,
                                      count: Optional[int]) -> int:
        if offset:
            file.seek(offset)
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
                read = await self.run_in_executor(  # type: ignore[attr-defined]
                    None, file.readinto, view)
                if not read:
                    break  # end of file
                await self.sock_sendall(sock, view[:read])  # type: ignore[attr-defined]
                total += read
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    async def sendfile(self, transport: Any, file: Any, offset: int = 0,
                       count: Optional[int] = None, *, fallback: bool = True) -> int:
        """Send ``file`` through ``transport`` (its buffer flushed first): os.sendfile on
        qloop's socket transports, else (or with TLS) read-and-write."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        native = getattr(transport, "_sendfile_native", False)
        if not native and not _can_fall_back(transport):
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if native:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except asyncio.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(f"fallback is disabled and native sendfile is not supported "
                               f"for transport {transport!r}")
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transport: Any, file: Any, offset: int,
                               count: Optional[int]) -> int:
        sock = transport.get_extra_info("socket")
        fd = sock.fileno()
        transports = self._transports  # type: ignore[attr-defined]
        transports.pop(fd, None)  # the loop's writer may take the fd meanwhile
        resume_reading = transport.is_reading()
        transport.pause_reading()
        await transport._make_empty_waiter()
        try:
            return await self.sock_sendfile(sock, file, offset, count, fallback=False)
        finally:
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()
            transports[fd] = transport

    async def _sendfile_fallback(self, transport: Any, file: Any, offset: int,
                                 count: Optional[int]) -> int:
        if offset:
            file.seek(offset)
        blocksize = (min(count, _TRANSPORT_FALLBACK_BLOCK) if count
                     else _TRANSPORT_FALLBACK_BLOCK)
        buf = bytearray(blocksize)
        total = 0
        proto = _PausedApp(transport, self)
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        return total
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(  # type: ignore[attr-defined]
                    None, file.readinto, view)
                if not read:
                    return total  # end of file
                await proto.drain()
                transport.write(view[:read])
                total += read
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
            proto.restore()
