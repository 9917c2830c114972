"""What the asyncio layer's mixins use of the loop they are assembled into: the hot base of an
implementation (``_cy/loop.pxi`` or ``_py/loop.py``) and the other mixins.  Type checkers read
the mixins as subclasses of ``LoopBase``; at run time they derive from ``object`` and
``build_implementation`` puts them together with the base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol


class LoopBase(Protocol):
    """The loop as the mixins see it (typed loosely: the two bases differ in C and Python)."""

    _accept_connection: Any
    _add_reader: Any
    _add_writer: Any
    _check_closed_py: Any
    _close_base: Any
    _close_child_watches: Any
    _close_signal_handlers: Any
    _close_virtual_time: Any
    _current_handle: Any
    _ensure_fd_no_transport: Any
    _ensure_resolved: Any
    _fd_handles: Any
    _is_stopping: Any
    _make_datagram_transport: Any
    _make_read_pipe_transport: Any
    _make_socket_transport: Any
    _make_write_pipe_transport: Any
    _owns_context: Any
    _real_work_begin: Any
    _real_work_done_threadsafe: Any
    _real_work_end: Any
    _track_real_work: Any
    _remove_reader: Any
    _remove_writer: Any
    _run_loop: Any
    _set_coroutine_origin_tracking: Any
    _set_debug_flag: Any
    _sock_checks: Any
    _thread_id: Any
    _vt_busy: Any
    _vt_enabled: Any
    _vt_grace_fired: Any
    _vt_jump: Any
    _vt_next_deadline: Any
    _vt_now_ns: Any
    _vt_offset_ns: Any
    _vt_probe: Any
    _vt_set_fast: Any
    _vt_set_pending: Any
    aio_context: Any
    call_exception_handler: Any
    call_later: Any
    call_soon: Any
    call_soon_threadsafe: Any
    create_future: Any
    get_debug: Any
    getaddrinfo: Any
    is_closed: Any
    is_running: Any
    remove_reader: Any
    remove_writer: Any
    run_forever: Any
    run_in_executor: Any
    sock_sendall: Any
    stop: Any


if TYPE_CHECKING:
    MixinBase = LoopBase
else:
    MixinBase = object
