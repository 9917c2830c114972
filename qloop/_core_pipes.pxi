# The asyncio loop's pipe transports (connect_read_pipe / connect_write_pipe, and a
# subprocess's stdin/stdout/stderr), compiled; included by _core.pyx after
# _core_transports.pxi.  The pure-Python twin is qloop/_fallback_pipes.py.
#
# Each transport is its fd's C owner in the AioContext, so an event reaches it without a
# Python call.  The read path is read(2) into the spare buffer the stream transports read into
# (_core_transports.pxi), then one data_received call; write() tries write(2) at once and
# buffers only the rest (a bytearray), flushed with write(2) when the fd is writable.  A write
# pipe that is a FIFO or a socket is also watched for reading: it becomes readable when the
# reader goes away, which closes the transport.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.errno cimport EIO

cdef object _debug_log = _transport_support.debug_log
cdef object _pipe_repr = _transport_support.pipe_repr


@cython.auto_pickle(False)
cdef class _ReadPipeTransport(_FdOwner):
    """The read end of a pipe, FIFO, socket or character device (asyncio's ReadTransport
    API); created by the event loop."""

    cdef _LoopBase _loop
    cdef public object _pipe
    cdef int _fd
    cdef object _protocol
    cdef object _data_received
    cdef dict _extra
    cdef bint _closing
    cdef bint _paused
    cdef bint _reg_read
    cdef dict __dict__              # like asyncio's transports, instances take attributes
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError("transports are created by the event loop")

    # ---- registration with the context

    cdef int _register(self, bint on) except -1:
        cdef _LoopBase loop = self._loop
        if on == self._reg_read:
            return 0
        if loop is not None and not loop._ctx.closed:
            loop._ctx._set_fd_owner(self._fd, self, on, False)
        self._reg_read = on
        return 0

    def _start_reading(self):
        if not self._closing and not self._paused:
            self._register(True)

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
            loop._leave(prev)
        return 0

    cdef int _read_eof(self) except -1:
        cdef _LoopBase loop = self._loop
        if loop._debug:
            _debug_log("info", "%r was closed by peer", self)
        self._closing = True
        self._register(False)
        loop.call_soon(self._protocol.eof_received)
        loop.call_soon(self._call_connection_lost, None)
        return 0

    # ---- reading control

    def is_reading(self):
        return not self._paused and not self._closing

    def pause_reading(self):
        """Stop calling the protocol with data until ``resume_reading()``."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._register(False)
        if self._loop._debug:
            _debug_log("debug", "%r pauses reading", self)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self._register(True)
        if self._loop._debug:
            _debug_log("debug", "%r resumes reading", self)

    # ---- closing

    def is_closing(self):
        return self._closing

    def close(self):
        """Stop reading; ``connection_lost(None)`` follows (the pipe is closed then)."""
        if not self._closing:
            self._close(None)

    def _fatal_error(self, exc, message="Fatal error on pipe transport"):
        _fatal_error_report(self, self._loop, self._protocol, exc, message, EIO)
        self._close(exc)

    def _close(self, exc):
        self._closing = True
        self._register(False)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
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

    def get_extra_info(self, name, default=None):
        return self._extra.get(name, default)

    def set_protocol(self, protocol):
        self._protocol = protocol
        self._data_received = protocol.data_received

    def get_protocol(self):
        return self._protocol

    @property
    def __class__(self):
        return _ReadPipeTransportShadow  # so isinstance(t, asyncio.ReadTransport) holds

    def __repr__(self):
        loop = self._loop
        return _pipe_repr(type(self).__name__, self._fd, self._pipe is None, self._closing,
                          loop is not None and not loop._closed, self._reg_read, None)

    def __del__(self):
        if self._pipe is not None:
            _warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()
            self._pipe = None


@cython.auto_pickle(False)
cdef class _WritePipeTransport(_FdOwner):
    """The write end of a pipe, FIFO, socket or character device (asyncio's WriteTransport
    API, with flow control); created by the event loop."""

    cdef _LoopBase _loop
    cdef public object _pipe
    cdef int _fd
    cdef object _protocol
    cdef dict _extra
    cdef bytearray _buffer
    cdef int _conn_lost
    cdef bint _closing
    cdef bint _lost                 # connection_lost is scheduled (or ran)
    cdef bint _watch_peer           # a FIFO or socket: readable when the reader goes away
    cdef bint _reg_read
    cdef bint _reg_write
    cdef bint _protocol_paused
    cdef Py_ssize_t _high
    cdef Py_ssize_t _low
    cdef dict __dict__
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError("transports are created by the event loop")

    # ---- registration with the context

    cdef int _register(self, bint on_read, bint on_write) except -1:
        cdef _LoopBase loop = self._loop
        if on_read == self._reg_read and on_write == self._reg_write:
            return 0
        if loop is not None and not loop._ctx.closed:
            loop._ctx._set_fd_owner(self._fd, self, on_read, on_write)
        self._reg_read = on_read
        self._reg_write = on_write
        return 0

    def _start_watching(self):
        if not self._closing:
            self._register(True, self._reg_write)

    # ---- the peer went away

    cdef int _on_read(self) except -1:
        cdef _LoopBase loop = self._loop
        prev = loop._enter()
        try:
            if loop._debug:
                _debug_log("info", "%r was closed by peer", self)
            self._close(BrokenPipeError() if PyByteArray_GET_SIZE(self._buffer) else None)
        finally:
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
            if PyByteArray_GET_SIZE(self._buffer) == 0:
                n = write(self._fd, ptr, size)
                if n < 0:
                    err = errno
                    if err != EAGAIN and err != EINTR:
                        self._conn_lost += 1
                        self._fatal_error(_os_error(err), "Fatal write error on pipe transport")
                        return
                    n = 0
                if n == size:
                    return
                self._register(self._reg_read, True)
            self._buffer += PyBytes_FromStringAndSize(ptr + n, size - n)
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
        try:
            if n < 0:
                del buf[:]
                self._conn_lost += 1
                self._register(self._reg_read, False)
                self._fatal_error(_os_error(err), "Fatal write error on pipe transport")
            elif n == size:
                del buf[:]
                self._register(self._reg_read, False)
                self._maybe_resume_protocol()  # may write more
                if self._closing and PyByteArray_GET_SIZE(self._buffer) == 0:
                    self._register(False, False)
                    self._lost = True
                    self._call_connection_lost(None)
            elif n > 0:
                del buf[:n]
        finally:
            loop._leave(prev)
        return 0

    cdef int _maybe_pause_protocol(self) except -1:
        if PyByteArray_GET_SIZE(self._buffer) <= self._high or self._protocol_paused:
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
        if self._protocol_paused and PyByteArray_GET_SIZE(self._buffer) <= self._low:
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
        return PyByteArray_GET_SIZE(self._buffer)

    def can_write_eof(self):
        return True

    def write_eof(self):
        """Close once the buffer is flushed; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        if PyByteArray_GET_SIZE(self._buffer) == 0:
            self._register(False, False)
            self._lost = True
            self._loop.call_soon(self._call_connection_lost, None)

    # ---- closing

    def is_closing(self):
        return self._closing

    def close(self):
        """Close after the buffered data is written (``write_eof()``)."""
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self):
        """Close now, dropping buffered data; ``connection_lost(None)`` follows."""
        self._close(None)

    def _fatal_error(self, exc, message="Fatal error on pipe transport"):
        _fatal_error_report(self, self._loop, self._protocol, exc, message)
        self._close(exc)

    def _close(self, exc):
        self._closing = True
        del self._buffer[:]
        self._register(False, False)
        if self._lost or self._loop is None:
            return
        self._lost = True
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
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

    def get_extra_info(self, name, default=None):
        return self._extra.get(name, default)

    def set_protocol(self, protocol):
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    @property
    def __class__(self):
        return _WritePipeTransportShadow  # so isinstance(t, asyncio.WriteTransport) holds

    def __repr__(self):
        loop = self._loop
        return _pipe_repr(type(self).__name__, self._fd, self._pipe is None, self._closing,
                          loop is not None and not loop._closed, self._reg_write,
                          PyByteArray_GET_SIZE(self._buffer))

    def __del__(self):
        if self._pipe is not None:
            _warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()
            self._pipe = None


_ReadPipeTransportShadow = _transport_support.shadow_class(
    "qloop._core", "_ReadPipeTransport", _asyncio.ReadTransport)
_WritePipeTransportShadow = _transport_support.shadow_class(
    "qloop._core", "_WritePipeTransport", _asyncio.WriteTransport)


def _make_read_pipe_transport(_LoopBase loop, pipe, protocol, waiter=None, extra=None):
    """A read transport on ``pipe`` (a pipe, FIFO, socket or character device; made
    non-blocking); schedules ``connection_made``, then reading, then ``waiter``'s result."""
    cdef _ReadPipeTransport t
    fd, _ = _transport_support.pipe_fd(pipe, False)
    t = _ReadPipeTransport.__new__(_ReadPipeTransport)
    t._loop = loop
    t._pipe = pipe
    t._fd = fd
    t._extra = _transport_support.pipe_extra(pipe, extra)
    t.set_protocol(protocol)
    loop._transports[fd] = t
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
    fd, watch_peer = _transport_support.pipe_fd(pipe, True)
    t = _WritePipeTransport.__new__(_WritePipeTransport)
    t._loop = loop
    t._pipe = pipe
    t._fd = fd
    t._extra = _transport_support.pipe_extra(pipe, extra)
    t._buffer = bytearray()
    t._watch_peer = watch_peer
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
