# The asyncio loop's stream transports (TCP and Unix sockets), compiled; included by _core.pyx
# after _cy/loop.pxi.  The pure-Python twin is qloop/_py/transports.py.
#
# The transport is its socket's C fd owner in the AioContext, so an event reaches it without a
# Python call.  The read path is recv(2) into a spare bytes object (or straight into a
# BufferedProtocol's buffer), then one call of data_received/buffer_updated.  write() tries
# send(2) at once and buffers only the rest; the buffer (a list of bytes) is flushed with
# sendmsg(2), several buffers per call, when the socket is writable.  Sends use MSG_NOSIGNAL.

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.exc cimport PyErr_Clear
from libc.string cimport memset, strerror

import socket as _socket_mod
import warnings as _warnings
from asyncio import constants as _aio_constants
from asyncio import protocols as _aio_protocols

from qloop._aio import transport_support as _transport_support


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    struct msghdr:
        iovec *msg_iov
        size_t msg_iovlen
    ssize_t c_recv "recv"(int fd, void *buf, size_t n, int flags)
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags)
    ssize_t c_sendmsg "sendmsg"(int fd, const msghdr *msg, int flags)
    int c_shutdown "shutdown"(int fd, int how)
    enum:
        MSG_NOSIGNAL
        SHUT_WR

# bytes per recv (asyncio's max_size): the constant both twins read
cdef Py_ssize_t READ_MAX = _transport_support.READ_MAX

cdef enum:
    WRITE_IOV_MAX = 64          # buffers per sendmsg
    READ_ROUNDS = 16            # reads per readiness event while they fill the buffer

# Reads go into a spare bytes object of READ_MAX bytes: a read that fills it is handed over as
# it is (no copy), a shorter one is copied out and the spare kept.  The GIL is held from recv
# to the hand-over, so one spare serves every transport.
cdef PyObject *_spare = NULL

cdef extern from "Python.h":
    PyObject *_bytes_new "PyBytes_FromStringAndSize"(const char *v, Py_ssize_t n) except NULL
    char *_bytes_ptr "PyBytes_AS_STRING"(PyObject *o)


cdef inline char *_spare_buffer() except NULL:
    global _spare
    if _spare == NULL:
        _spare = _bytes_new(NULL, READ_MAX)
    return _bytes_ptr(_spare)


cdef inline object _take_read(Py_ssize_t n):
    """The first ``n`` bytes read into the spare, as a bytes object."""
    global _spare
    cdef PyObject *p
    if n < READ_MAX:
        return PyBytes_FromStringAndSize(_bytes_ptr(_spare), n)
    p = _spare
    _spare = NULL
    data = <object>p
    Py_DECREF(data)  # the spare's reference passes to data
    return data
cdef object _BufferedProtocol = _aio_protocols.BufferedProtocol
cdef object _set_result_unless_cancelled = _helpers._set_result_unless_cancelled
cdef object _fatal_error_report = _transport_support.fatal_error
cdef object _callback_failed = _transport_support.callback_failed
cdef object _aio_log_debug = _asyncio.log.logger.debug
cdef object _protocol_failed = _transport_support.protocol_failed


# A transport's protocol calls from its fd events run in the transport's context: a copy of the
# one current when it was set up (asyncio runs its transports' reader and writer handles in the
# context current when it registered them).
cdef inline bint _ctx_enter(object ctx) noexcept:
    """Enter ``ctx``; False when it is already entered (a nested dispatch of the same transport
    runs in it as it is)."""
    if _context_enter(<PyObject *>ctx) < 0:
        PyErr_Clear()
        return False
    return True


cdef inline void _ctx_exit(object ctx, bint entered) noexcept:
    if entered and _context_exit(<PyObject *>ctx) < 0:
        PyErr_Clear()


cdef object _os_error(int err):
    return OSError(err, strerror(err).decode("utf-8", "replace"))


@cython.auto_pickle(False)
cdef class _TransportBase(_FdOwner):
    """What qloop's transports share: the loop, the socket or pipe (``_sock``), registration with
    the context, flow control, closing."""

    cdef _LoopBase _loop
    cdef object _sock
    cdef int _fd
    cdef object _protocol
    cdef object _server
    cdef object _context            # a copy of the context current at setup (see _ctx_enter)
    cdef dict _extra
    cdef bint _closing
    cdef bint _reg_read             # what is registered with the context
    cdef bint _reg_write
    cdef readonly bint _protocol_paused  # pause_writing() was called (read by sendfile)
    cdef bint _protocol_connected
    cdef int _conn_lost
    cdef Py_ssize_t _wsize          # bytes waiting to be sent
    cdef Py_ssize_t _high
    cdef Py_ssize_t _low
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError("transports are created by the event loop")

    cdef int _setup(self, _LoopBase loop, object sock, object protocol, dict extra) except -1:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._extra = extra
        self._context = PyContext_CopyCurrent()
        self._high = _transport_support.HIGH_WATER
        self._low = _transport_support.HIGH_WATER // 4
        self.set_protocol(protocol)
        loop._transports[self._fd] = self
        return 0

    # ---- registration with the context

    cdef int _register(self, bint on_read, bint on_write) except -1:
        cdef _LoopBase loop = self._loop
        if on_read == self._reg_read and on_write == self._reg_write:
            return 0
        if loop is not None and not loop._ctx._closed:
            loop._ctx._set_fd_owner(self._fd, self, on_read, on_write)
        self._reg_read = on_read
        self._reg_write = on_write
        return 0

    cdef int _clear_buffer(self) except -1:
        self._wsize = 0
        return 0

    cdef int _forget_protocol(self) except -1:
        return 0

    # ---- flow control

    cdef int _maybe_pause_protocol(self) except -1:
        if self._wsize <= self._high or self._protocol_paused:
            return 0
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _protocol_failed(self, self._loop, self._protocol, exc, "pause_writing")
        return 0

    cdef int _maybe_resume_protocol(self) except -1:
        if self._protocol_paused and self._wsize <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _protocol_failed(self, self._loop, self._protocol, exc, "resume_writing")
        return 0

    def set_write_buffer_limits(self, high=None, low=None):
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

    def get_write_buffer_limits(self):
        return (self._low, self._high)

    def get_write_buffer_size(self):
        return self._wsize

    # ---- closing

    def is_closing(self):
        return self._closing

    def close(self):
        """Close after the buffered data is sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._register(False, self._reg_write)
        if not self._wsize:
            self._conn_lost += 1
            self._register(False, False)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self):
        """Close now, dropping buffered data; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._wsize:
            self._clear_buffer()
        self._register(False, False)
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _fatal_error(self, exc, message="Fatal error on transport"):
        _fatal_error_report(self, self._loop, self._protocol, exc, message)
        self._force_close(exc)

    def _call_connection_lost(self, exc):
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

    def get_extra_info(self, name, default=None):
        return self._extra.get(name, default)

    def set_protocol(self, protocol):
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self):
        return self._protocol

    def __repr__(self):
        return _transport_support.transport_repr(
            type(self).__name__, self._fd, self._sock is None, self._closing,
            self._reg_read, self._reg_write, self._wsize)

    def __del__(self):
        if self._sock is not None:
            _warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()
            self._sock = None


@cython.auto_pickle(False)
cdef class _ReadableTransport(_TransportBase):
    """A transport that reads: reading starts once ``connection_made`` was called, and
    ``pause_reading``/``resume_reading`` (sockets, read pipes)."""

    cdef bint _paused               # pause_reading() was called

    def _start_reading(self):
        if not self._closing and not self._paused:
            self._register(True, self._reg_write)

    def is_reading(self):
        return not self._closing and not self._paused

    def pause_reading(self):
        """Stop calling the protocol with data until ``resume_reading()``."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._register(False, self._reg_write)
        if self._loop._debug:
            _aio_log_debug("%r pauses reading", self)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self._register(True, self._reg_write)
        if self._loop._debug:
            _aio_log_debug("%r resumes reading", self)


@cython.auto_pickle(False)
cdef class _StreamTransport(_ReadableTransport):
    """A socket stream transport (asyncio's Transport API); created by the event loop."""

    cdef object _data_received      # protocol.data_received, or None for a BufferedProtocol
    cdef object _get_buffer
    cdef object _buffer_updated
    cdef bint _eof                  # write_eof() was called
    cdef list _wbuf                 # pending bytes; the first one from _wpos
    cdef Py_ssize_t _wpos
    cdef public object _empty_waiter

    _start_tls_compatible = True
    _sendfile_compatible = _aio_constants._SendfileMode.TRY_NATIVE  # loop.sendfile: os.sendfile

    def _make_empty_waiter(self):
        """A future done once the write buffer is empty (sendfile waits for it)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._wsize:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None

    def _call_connection_lost(self, exc):
        try:
            _TransportBase._call_connection_lost(self, exc)
        finally:
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    cdef int _clear_buffer(self) except -1:
        del self._wbuf[:]
        self._wsize = 0
        self._wpos = 0
        return 0

    cdef int _forget_protocol(self) except -1:
        self._data_received = self._get_buffer = self._buffer_updated = None
        return 0

    # ---- the read path

    cdef int _on_read(self) except -1:
        cdef ssize_t n
        cdef int err = 0, rounds = READ_ROUNDS
        cdef _LoopBase loop = self._loop
        if self._conn_lost:
            return 0
        if self._data_received is None:
            return self._read_into_buffer()
        n = c_recv(self._fd, _spare_buffer(), READ_MAX, 0)
        if n < 0:
            err = errno
            if err == EAGAIN or err == EINTR:
                return 0
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            while True:
                if n > 0:
                    data = _take_read(n)
                    try:
                        self._data_received(data)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._fatal_error(exc,
                                          "Fatal error: protocol.data_received() call failed.")
                        return 0
                    # drop our reference before the next recv allocates a spare: a protocol
                    # that kept nothing frees the block now, so the allocator hands the same
                    # (already mapped) memory back, instead of fresh pages to fault in
                    data = None
                    # a full buffer: more is likely waiting; read on (as libuv does) unless
                    # the protocol paused or closed the transport meanwhile
                    rounds -= 1
                    if n < READ_MAX or not rounds or self._conn_lost or not self._reg_read:
                        return 0
                    n = c_recv(self._fd, _spare_buffer(), READ_MAX, 0)
                    if n < 0:
                        err = errno
                        if err == EAGAIN or err == EINTR:
                            return 0
                elif n == 0:
                    self._read_eof()
                    return 0
                else:
                    self._fatal_error(_os_error(err), "Fatal read error on socket transport")
                    return 0
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)

    cdef int _read_into_buffer(self) except -1:
        cdef Py_buffer view
        cdef ssize_t n
        cdef int err = 0
        cdef _LoopBase loop = self._loop
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            try:
                buf = self._get_buffer(-1)
                try:
                    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
                except BufferError:
                    # the fallback's words, not CPython's generic "not writable"
                    raise BufferError("get_buffer() returned a read-only buffer") from None
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                return 0
            if view.len == 0:
                PyBuffer_Release(&view)
                self._fatal_error(RuntimeError("get_buffer() returned an empty buffer"),
                                  "Fatal error: protocol.get_buffer() call failed.")
                return 0
            n = c_recv(self._fd, view.buf, view.len, 0)
            if n < 0:
                err = errno
            PyBuffer_Release(&view)
            if n < 0:
                if err != EAGAIN and err != EINTR:
                    self._fatal_error(_os_error(err), "Fatal read error on socket transport")
                return 0
            if n == 0:
                self._read_eof()
                return 0
            try:
                self._buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0

    cdef int _read_eof(self) except -1:
        if self._loop._debug:
            _aio_log_debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return 0
        if keep_open:
            self._register(False, self._reg_write)  # half-closed: keep writing
        else:
            self.close()
        return 0

    # ---- the write path

    def write(self, data):
        """Send ``data`` (bytes-like) now if the socket takes it; buffer the rest."""
        cdef Py_buffer view
        cdef const char *ptr
        cdef Py_ssize_t size
        cdef ssize_t n = 0
        cdef int err
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
            raise TypeError(f"{_transport_support.WRITE_TYPE_ERROR}, "
                            f"not {type(data).__name__!r}")
        try:
            if self._eof:
                raise RuntimeError("Cannot call write() after write_eof()")
            if self._empty_waiter is not None:
                raise RuntimeError("unable to write; sendfile is in progress")
            if size == 0:
                return
            if self._conn_lost:
                if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                    _transport_support.lost_write_warning()
                self._conn_lost += 1
                return
            if self._wsize == 0:
                n = c_send(self._fd, ptr, size, MSG_NOSIGNAL)
                if n < 0:
                    err = errno
                    if err != EAGAIN and err != EINTR:
                        self._fatal_error(_os_error(err), "Fatal write error on socket transport")
                        return
                    n = 0
                if n == size:
                    return
                self._register(self._reg_read, True)
            if n == 0 and PyBytes_CheckExact(data):
                self._wbuf.append(data)
            else:
                self._wbuf.append(PyBytes_FromStringAndSize(ptr + n, size - n))
            self._wsize += size - n
            self._maybe_pause_protocol()
        finally:
            if have_view:
                PyBuffer_Release(&view)

    def writelines(self, list_of_data):
        """Write every item of ``list_of_data`` (bytes-like objects), in order."""
        self.write(b"".join(list_of_data))

    cdef int _on_write(self) except -1:
        cdef iovec iov[WRITE_IOV_MAX]
        cdef msghdr msg
        cdef Py_ssize_t i, cnt
        cdef ssize_t sent
        cdef int err = 0
        cdef _LoopBase loop = self._loop
        cdef list wbuf = self._wbuf
        if self._conn_lost:
            return 0
        cnt = len(wbuf)
        if cnt > WRITE_IOV_MAX:
            cnt = WRITE_IOV_MAX
        for i in range(cnt):
            item = wbuf[i]
            iov[i].iov_base = PyBytes_AS_STRING(item)
            iov[i].iov_len = PyBytes_GET_SIZE(item)
        if cnt:
            iov[0].iov_base = <char *>iov[0].iov_base + self._wpos
            iov[0].iov_len -= self._wpos
        memset(&msg, 0, sizeof(msg))
        msg.msg_iov = iov
        msg.msg_iovlen = cnt
        sent = c_sendmsg(self._fd, &msg, MSG_NOSIGNAL) if cnt else 0
        if sent < 0:
            err = errno
            if err == EAGAIN or err == EINTR:
                return 0
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            if sent < 0:
                self._register(self._reg_read, False)
                del wbuf[:]
                self._wsize = 0
                self._wpos = 0
                exc = _os_error(err)
                self._fatal_error(exc, "Fatal write error on socket transport")
                if self._empty_waiter is not None:
                    self._empty_waiter.set_exception(exc)
                return 0
            self._consume(sent)
            self._maybe_resume_protocol()  # may write more
            if self._wsize == 0:
                self._register(self._reg_read, False)
                if self._empty_waiter is not None:
                    self._empty_waiter.set_result(None)
                if self._closing:
                    self._call_connection_lost(None)
                elif self._eof:
                    c_shutdown(self._fd, SHUT_WR)
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0

    cdef void _consume(self, Py_ssize_t n) noexcept:
        cdef list wbuf = self._wbuf
        cdef Py_ssize_t k = 0, left, nbuf = len(wbuf)
        self._wsize -= n
        while n > 0 and k < nbuf:
            left = PyBytes_GET_SIZE(wbuf[k]) - self._wpos
            if n >= left:
                n -= left
                self._wpos = 0
                k += 1
            else:
                self._wpos += n
                n = 0
        if k:
            del wbuf[:k]

    def write_eof(self):
        """Close the write side once the buffer is flushed (shutdown(SHUT_WR))."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._wsize:
            self._sock.shutdown(_socket_mod.SHUT_WR)

    def can_write_eof(self):
        return True

    def set_protocol(self, protocol):
        if isinstance(protocol, _BufferedProtocol):
            self._data_received = None
            self._get_buffer = protocol.get_buffer
            self._buffer_updated = protocol.buffer_updated
        else:
            self._data_received = protocol.data_received
            self._get_buffer = self._buffer_updated = None
        _TransportBase.set_protocol(self, protocol)

    @property
    def __class__(self):
        return _StreamTransportShadow  # so isinstance(t, asyncio.Transport) holds


_StreamTransportShadow = _transport_support.shadow_class("qloop._core", "_StreamTransport")


def _make_stream_transport(_LoopBase loop, sock, protocol, waiter=None, extra=None,
                           server=None):
    """A stream transport on ``sock`` (non-blocking, connected) for ``protocol``; schedules
    ``connection_made``, then reading, then ``waiter``'s result (asyncio's order)."""
    cdef _StreamTransport t = _StreamTransport.__new__(_StreamTransport)
    t._wbuf = []
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
