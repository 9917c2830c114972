"""qloop's asyncio event loop: ``connect_read_pipe`` / ``connect_write_pipe``, shared by both
implementations.  The transports are the implementation's (``_make_read_pipe_transport`` /
``_make_write_pipe_transport``: C read/write paths in the core); they accept what asyncio's
accept: pipes, FIFOs, sockets and character devices (ptys, terminals)."""

from __future__ import annotations

import asyncio.log
from collections.abc import Callable
from typing import Any

from .base import MixinBase
from .transport_support import wait_connected

__all__ = ["PipeMixin"]


class PipeMixin(MixinBase):
    """Pipe transports of qloop's EventLoop."""

    async def connect_read_pipe(self, protocol_factory: Callable[[], Any],
                                pipe: Any) -> tuple[Any, Any]:
        """Read from ``pipe`` (a file object: a pipe, FIFO, socket or character device, made
        non-blocking) into a new ``protocol_factory()``; returns ``(transport, protocol)``.
        The transport closes ``pipe`` when it is done."""
        return await self._connect_pipe(
            self._make_read_pipe_transport, "Read",
            protocol_factory, pipe)

    async def connect_write_pipe(self, protocol_factory: Callable[[], Any],
                                 pipe: Any) -> tuple[Any, Any]:
        """Write to ``pipe`` (a file object: a pipe, FIFO, socket or character device, made
        non-blocking) through a write transport for a new ``protocol_factory()``; returns
        ``(transport, protocol)``.  The transport closes ``pipe`` when it is done."""
        return await self._connect_pipe(
            self._make_write_pipe_transport, "Write",
            protocol_factory, pipe)

    async def _connect_pipe(self, make_transport: Callable[..., Any], kind: str,
                            protocol_factory: Callable[[], Any], pipe: Any) -> tuple[Any, Any]:
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = make_transport(pipe, protocol, waiter)
        await wait_connected(waiter, transport)
        if self.get_debug():
            asyncio.log.logger.debug("%s pipe %r connected: (%r, %r)", kind, pipe.fileno(),
                                     transport, protocol)
        return transport, protocol
