"""qloop's asyncio event loop: stream networking, shared by both implementations.

``NetworkMixin`` (in ``MIXINS``, added to ``EventLoop`` by ``qloop._aio.api``) has the
high-level API: ``create_connection`` (happy eyeballs through ``asyncio.staggered``),
``create_server`` and ``Server``, the Unix variants, ``connect_accepted_socket``,
``start_tls`` and the ``sock_*`` methods.  The transports themselves are the implementation's
(``_make_socket_transport``: C read/write paths in the core); TLS layers asyncio's own
``sslproto.SSLProtocol`` over them.  Behaviour and errors are asyncio's.
"""

from __future__ import annotations

import asyncio
import asyncio.log
import builtins
import collections.abc
import errno
import functools
import itertools
import os
import socket
import stat
import sys
import weakref
from asyncio import sslproto, staggered, tasks, trsock
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .base import MixinBase
from .transport_support import wait_connected

if TYPE_CHECKING:
    from typing import Self

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - CPython without OpenSSL
    _ssl = None  # type: ignore[assignment]

__all__ = ["MIXINS", "NetworkMixin", "Server"]

_HAS_IPV6 = hasattr(socket, "AF_INET6")
_ACCEPT_RETRY_DELAY = 1.0
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _logger() -> Any:
    return asyncio.log.logger


# --------------------------------------------------------------------------------------------
# helpers


def _check_ssl_socket(sock: Any) -> None:
    if _ssl is not None and isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _check_nonblocking(sock: Any) -> None:
    if sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


# asyncio removes a unix server's socket file when the server closes from Python 3.13
# (create_unix_server's cleanup_socket); before, the file stays
_CLEANUP_UNIX_SOCKET = sys.version_info >= (3, 13)
# serve_forever() cancelled closes the connections too (as asyncio's from Python 3.13), not
# only the listening sockets: wait_closed() then does not wait for idle clients
_SERVE_FOREVER_CLOSES_CLIENTS = sys.version_info >= (3, 13)


def _remove_stale_unix_socket(path: Any) -> None:
    """Remove a socket file left at ``path`` by an earlier process (as asyncio does before it
    binds a Unix socket there); an abstract socket has no file."""
    if not path or path[0] in (0, "\x00"):
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        # the directory may allow creating the socket without allowing this check
        _logger().error("Unable to check or remove stale UNIX socket %r: %r", path, err)


def _ipaddr_info(host: Any, port: Any, family: int, type_: int, proto: int,
                 flowinfo: int = 0, scopeid: int = 0) -> tuple[Any, ...] | None:
    """The getaddrinfo() answer for a numeric address, without calling it (None if ``host``
    needs a real lookup)."""
    if not hasattr(socket, "inet_pton"):
        return None
    if proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP) or host is None:
        return None
    if type_ == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type_ == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    if port is None or isinstance(port, bytes) and port == b"" or isinstance(port, str) and port == "":
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None
    afs: list[int]
    if family == socket.AF_UNSPEC:
        afs = [socket.AF_INET]
        if _HAS_IPV6:
            afs.append(socket.AF_INET6)
    else:
        afs = [family]
    if isinstance(host, bytes):
        host = host.decode("idna")
    if "%" in host:
        return None  # a scope id: let getaddrinfo parse it
    for af in afs:
        try:
            socket.inet_pton(af, host)
            if _HAS_IPV6 and af == socket.AF_INET6:
                return af, type_, proto, "", (host, port, flowinfo, scopeid)
            return af, type_, proto, "", (host, port)
        except OSError:
            pass
    return None


def _interleave_addrinfos(addrinfos: Sequence[Any], first_family_count: int = 1) -> list[Any]:
    """Alternate address families (RFC 8305): ``first_family_count`` of the first family,
    then one of each in turn."""
    by_family: dict[int, list[Any]] = collections.OrderedDict()
    for info in addrinfos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    out: list[Any] = []
    if first_family_count > 1:
        out.extend(lists[0][:first_family_count - 1])
        del lists[0][:first_family_count - 1]
    out.extend(a for a in itertools.chain.from_iterable(itertools.zip_longest(*lists))
               if a is not None)
    return out


def _set_reuseport(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, SO_REUSEPORT defined "
                         "but not implemented.") from None


def _hand_over_stream_buffer(protocol: Any, ssl_protocol: Any) -> None:
    """A server's stream may have read the start of the TLS handshake (the client's hello)
    before ``start_tls()``: those bytes go to the TLS protocol's input, as asyncio does from
    Python 3.13 (without it the handshake waits forever), on every Python version."""
    if not isinstance(protocol, asyncio.StreamReaderProtocol):
        return
    reader = getattr(protocol, "_stream_reader", None)
    buffer = getattr(reader, "_buffer", None)
    if buffer:
        ssl_protocol._incoming.write(buffer)
        buffer.clear()


def _ssl_protocol(loop: Any, protocol: Any, sslcontext: Any, waiter: Any, server_side: bool,
                  server_hostname: str | None, handshake_timeout: float | None,
                  shutdown_timeout: float | None, call_connection_made: bool = True) -> Any:
    kwargs: dict[str, Any] = {"call_connection_made": call_connection_made}
    if handshake_timeout is not None:
        kwargs["ssl_handshake_timeout"] = handshake_timeout
    if shutdown_timeout is not None:
        kwargs["ssl_shutdown_timeout"] = shutdown_timeout
    return sslproto.SSLProtocol(loop, protocol, sslcontext, waiter, server_side,
                                server_hostname, **kwargs)


def _check_ssl_args(ssl: Any, server_hostname: Any, handshake_timeout: Any,
                    shutdown_timeout: Any) -> None:
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def _check_server_ssl(ssl: Any, handshake_timeout: Any, shutdown_timeout: Any) -> None:
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if handshake_timeout is not None and ssl is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if shutdown_timeout is not None and ssl is None:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


# --------------------------------------------------------------------------------------------
# Server


class Server(asyncio.AbstractServer):
    """What ``create_server``/``create_unix_server`` return: the listening sockets, serving
    or not, and the connections they accepted."""

    def __init__(self, loop: Any, sockets: list[socket.socket], protocol_factory: Any,
                 ssl_context: Any, backlog: int, ssl_handshake_timeout: float | None,
                 ssl_shutdown_timeout: float | None = None,
                 unlink_paths: Sequence[tuple[str, int]] = ()) -> None:
        self._loop = loop
        self._sockets: list[socket.socket] | None = sockets
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._active_count = 0
        self._waiters: list[Any] | None = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._serving = False
        self._serving_forever_fut: Any | None = None
        self._unlink_paths = list(unlink_paths)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    def _attach(self, transport: Any) -> None:
        assert self._sockets is not None
        self._active_count += 1
        self._clients.add(transport)

    def _detach(self, transport: Any) -> None:
        self._active_count -= 1
        self._clients.discard(transport)
        if self._active_count == 0 and self._sockets is None:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters = self._waiters
        self._waiters = None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def _start_serving(self) -> None:
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets or ():
            sock.listen(self._backlog)
            self._loop._start_serving(self._protocol_factory, sock, self._ssl_context, self,
                                      self._backlog, self._ssl_handshake_timeout,
                                      self._ssl_shutdown_timeout)

    def get_loop(self) -> Any:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[Any, ...]:
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def close(self) -> None:
        """Stop listening and close the listening sockets; accepted connections stay."""
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for sock in sockets:
            self._loop._stop_serving(sock)
        for path, ino in self._unlink_paths:
            try:
                if os.stat(path).st_ino == ino:
                    os.unlink(path)
            except OSError:
                pass
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
        self._serving_forever_fut = None
        if self._active_count == 0:
            self._wakeup()

    def close_clients(self) -> None:
        """Close every accepted connection (``transport.close()``)."""
        for transport in list(self._clients):
            transport.close()

    def abort_clients(self) -> None:
        """Abort every accepted connection (``transport.abort()``)."""
        for transport in list(self._clients):
            transport.abort()

    async def start_serving(self) -> None:
        self._start_serving()
        await tasks.sleep(0)  # the listening sockets' readers are registered by now

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                if _SERVE_FOREVER_CLOSES_CLIENTS:
                    self.close_clients()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection it accepted is gone."""
        if self._waiters is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


# --------------------------------------------------------------------------------------------
# The networking API


class NetworkMixin(MixinBase):
    """Stream networking of qloop's EventLoop (plain Python over the transports)."""

    # ---- name resolution

    async def _ensure_resolved(self, address: Any, *, family: int = 0,
                               type: int = socket.SOCK_STREAM, proto: int = 0,
                               flags: int = 0) -> list[Any]:
        host, port = address[:2]
        info = _ipaddr_info(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]  # a numeric address: no executor round trip
        infos: list[Any] = await self.getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags)
        return infos

    # ---- connections

    async def create_connection(self, protocol_factory: Callable[[], Any], host: Any = None,
                                port: Any = None, *, ssl: Any = None, family: int = 0,
                                proto: int = 0, flags: int = 0, sock: Any = None,
                                local_addr: Any = None, server_hostname: str | None = None,
                                ssl_handshake_timeout: float | None = None,
                                ssl_shutdown_timeout: float | None = None,
                                happy_eyeballs_delay: float | None = None,
                                interleave: int | None = None,
                                all_errors: bool = False) -> tuple[Any, Any]:
        """Connect to ``host:port`` (every address getaddrinfo gives, in turn or raced with
        happy eyeballs), or wrap ``sock``; returns ``(transport, protocol)``."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        _check_ssl_args(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            _check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # RFC 8305 with a delay: interleave the families
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._ensure_resolved((host, port), family=family,
                                                type=socket.SOCK_STREAM, proto=proto,
                                                flags=flags)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(local_addr, family=family,
                                                          type=socket.SOCK_STREAM,
                                                          proto=proto, flags=flags)
                if not laddr_infos:
                    raise OSError("getaddrinfo() returned empty list")
            if interleave:
                infos = _interleave_addrinfos(infos, interleave)
            exceptions: list[list[OSError]] = []
            if happy_eyeballs_delay is None:
                for addrinfo in infos:
                    try:
                        sock = await self._connect_sock(exceptions, addrinfo, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                race = await staggered.staggered_race(
                    (functools.partial(self._connect_sock, exceptions, addrinfo, laddr_infos)
                     for addrinfo in infos),
                    happy_eyeballs_delay, loop=self)  # type: ignore[arg-type]
                sock = race[0]
                # the race's list of exceptions is also held by the racers' frames, which the
                # exceptions' tracebacks hold: emptied, it closes no cycle
                race[2].clear()
                race = None  # type: ignore[assignment]
            if sock is None:
                errors = [exc for sub in exceptions for exc in sub]
                try:
                    if all_errors:
                        raise _exception_group("create_connection failed", errors)
                    if len(errors) == 1:
                        raise errors[0]
                    model = str(errors[0])
                    if all(str(exc) == model for exc in errors):
                        raise errors[0]
                    raise OSError("Multiple exceptions: {}".format(
                        ", ".join(str(exc) for exc in errors)))
                finally:
                    # no reference cycle through the tracebacks (the racers' frames hold
                    # the list itself: empty it, rebinding is not enough)
                    errors.clear()
                    exceptions.clear()
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def _connect_sock(self, exceptions: list[list[OSError]], addr_info: Any,
                            local_addr_infos: list[Any] | None = None) -> socket.socket:
        my_exceptions: list[OSError] = []
        exceptions.append(my_exceptions)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        msg = (f"error while attempting to bind on address {laddr!r}: "
                               f"{(exc.strerror or '').lower()}")
                        my_exceptions.append(OSError(exc.errno, msg))
                else:
                    if my_exceptions:
                        raise my_exceptions.pop()
                    raise OSError(f"no matching local address with family={family} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            my_exceptions.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            # the exception's traceback holds this frame: no cycle through these lists
            exceptions = my_exceptions = None  # type: ignore[assignment]

    async def _create_connection_transport(self, sock: socket.socket,
                                           protocol_factory: Callable[[], Any], ssl: Any,
                                           server_hostname: str | None,
                                           server_side: bool = False,
                                           ssl_handshake_timeout: float | None = None,
                                           ssl_shutdown_timeout: float | None = None
                                           ) -> tuple[Any, Any]:
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        if ssl:
            sslcontext = None if isinstance(ssl, bool) else ssl
            ssl_protocol = _ssl_protocol(self, protocol, sslcontext, waiter, server_side,
                                         server_hostname, ssl_handshake_timeout,
                                         ssl_shutdown_timeout)
            self._make_socket_transport(sock, ssl_protocol)
            transport = ssl_protocol._app_transport
        else:
            transport = self._make_socket_transport(
                sock, protocol, waiter)
        try:
            await wait_connected(waiter, transport)
        except BaseException:
            # the exception's traceback holds this frame: no cycle through the waiter
            waiter = transport = protocol = ssl_protocol = None
            raise
        return transport, protocol

    async def create_unix_connection(self, protocol_factory: Callable[[], Any],
                                     path: Any = None, *, ssl: Any = None, sock: Any = None,
                                     server_hostname: str | None = None,
                                     ssl_handshake_timeout: float | None = None,
                                     ssl_shutdown_timeout: float | None = None
                                     ) -> tuple[Any, Any]:
        """Connect to the Unix socket ``path`` (or wrap ``sock``)."""
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            _check_ssl_args(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def connect_accepted_socket(self, protocol_factory: Callable[[], Any], sock: Any, *,
                                      ssl: Any = None,
                                      ssl_handshake_timeout: float | None = None,
                                      ssl_shutdown_timeout: float | None = None
                                      ) -> tuple[Any, Any]:
        """Wrap a connection accepted outside asyncio (the server side of TLS if ``ssl``)."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        _check_ssl_args(ssl, None, ssl_handshake_timeout, ssl_shutdown_timeout)
        _check_ssl_socket(sock)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, "", server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def start_tls(self, transport: Any, protocol: Any, sslcontext: Any, *,
                        server_side: bool = False, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> Any:
        """Upgrade ``transport`` to TLS; returns the new (TLS) transport."""
        if _ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, _ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                            f"got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = _ssl_protocol(self, protocol, sslcontext, waiter, server_side,
                                     server_hostname, ssl_handshake_timeout,
                                     ssl_shutdown_timeout, call_connection_made=False)
        # pause first: no data may reach the TLS protocol before its connection_made()
        transport.pause_reading()
        if server_side:
            _hand_over_stream_buffer(protocol, ssl_protocol)
        transport.set_protocol(ssl_protocol)
        conmade = self.call_soon(ssl_protocol.connection_made,
                                 transport)
        resume = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade.cancel()
            resume.cancel()
            # the exception's traceback holds this frame and the waiter holds the exception:
            # no cycle keeping the transports alive
            waiter = transport = protocol = ssl_protocol = conmade = resume = None
            raise
        return ssl_protocol._app_transport

    # ---- servers

    async def _create_server_getaddrinfo(self, host: Any, port: Any, family: int,
                                         flags: int) -> list[Any]:
        return await self._ensure_resolved((host, port), family=family,
                                           type=socket.SOCK_STREAM, flags=flags)

    async def create_server(self, protocol_factory: Callable[[], Any], host: Any = None,
                            port: Any = None, *, family: int = socket.AF_UNSPEC,
                            flags: int = socket.AI_PASSIVE, sock: Any = None,
                            backlog: int = 100, ssl: Any = None,
                            reuse_address: bool | None = None,
                            reuse_port: bool | None = None,
                            keep_alive: bool | None = None,
                            ssl_handshake_timeout: float | None = None,
                            ssl_shutdown_timeout: float | None = None,
                            start_serving: bool = True) -> Server:
        """A TCP server on ``host`` (a name, an address, a sequence of them, or all
        interfaces) and ``port``, or on the listening ``sock``."""
        _check_server_ssl(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            _check_ssl_socket(sock)
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            hosts: Iterable[Any]
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            fs = [self._create_server_getaddrinfo(h, port, family, flags) for h in hosts]
            infos = set(itertools.chain.from_iterable(await tasks.gather(*fs)))
            sockets: list[socket.socket] = []
            completed = False
            try:
                for af, socktype, proto, _, sa in infos:
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except OSError:
                        if self.get_debug():
                            _logger().warning("create_server() failed to create "
                                              "socket.socket(%r, %r, %r)", af, socktype,
                                              proto, exc_info=True)
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        _set_reuseport(sock)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        msg = (f"error while attempting to bind on address {sa!r}: "
                               f"{(err.strerror or '').lower()}")
                        if err.errno == errno.EADDRNOTAVAIL:
                            sockets.pop()
                            sock.close()
                            if self.get_debug():
                                _logger().warning(msg)
                            continue
                        raise OSError(err.errno, msg) from None
                if not sockets:
                    raise OSError("could not bind on any address out of "
                                  f"{[info[4] for info in infos]!r}")
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]
        for s in sockets:
            s.setblocking(False)
        server = Server(self, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout,
                        ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)  # the listening sockets' readers are registered by now
        if self.get_debug():
            _logger().info("%r is serving", server)
        return server

    async def create_unix_server(self, protocol_factory: Callable[[], Any], path: Any = None,
                                 *, sock: Any = None, backlog: int = 100, ssl: Any = None,
                                 ssl_handshake_timeout: float | None = None,
                                 ssl_shutdown_timeout: float | None = None,
                                 start_serving: bool = True,
                                 cleanup_socket: bool = _CLEANUP_UNIX_SOCKET) -> Server:
        """A server on the Unix socket ``path`` (a stale socket file there is replaced), or on
        the listening ``sock``.  With ``cleanup_socket``, closing it removes the file (the
        default from Python 3.13, as asyncio's; before, the file stays)."""
        _check_server_ssl(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        unlink: list[tuple[str, int]] = []
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _remove_stale_unix_socket(path)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE,
                                  f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        if cleanup_socket:
            name = sock.getsockname()
            if isinstance(name, (str, bytes)) and name and name[0] not in (0, "\x00"):
                try:
                    unlink.append((os.fsdecode(name), os.stat(name).st_ino))
                except OSError:
                    pass
        sock.setblocking(False)
        server = Server(self, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout,
                        ssl_shutdown_timeout, unlink)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    def _start_serving(self, protocol_factory: Callable[[], Any], sock: socket.socket,
                       sslcontext: Any = None, server: Server | None = None,
                       backlog: int = 100, ssl_handshake_timeout: float | None = None,
                       ssl_shutdown_timeout: float | None = None) -> None:
        self._add_reader(sock.fileno(), self._accept_connection,
                         (protocol_factory, sock, sslcontext, server, backlog,
                          ssl_handshake_timeout, ssl_shutdown_timeout))

    def _stop_serving(self, sock: socket.socket) -> None:
        self._remove_reader(sock.fileno())
        sock.close()

    def _accept_connection(self, protocol_factory: Callable[[], Any], sock: socket.socket,
                           sslcontext: Any, server: Server | None, backlog: int,
                           ssl_handshake_timeout: float | None,
                           ssl_shutdown_timeout: float | None) -> None:
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing more to accept now
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                self.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
                # stop accepting for a while: the loop would spin on the readable socket
                self._remove_reader(sock.fileno())
                self.call_later(_ACCEPT_RETRY_DELAY,
                                self._start_serving, protocol_factory, sock, sslcontext,
                                server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout)
                return
            self._accept_connection2(protocol_factory, conn, {"peername": addr}, sslcontext,
                                     server, ssl_handshake_timeout, ssl_shutdown_timeout)

    def _accept_connection2(self, protocol_factory: Callable[[], Any], conn: socket.socket,
                            extra: dict[str, Any], sslcontext: Any, server: Server | None,
                            ssl_handshake_timeout: float | None,
                            ssl_shutdown_timeout: float | None) -> None:
        try:
            protocol = protocol_factory()
            if sslcontext:
                waiter = self.create_future()
                ssl_protocol = _ssl_protocol(self, protocol, sslcontext, waiter, True, None,
                                             ssl_handshake_timeout, ssl_shutdown_timeout)
                self._make_socket_transport(
                    conn, ssl_protocol, None, extra, server)
                waiter.add_done_callback(_retrieve_exception)
            else:
                self._make_socket_transport(
                    conn, protocol, None, extra, server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            conn.close()
            self.call_exception_handler({
                "message": "Error on transport creation for incoming connection",
                "exception": exc,
            })

    # ---- socket operations on non-blocking sockets

    def _sock_read_done(self, fd: int, fut: Any, handle: Any = None) -> None:
        if handle is None or not handle.cancelled():
            self.remove_reader(fd)
    def _sock_write_done(self, fd: int, fut: Any, handle: Any = None) -> None:
        if handle is None or not handle.cancelled():
            self.remove_writer(fd)
    def _wait_readable(self, sock: Any, callback: Callable[..., Any], fut: Any,
                       *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, callback, (fut, sock) + args)
        fut.add_done_callback(functools.partial(self._sock_read_done, fd, handle=handle))

    def _wait_writable(self, sock: Any, callback: Callable[..., Any], fut: Any,
                       *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, callback, (fut, sock) + args)
        fut.add_done_callback(functools.partial(self._sock_write_done, fd, handle=handle))

    async def _sock_io(self, wait: Callable[..., None], sock: Any, method: str,
                       *args: Any) -> Any:
        """``sock.<method>(*args)`` now, or once ``wait`` (``_wait_readable`` /
        ``_wait_writable``) says the socket is ready if it would have blocked."""
        self._sock_checks(sock)
        try:
            return getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        wait(sock, _sock_call, fut, method, *args)
        return await fut

    def _sock_checks(self, sock: Any) -> None:
        _check_ssl_socket(sock)
        _check_nonblocking(sock)

    async def sock_recv(self, sock: Any, n: int) -> bytes:
        """Receive up to ``n`` bytes from the non-blocking ``sock``."""
        result: bytes = await self._sock_io(self._wait_readable, sock, "recv", n)
        return result

    async def sock_recv_into(self, sock: Any, buf: Any) -> int:
        """Receive into ``buf``; the number of bytes received."""
        result: int = await self._sock_io(self._wait_readable, sock, "recv_into", buf)
        return result

    async def sock_recvfrom(self, sock: Any, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        result: tuple[bytes, Any] = await self._sock_io(self._wait_readable, sock, "recvfrom",
                                                        bufsize)
        return result

    async def sock_recvfrom_into(self, sock: Any, buf: Any, nbytes: int = 0) -> tuple[int, Any]:
        """Receive a datagram into ``buf`` (at most ``nbytes``): ``(nbytes, address)``."""
        self._sock_checks(sock)  # before len(buf): asyncio's order of errors
        if not nbytes:
            nbytes = len(buf)
        result: tuple[int, Any] = await self._sock_io(self._wait_readable, sock,
                                                      "recvfrom_into", buf, nbytes)
        return result

    async def sock_sendall(self, sock: Any, data: Any) -> None:
        """Send all of ``data``, waiting for the socket to be writable as needed."""
        self._sock_checks(sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        self._wait_writable(sock, _sock_sendall_cb, fut, memoryview(data), [n])
        return await fut  # type: ignore[no-any-return]

    async def sock_sendto(self, sock: Any, data: Any, address: Any) -> int:
        """Send a datagram to ``address``; the number of bytes sent."""
        result: int = await self._sock_io(self._wait_writable, sock, "sendto", data, address)
        return result

    async def sock_connect(self, sock: Any, address: Any) -> None:
        """Connect the non-blocking ``sock`` to ``address`` (resolved first for IP)."""
        self._sock_checks(sock)
        if sock.family == socket.AF_INET or (_HAS_IPV6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(address, family=sock.family,
                                                   type=sock.type, proto=sock.proto)
            address = resolved[0][4]
        fut = self.create_future()
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            self._wait_writable(sock, _sock_connect_cb, fut, address)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        try:
            return await fut  # type: ignore[no-any-return]
        finally:
            fut = None  # no reference cycle through the exception

    async def sock_accept(self, sock: Any) -> tuple[socket.socket, Any]:
        """Accept a connection: ``(conn, address)``, ``conn`` non-blocking."""
        self._sock_checks(sock)
        fut = self.create_future()
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except (BlockingIOError, InterruptedError):
            self._wait_readable(sock, _sock_accept_cb, fut)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result((conn, address))
        return await fut  # type: ignore[no-any-return]


def _exception_group(message: str, errors: list[OSError]) -> BaseException:
    cls = getattr(builtins, "ExceptionGroup", None)
    if cls is None:  # Python 3.10: no exception groups
        return OSError(f"{message}: " + ", ".join(str(e) for e in errors))
    return cls(message, errors)  # type: ignore[no-any-return]


def _retrieve_exception(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()  # a failed TLS handshake is the protocol's business


def _sock_call(fut: Any, sock: Any, method: str, *args: Any) -> None:
    """A reader/writer callback: retry ``sock.<method>(*args)`` now that it may succeed."""
    if fut.done():
        return
    try:
        result = getattr(sock, method)(*args)
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _sock_sendall_cb(fut: Any, sock: Any, view: memoryview, pos: list[int]) -> None:
    if fut.done():
        return
    start = pos[0]
    try:
        n = sock.send(view[start:])
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        return
    start += n
    if start == len(view):
        fut.set_result(None)
    else:
        pos[0] = start


def _sock_connect_cb(fut: Any, sock: Any, address: Any) -> None:
    if fut.done():
        return
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, f"Connect call failed {address}")
    except (BlockingIOError, InterruptedError):
        pass  # not connected yet: a spurious wake-up
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(None)
    finally:
        fut = None  # the exception's traceback holds this frame: no cycle through fut


def _sock_accept_cb(fut: Any, sock: Any) -> None:
    if fut.done():
        return
    try:
        conn, address = sock.accept()
        conn.setblocking(False)
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result((conn, address))


MIXINS: tuple[Any, ...] = (NetworkMixin,)
