"""qloop's asyncio event loop: ``create_datagram_endpoint``, shared by both implementations.

The endpoint's socket (UDP over IPv4/IPv6, or a Unix datagram socket) gets the
implementation's datagram transport (``_make_datagram_transport``: recvfrom/sendto called in C
in the core).  Arguments, errors and the order of the candidate addresses are asyncio's.
"""

from __future__ import annotations

import asyncio.log
import socket
import sys
from collections.abc import Callable
from typing import Any

from .base import MixinBase
from .net import _remove_stale_unix_socket, _set_reuseport
from .transport_support import wait_connected

__all__ = ["DatagramMixin"]

_HAS_UNIX = hasattr(socket, "AF_UNIX")


class DatagramMixin(MixinBase):
    """UDP and Unix datagram endpoints of qloop's EventLoop."""

    async def create_datagram_endpoint(self, protocol_factory: Callable[[], Any],
                                       local_addr: Any = None, remote_addr: Any = None, *,
                                       family: int = 0, proto: int = 0, flags: int = 0,
                                       reuse_port: bool | None = None,
                                       allow_broadcast: bool | None = None,
                                       sock: Any = None) -> tuple[Any, Any]:
        """A datagram endpoint bound to ``local_addr`` and/or connected to ``remote_addr``
        (or on ``sock``); returns ``(transport, protocol)``."""
        r_addr = None
        if sock is not None:
            # asyncio's check: any socket but a stream one from Python 3.13, UDP before
            if sys.version_info >= (3, 13):
                if sock.type == socket.SOCK_STREAM:
                    raise ValueError(f"A datagram socket was expected, got {sock!r}")
            elif sock.type != socket.SOCK_DGRAM:
                raise ValueError(f"A UDP Socket was expected, got {sock!r}")
            if (local_addr or remote_addr or family or proto or flags or reuse_port
                    or allow_broadcast):
                given = {"local_addr": local_addr, "remote_addr": remote_addr,
                         "family": family, "proto": proto, "flags": flags,
                         "reuse_port": reuse_port, "allow_broadcast": allow_broadcast}
                problems = ", ".join(f"{k}={v}" for k, v in given.items() if v)
                raise ValueError(f"socket modifier keyword arguments can not be used when "
                                 f"sock is specified. ({problems})")
            sock.setblocking(False)
        else:
            candidates = await self._datagram_candidates(local_addr, remote_addr, family,
                                                         proto, flags)
            errors: list[OSError] = []
            for (fam, pro), (local_address, remote_address) in candidates:
                sock = None
                r_addr = None
                try:
                    sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
                    if reuse_port:
                        _set_reuseport(sock)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.setblocking(False)
                    if local_addr:
                        sock.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(sock, remote_address)  # type: ignore
                        r_addr = remote_address
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    errors.append(exc)
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            else:
                try:
                    raise errors[0]
                finally:
                    errors = []  # no reference cycle through the traceback
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(
            sock, protocol, r_addr, waiter)
        if self.get_debug():
            if local_addr:
                asyncio.log.logger.info("Datagram endpoint local_addr=%r remote_addr=%r "
                                        "created: (%r, %r)", local_addr, remote_addr,
                                        transport, protocol)
            else:
                asyncio.log.logger.debug("Datagram endpoint remote_addr=%r created: (%r, %r)",
                                         remote_addr, transport, protocol)
        await wait_connected(waiter, transport)
        return transport, protocol

    async def _datagram_candidates(self, local_addr: Any, remote_addr: Any, family: int,
                                   proto: int, flags: int) -> list[Any]:
        """``[((family, proto), (local address, remote address)), ...]`` to try in turn."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return [((family, proto), (None, None))]
        if _HAS_UNIX and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr:
                _remove_stale_unix_socket(local_addr)
            return [((family, proto), (local_addr, remote_addr))]
        # group the resolved addresses by (family, proto), in getaddrinfo's order
        by_key: dict[tuple[int, int], list[Any]] = {}
        for idx, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError("2-tuple is expected")
            infos = await self._ensure_resolved(
                addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            for fam, _, pro, _, address in infos:
                pair = by_key.setdefault((fam, pro), [None, None])
                pair[idx] = address
        # every address given needs one of the family
        candidates = [(key, pair) for key, pair in by_key.items()
                      if not ((local_addr and pair[0] is None)
                              or (remote_addr and pair[1] is None))]
        if not candidates:
            raise ValueError("can not get address information")
        return candidates
