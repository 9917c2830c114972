# The asyncio loop's datagram transport (UDP and Unix datagram sockets), compiled; included by
# _core.pyx after _cy/pipes.pxi.  The pure-Python twin is qloop/_py/dgram.py.
#
# The transport is its socket's C fd owner in the AioContext.  For IPv4/IPv6 sockets the read
# path is recvfrom(2) into the stream transports' spare buffer and the write path
# sendto(2)/send(2), called here with no Python socket method: a readiness event receives up
# to 32 datagrams, each one datagram_received call.  Addresses are converted both ways in C,
# and the last peer is cached: a datagram from the same peer reuses its address tuple, and
# sendto() with that tuple (the echo pattern) reuses its sockaddr.  Other families (Unix
# datagram sockets) use the socket's Python methods.  sendto() buffers only while the socket
# would block.

from cpython.unicode cimport PyUnicode_FromString
from libc.string cimport memcmp
from libc.stdint cimport uint16_t

import collections as _collections

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    ssize_t c_recvfrom "recvfrom"(int fd, void *buf, size_t n, int flags, sockaddr *addr,
                                  socklen_t *addrlen)
    ssize_t c_sendto "sendto"(int fd, const void *buf, size_t n, int flags,
                              const sockaddr *addr, socklen_t addrlen)
    enum:
        AF_INET
        AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t htons(uint16_t v)
    uint16_t ntohs(uint16_t v)
    uint32_t htonl(uint32_t v)
    uint32_t ntohl(uint32_t v)

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    int inet_pton(int af, const char *src, void *dst)

cdef enum:
    DGRAM_ROUNDS = 32           # datagrams per readiness event, at most
    DGRAM_HOST_MAX = 64         # room for any numeric IPv6 address and its NUL
    DGRAM_SEND_OK = 0
    DGRAM_SEND_BLOCKED = 1
    DGRAM_SEND_FAILED = 2

cdef Py_ssize_t _DGRAM_HEADER = _transport_support.DGRAM_HEADER_SIZE
cdef object _deque = _collections.deque


cdef object _inet_address(sockaddr_storage *ss, socklen_t sslen):
    """The address tuple Python's socket module gives for an IPv4/IPv6 sockaddr."""
    cdef char host[DGRAM_HOST_MAX]
    cdef sockaddr_in *sin
    cdef sockaddr_in6 *sin6
    if ss.ss_family == AF_INET:
        sin = <sockaddr_in *>ss
        if inet_ntop(AF_INET, &sin.sin_addr, host, DGRAM_HOST_MAX) == NULL:
            raise _os_error(errno)
        return (PyUnicode_FromString(host), ntohs(sin.sin_port))
    if ss.ss_family == AF_INET6:
        sin6 = <sockaddr_in6 *>ss
        if inet_ntop(AF_INET6, &sin6.sin6_addr, host, DGRAM_HOST_MAX) == NULL:
            raise _os_error(errno)
        return (PyUnicode_FromString(host), ntohs(sin6.sin6_port),
                ntohl(sin6.sin6_flowinfo), sin6.sin6_scope_id)
    return None


cdef bint _parse_inet_address(int family, object addr, sockaddr_storage *ss,
                              socklen_t *sslen) except -1:
    """Fill ``ss`` from a numeric ``(host, port[, flowinfo, scope_id])`` tuple; False when
    ``addr`` is anything else (a name, '', '<broadcast>', a bad value: the socket's own
    sendto() then resolves it or raises what Python raises)."""
    cdef sockaddr_in *sin
    cdef sockaddr_in6 *sin6
    cdef Py_ssize_t n
    cdef long port
    cdef unsigned long flowinfo = 0, scope_id = 0
    if type(addr) is not tuple:
        return False
    n = len(<tuple>addr)
    host = (<tuple>addr)[0] if n else None
    if type(host) is not str or not (<str>host).isascii():
        return False
    if family == AF_INET:
        if n != 2:
            return False
        pobj = (<tuple>addr)[1]
        if type(pobj) is not int or not 0 <= pobj <= 65535:
            return False
        port = pobj
        memset(ss, 0, sizeof(sockaddr_in))
        sin = <sockaddr_in *>ss
        if inet_pton(AF_INET, (<str>host).encode("ascii"), &sin.sin_addr) != 1:
            return False
        sin.sin_family = AF_INET
        sin.sin_port = htons(<uint16_t>port)
        sslen[0] = sizeof(sockaddr_in)
        return True
    if family == AF_INET6:
        if not 2 <= n <= 4:
            return False
        pobj = (<tuple>addr)[1]
        if type(pobj) is not int or not 0 <= pobj <= 65535:
            return False
        port = pobj
        if n > 2:
            if type((<tuple>addr)[2]) is not int or not 0 <= (<tuple>addr)[2] <= 0xfffff:
                return False
            flowinfo = (<tuple>addr)[2]
        if n > 3:
            if type((<tuple>addr)[3]) is not int or not 0 <= (<tuple>addr)[3] <= 0xffffffff:
                return False
            scope_id = (<tuple>addr)[3]
        memset(ss, 0, sizeof(sockaddr_in6))
        sin6 = <sockaddr_in6 *>ss
        if inet_pton(AF_INET6, (<str>host).encode("ascii"), &sin6.sin6_addr) != 1:
            return False
        sin6.sin6_family = AF_INET6
        sin6.sin6_port = htons(<uint16_t>port)
        sin6.sin6_flowinfo = htonl(<uint32_t>flowinfo)
        sin6.sin6_scope_id = <uint32_t>scope_id
        sslen[0] = sizeof(sockaddr_in6)
        return True
    return False


@cython.auto_pickle(False)
cdef class _DatagramTransport(_ReadableTransport):
    """A datagram socket transport (asyncio's DatagramTransport API, with flow control);
    created by the event loop."""

    cdef int _family
    cdef bint _inet                 # IPv4/IPv6: addresses converted here
    cdef object _datagram_received
    cdef object _address            # the remote_addr given, or None
    cdef bint _connected            # the socket has a peer: send(), not sendto()
    cdef object _buffer             # deque of (bytes, addr); _wsize counts 8 more per datagram
    cdef Py_ssize_t _nbuf
    cdef object _send_err           # what the last failed send raised
    # the last peer received from: its sockaddr and address tuple
    cdef sockaddr_storage _rss
    cdef socklen_t _rlen
    cdef object _raddr
    # the last address tuple sent to that was not _raddr, and its sockaddr
    cdef sockaddr_storage _sss
    cdef socklen_t _slen
    cdef object _saddr

    cdef int _clear_buffer(self) except -1:
        self._buffer.clear()
        self._nbuf = 0
        self._wsize = 0
        return 0

    cdef int _forget_protocol(self) except -1:
        self._datagram_received = None
        self._raddr = self._saddr = None
        self._rlen = self._slen = 0
        return 0

    def set_protocol(self, protocol):
        self._datagram_received = protocol.datagram_received
        _TransportBase.set_protocol(self, protocol)

    @property
    def __class__(self):
        return _DatagramTransportShadow  # so isinstance(t, asyncio.DatagramTransport) holds

    # ---- the read path

    cdef int _on_read(self) except -1:
        cdef sockaddr_storage ss
        cdef socklen_t sslen = sizeof(ss)
        cdef ssize_t n
        cdef int err = 0, rounds = DGRAM_ROUNDS
        cdef _LoopBase loop = self._loop
        if self._conn_lost:
            return 0
        if not self._inet:
            return self._on_read_py()
        n = c_recvfrom(self._fd, _spare_buffer(), READ_MAX, 0, <sockaddr *>&ss, &sslen)
        if n < 0:
            err = errno
            if err == EAGAIN or err == EINTR:
                return 0
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            while True:
                if n < 0:
                    self._error_received(_os_error(err))
                    return 0
                data = _take_read(n)
                if sslen == self._rlen and memcmp(&ss, &self._rss, sslen) == 0:
                    addr = self._raddr
                else:
                    addr = _inet_address(&ss, sslen)
                    memcpy(&self._rss, &ss, sslen)
                    self._rlen = sslen
                    self._raddr = addr
                try:
                    self._datagram_received(data, addr)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(self, loop, self._protocol, exc, "datagram_received")
                rounds -= 1
                if not rounds or self._conn_lost or not self._reg_read:
                    return 0
                sslen = sizeof(ss)
                n = c_recvfrom(self._fd, _spare_buffer(), READ_MAX, 0, <sockaddr *>&ss,
                               &sslen)
                if n < 0:
                    err = errno
                    if err == EAGAIN or err == EINTR:
                        return 0
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)

    cdef int _on_read_py(self) except -1:
        # a family whose addresses the socket module converts (Unix datagram sockets)
        cdef int rounds = DGRAM_ROUNDS
        cdef _LoopBase loop = self._loop
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            while rounds:
                rounds -= 1
                try:
                    data, addr = self._sock.recvfrom(READ_MAX)
                except (BlockingIOError, InterruptedError):
                    return 0
                except OSError as exc:
                    self._error_received(exc)
                    return 0
                try:
                    self._datagram_received(data, addr)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(self, loop, self._protocol, exc, "datagram_received")
                if self._conn_lost or not self._reg_read:
                    return 0
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0

    cdef int _error_received(self, object exc) except -1:
        try:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            _callback_failed(self, self._loop, self._protocol, err, "error_received")
        return 0

    # ---- the write path

    cdef int _send_one(self, const char *ptr, Py_ssize_t size, object addr) except -1:
        """Send one datagram now: DGRAM_SEND_OK, DGRAM_SEND_BLOCKED, or DGRAM_SEND_FAILED
        with the exception in ``_send_err``."""
        cdef ssize_t n
        cdef int err
        if self._connected:
            n = c_send(self._fd, ptr, size, 0)
        elif not self._inet:
            return self._send_py(ptr, size, addr)
        elif addr is self._raddr and self._rlen:
            n = c_sendto(self._fd, ptr, size, 0, <sockaddr *>&self._rss, self._rlen)
        elif addr is self._saddr and self._slen:
            n = c_sendto(self._fd, ptr, size, 0, <sockaddr *>&self._sss, self._slen)
        elif _parse_inet_address(self._family, addr, &self._sss, &self._slen):
            self._saddr = addr
            n = c_sendto(self._fd, ptr, size, 0, <sockaddr *>&self._sss, self._slen)
        else:
            self._slen = 0
            self._saddr = None
            return self._send_py(ptr, size, addr)
        if n >= 0:
            return DGRAM_SEND_OK
        err = errno
        if err == EAGAIN or err == EINTR:
            return DGRAM_SEND_BLOCKED
        self._send_err = _os_error(err)
        return DGRAM_SEND_FAILED

    cdef int _send_py(self, const char *ptr, Py_ssize_t size, object addr) except -1:
        try:
            self._sock.sendto(PyBytes_FromStringAndSize(ptr, size), addr)
        except (BlockingIOError, InterruptedError):
            return DGRAM_SEND_BLOCKED
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._send_err = exc
            return DGRAM_SEND_FAILED
        return DGRAM_SEND_OK

    def sendto(self, data, addr=None):
        """Send ``data`` (bytes-like) to ``addr`` (None: the connected peer) now, or buffer
        it while the socket would block.  An OSError goes to ``error_received()``."""
        cdef Py_buffer view
        cdef const char *ptr
        cdef Py_ssize_t size
        cdef int r
        cdef bint have_view = False
        if PyBytes_CheckExact(data):
            ptr = PyBytes_AS_STRING(data)
            size = PyBytes_GET_SIZE(data)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            have_view = True
            ptr = <const char *>view.buf
            size = view.len
        else:
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        try:
            address = self._address
            if address is not None:
                if addr is not None and addr is not address and addr != address:
                    raise ValueError(f"Invalid address: must be None or {address}")
                addr = address
            # after close(): ignored on a connected socket, as asyncio does; an unconnected one
            # still sends until connection_lost() closes it (asyncio's then fails on it)
            if self._conn_lost and (address is not None or self._sock is None):
                if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                    _transport_support.lost_write_warning()
                self._conn_lost += 1
                return
            if self._nbuf == 0:
                r = self._send_one(ptr, size, addr)
                if r == DGRAM_SEND_OK:
                    return
                if r == DGRAM_SEND_FAILED:
                    exc = self._send_err
                    self._send_err = None
                    if isinstance(exc, OSError):
                        self._protocol.error_received(exc)
                    else:
                        self._fatal_error(exc, "Fatal write error on datagram transport")
                    return
                self._register(self._reg_read, True)
            buffered = data if PyBytes_CheckExact(data) else PyBytes_FromStringAndSize(ptr, size)
            self._buffer.append((buffered, addr))
            self._nbuf += 1
            self._wsize += size + _DGRAM_HEADER
            self._maybe_pause_protocol()
        finally:
            if have_view:
                PyBuffer_Release(&view)

    cdef int _on_write(self) except -1:
        cdef int r
        cdef _LoopBase loop = self._loop
        if self._conn_lost:
            return 0
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            while self._nbuf:
                item = self._buffer[0]
                data = (<tuple>item)[0]
                r = self._send_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                                   (<tuple>item)[1])
                if r == DGRAM_SEND_BLOCKED:
                    return 0  # the rest when the socket is writable again
                self._buffer.popleft()
                self._nbuf -= 1
                self._wsize -= PyBytes_GET_SIZE(data) + _DGRAM_HEADER
                if r == DGRAM_SEND_FAILED:
                    exc = self._send_err
                    self._send_err = None
                    if isinstance(exc, OSError):
                        self._error_received(exc)
                    else:
                        self._fatal_error(exc, "Fatal write error on datagram transport")
                    return 0
            self._maybe_resume_protocol()  # may send more
            if self._nbuf == 0:
                self._register(self._reg_read, False)
                if self._closing:
                    self._call_connection_lost(None)
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0


_DatagramTransportShadow = _transport_support.shadow_class(
    "qloop._core", "_DatagramTransport",
    type("_DatagramTransportBase", (_asyncio.Transport, _asyncio.DatagramTransport),
         {"__slots__": ()}))


def _make_datagram_transport(_LoopBase loop, sock, protocol, address=None, waiter=None,
                             extra=None):
    """A datagram transport on ``sock`` (non-blocking) for ``protocol``, sending to
    ``address`` by default; schedules ``connection_made``, then reading, then ``waiter``'s
    result (asyncio's order)."""
    cdef _DatagramTransport t = _DatagramTransport.__new__(_DatagramTransport)
    t._buffer = _deque()
    t._setup(loop, sock, protocol, _transport_support.socket_extra(sock, extra))
    t._family = sock.family
    t._inet = t._family == AF_INET or t._family == AF_INET6
    t._address = address
    t._connected = bool(t._extra["peername"])
    loop.call_soon(protocol.connection_made, t)
    loop.call_soon(t._start_reading)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
