# The asyncio loop's pipe transports (connect_read_pipe / connect_write_pipe, and a
# subprocess's stdin/stdout/stderr), compiled; included by _core.pyx after
# _cy/transports.pxi, whose transport bases they share.  The pure-Python twin is
# qloop/_py/pipes.py.
#
# Each transport is its fd's C owner in the AioContext, so an event reaches it without a
# Python call.  The read path is read(2) into the spare buffer the stream transports read into
# (_cy/transports.pxi), then one data_received call; write() tries write(2) at once and
# buffers only the rest (a bytearray), flushed with write(2) when the fd is writable.  A write
# pipe that is a FIFO or a socket is also watched for reading: it becomes readable when the
# reader goes away, which closes the transport.  The pipe's file object is the base's
# ``_sock`` (``_pipe`` here, as asyncio names it).

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.errno cimport EIO

cdef object _pipe_repr = _transport_support.pipe_repr


@cython.auto_pickle(False)
cdef class _ReadPipeTransport(_ReadableTransport):
    """The read end of a pipe, FIFO, socket or character device (asyncio's ReadTransport
    API); created by the event loop."""

    cdef object _data_received
    cdef dict __dict__              # like asyncio's transports, instances take attributes

    @property
    def _pipe(self):
        return self._sock

    @_pipe.setter
    def _pipe(self, pipe):
        self._sock = pipe

    cdef int _forget_protocol(self) except -1:
        self._data_received = None
        return 0

    def set_protocol(self, protocol):
        self._data_received = protocol.data_received
        _TransportBase.set_protocol(self, protocol)

    @property
    def __class__(self):
        return _ReadPipeTransportShadow  # so isinstance(t, asyncio.ReadTransport) holds

    # ---- the read path

    cdef int _on_read(self) except -1:
        cdef ssize_t n
        cdef int err = 0
        cdef _LoopBase loop = self._loop
        n = read(self._fd, _spare_buffer(), READ_MAX)
        if n < 0:
            err = errno
            if err == EAGAIN or err == EINTR:
                return 0
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            if n > 0:
                data = _take_read(n)
                try:
                    self._data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _callback_failed(self, loop, self._protocol, exc, "data_received")
            elif n == 0:
                self._read_eof()
            else:
                self._fatal_error(_os_error(err), "Fatal read error on pipe transport")
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0

    cdef int _read_eof(self) except -1:
        cdef _LoopBase loop = self._loop
        if loop._debug:
            _transport_support.debug_log("info", "%r was closed by peer", self)
        self._closing = True
        self._conn_lost += 1
        self._register(False, False)
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)
        return 0

    # ---- closing: the base's (close() stops reading, connection_lost(None) follows)

    def _fatal_error(self, exc, message="Fatal error on pipe transport"):
        # EIO is how a pty's reader learns that the other side closed: not worth a report
        _fatal_error_report(self, self._loop, self._protocol, exc, message, EIO)
        self._force_close(exc)

    def __repr__(self):
        loop = self._loop
        return _pipe_repr(type(self).__name__, self._fd, self._sock is None, self._closing,
                          loop is not None and not loop._closed_flag, self._reg_read, None)


@cython.auto_pickle(False)
cdef class _WritePipeTransport(_TransportBase):
    """The write end of a pipe, FIFO, socket or character device (asyncio's WriteTransport
    API, with flow control); created by the event loop."""

    cdef bytearray _buffer          # what the pipe did not take yet (_wsize bytes)
    cdef dict __dict__

    @property
    def _pipe(self):
        return self._sock

    @_pipe.setter
    def _pipe(self, pipe):
        self._sock = pipe

    cdef int _clear_buffer(self) except -1:
        del self._buffer[:]
        self._wsize = 0
        return 0

    @property
    def __class__(self):
        return _WritePipeTransportShadow  # so isinstance(t, asyncio.WriteTransport) holds

    def _start_watching(self):
        if not self._closing:
            self._register(True, self._reg_write)

    # ---- the peer went away

    cdef int _on_read(self) except -1:
        cdef _LoopBase loop = self._loop
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            if loop._debug:
                _transport_support.debug_log("info", "%r was closed by peer", self)
            self._force_close(BrokenPipeError() if self._wsize else None)
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0

    # ---- the write path

    def write(self, data):
        """Write ``data`` (bytes-like) now if the pipe takes it; buffer the rest."""
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
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        try:
            if size == 0:
                return
            if self._conn_lost or self._closing:
                if self._conn_lost >= _transport_support.CONNLOST_LOG_THRESHOLD:
                    _transport_support.lost_pipe_write_warning()
                self._conn_lost += 1
                return
            if self._wsize == 0:
                n = write(self._fd, ptr, size)
                if n < 0:
                    err = errno
                    if err != EAGAIN and err != EINTR:
                        self._fatal_error(_os_error(err), "Fatal write error on pipe transport")
                        return
                    n = 0
                if n == size:
                    return
                self._register(self._reg_read, True)
            self._buffer += PyBytes_FromStringAndSize(ptr + n, size - n)
            self._wsize += size - n
            self._maybe_pause_protocol()
        finally:
            if have_view:
                PyBuffer_Release(&view)

    def writelines(self, list_of_data):
        """Write every item of ``list_of_data`` (bytes-like objects), in order."""
        self.write(b"".join(list_of_data))

    cdef int _on_write(self) except -1:
        cdef bytearray buf = self._buffer
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(buf)
        cdef ssize_t n
        cdef int err = 0
        cdef _LoopBase loop = self._loop
        if size == 0:
            return 0
        n = write(self._fd, PyByteArray_AS_STRING(buf), size)
        if n < 0:
            err = errno
            if err == EAGAIN or err == EINTR:
                return 0
        prev = loop._enter()
        cdef object ctx = self._context
        cdef bint entered = _ctx_enter(ctx)
        try:
            if n < 0:
                self._fatal_error(_os_error(err), "Fatal write error on pipe transport")
            elif n == size:
                del buf[:]
                self._wsize = 0
                self._register(self._reg_read, False)
                self._maybe_resume_protocol()  # may write more
                if self._closing and self._wsize == 0:
                    self._call_connection_lost(None)
            elif n > 0:
                del buf[:n]
                self._wsize -= n
        finally:
            _ctx_exit(ctx, entered)
            loop._leave(prev)
        return 0

    # ---- the read side: asyncio's write pipe transport is a full Transport whose read-side
    # methods raise NotImplementedError

    def is_reading(self):
        raise NotImplementedError

    def pause_reading(self):
        raise NotImplementedError

    def resume_reading(self):
        raise NotImplementedError

    def can_write_eof(self):
        return True

    def write_eof(self):
        """Close once the buffer is flushed; ``connection_lost(None)`` follows.  Unlike a
        socket's close(), the reader stays watched while the buffer drains."""
        if self._closing:
            return
        self._closing = True
        if self._wsize == 0:
            self._conn_lost += 1
            self._register(False, False)
            self._loop.call_soon(self._call_connection_lost, None)

    # ---- closing: the base's, but close() is write_eof() (all a write pipe needs)

    def close(self):
        """Close after the buffered data is written (``write_eof()``)."""
        if self._sock is not None and not self._closing:
            self.write_eof()

    def __repr__(self):
        loop = self._loop
        return _pipe_repr(type(self).__name__, self._fd, self._sock is None, self._closing,
                          loop is not None and not loop._closed_flag, self._reg_write, self._wsize)


_ReadPipeTransportShadow = _transport_support.shadow_class(
    "qloop._core", "_ReadPipeTransport", _asyncio.ReadTransport)
_WritePipeTransportShadow = _transport_support.shadow_class(
    "qloop._core", "_WritePipeTransport", _asyncio.WriteTransport)


def _make_read_pipe_transport(_LoopBase loop, pipe, protocol, waiter=None, extra=None):
    """A read transport on ``pipe`` (a pipe, FIFO, socket or character device; made
    non-blocking); schedules ``connection_made``, then reading, then ``waiter``'s result."""
    cdef _ReadPipeTransport t
    _transport_support.pipe_fd(pipe, False)
    t = _ReadPipeTransport.__new__(_ReadPipeTransport)
    t._setup(loop, pipe, protocol, _transport_support.pipe_extra(pipe, extra))
    loop.call_soon(protocol.connection_made, t)
    loop.call_soon(t._start_reading)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t


def _make_write_pipe_transport(_LoopBase loop, pipe, protocol, waiter=None, extra=None):
    """A write transport on ``pipe`` (a pipe, FIFO, socket or character device; made
    non-blocking); schedules ``connection_made``, then the peer watch, then ``waiter``'s
    result."""
    cdef _WritePipeTransport t
    _, watch_peer = _transport_support.pipe_fd(pipe, True)
    t = _WritePipeTransport.__new__(_WritePipeTransport)
    t._buffer = bytearray()
    t._setup(loop, pipe, protocol, _transport_support.pipe_extra(pipe, extra))
    loop.call_soon(protocol.connection_made, t)
    if watch_peer:
        loop.call_soon(t._start_watching)
    if waiter is not None:
        loop.call_soon(_set_result_unless_cancelled, waiter, None)
    return t
