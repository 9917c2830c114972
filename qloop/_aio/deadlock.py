"""Deadlock detection for virtual-time event loops: could anything still wake an idle loop,
and the error that says why not (shared by both implementations; docs/virtual-time.md).

An idle virtual-time loop with no virtual deadline to jump to, no real-time work in flight and
no REALTIME/HOST timer asks ``classify_fds`` about the fds registered on its context.  An fd
could wake it unless it is a dead end:

* a listening socket (in a virtual-time program the connections come from the program itself,
  its executor jobs or its subprocesses, all of which the loop sees);
* one end of a TCP connection whose other end is also a socket of this loop (no one outside
  holds it; the zero-timeout poll just found neither end ready).

Anything else (a pipe, an eventfd, a pidfd, a UDP socket, a Unix socket, a TCP connection to
another process, an fd the loop did not register itself) may be woken from outside, so the
loop waits for it in real time.  Otherwise ``deadlock_error`` builds the exception listing the
pending tasks and where each is suspended.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import Any

__all__ = ["VirtualTimeDeadlock", "classify_fds", "could_wake", "deadlock_error",
           "describe_task"]


class VirtualTimeDeadlock(RuntimeError):
    """A virtual-time event loop would wait forever: no timer, no ready callback, no real-time
    work in flight and no fd that could wake it.  ``tasks`` are the pending tasks (the message
    says where each is suspended); ``loop_time`` is the virtual time it happened at."""

    def __init__(self, message: str, tasks: tuple[asyncio.Task[Any], ...] = (),
                 loop_time: float | None = None) -> None:
        super().__init__(message)
        self.tasks = tuple(tasks)
        self.loop_time = loop_time


_INET = (socket.AF_INET, socket.AF_INET6)


def _socket_info(fd: int) -> tuple[int, int, bool, Any, Any] | None:
    """(family, type, listening, local address, peer address or None) of socket ``fd``, or
    None if it is not a socket."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
    with sock:
        try:
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        try:
            local = sock.getsockname()
        except OSError:
            local = None
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        return (sock.family, sock.type, listening, local, peer)


def _loop_fds(loop: Any) -> set[int]:
    """The fds the loop itself registered: readers/writers and transports."""
    return set(loop._vt_loop_fds()) | set(loop._transports.keys())


def _tcp_end(info: tuple[int, int, bool, Any, Any] | None) -> bool:
    return info is not None and info[0] in _INET and info[1] == socket.SOCK_STREAM \
        and info[4] is not None


def could_wake(loop: Any, fds: tuple[int, ...]) -> bool:
    """Whether any fd registered on the loop's context could wake it (``classify_fds``'s
    rule, stopping at the first such fd: the loop asks this every time it goes idle with no
    timer)."""
    own = _loop_fds(loop)
    if any(fd not in own for fd in fds):
        return True
    connected = []
    for fd in fds:
        info = _socket_info(fd)
        if info is None or not (info[2] or _tcp_end(info)):
            return True
        if not info[2]:
            connected.append(info)
    if not connected:
        return False
    ends = {(i[3], i[4]) for i in map(_socket_info, own) if i is not None and _tcp_end(i)}
    return any((info[4], info[3]) not in ends for info in connected)


def classify_fds(loop: Any, fds: tuple[int, ...]) -> list[tuple[int, str, bool]]:
    """``(fd, what it is, whether it could wake the loop)`` for each fd registered on the
    loop's context (see the module docstring for the rule)."""
    own = _loop_fds(loop)
    infos: dict[int, tuple[int, int, bool, Any, Any] | None] = {
        fd: _socket_info(fd) for fd in sorted(own | set(fds))}
    ends: dict[tuple[Any, Any], int] = {}
    for fd in own:
        info = infos[fd]
        if info is not None and _tcp_end(info):
            ends[(info[3], info[4])] = fd
    notes: list[tuple[int, str, bool]] = []
    for fd in sorted(fds):
        info = infos.get(fd)
        if fd not in own:
            notes.append((fd, "registered on the context by other code", True))
        elif info is None:
            notes.append((fd, "not a socket (a pipe, an eventfd, a file...)", True))
        elif info[2]:
            notes.append((fd, f"listening socket {info[3]!r}", False))
        elif _tcp_end(info):
            other = ends.get((info[4], info[3]))
            if other is not None:
                notes.append((fd, f"TCP connection to fd {other} of this loop", False))
            else:
                notes.append((fd, f"TCP connection to {info[4]!r} outside this loop", True))
        else:
            notes.append((fd, "socket that another process could use", True))
    return notes


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def describe_task(task: asyncio.Task[Any]) -> str:
    """``Task 'name' (coro()) suspended at file:line in func -> ...; awaiting <future>``:
    the chain of awaiting frames, outermost first."""
    coro: Any = task.get_coro()
    where: list[str] = []
    obj = coro
    while obj is not None:
        frame = (getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
                 or getattr(obj, "ag_frame", None))
        if frame is None:
            break
        where.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        obj = (getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
               or getattr(obj, "ag_await", None))
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    text = f"Task {task.get_name()!r} ({name}())"
    text += (" suspended at " + " -> ".join(where)) if where else " (not started)"
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is not None:
        text += f"; awaiting {waiter!r}"
    return text


def deadlock_error(loop: Any, *, autojump: bool, next_timer: float | None,
                   fd_notes: list[tuple[int, str, bool]]) -> VirtualTimeDeadlock:
    """The exception for an idle virtual-time loop that nothing could ever wake."""
    now = loop.time()
    tasks = sorted((t for t in asyncio.all_tasks(loop) if not t.done()),
                   key=lambda t: _natural_key(t.get_name()))
    if autojump:
        why = "no timer is armed"
    else:
        why = ("virtual time moves only by loop.advance() / await qloop.advance() "
               "(autojump=False)")
        if next_timer is not None:
            why += f" and the next timer is due at loop time {next_timer!r}"
    lines = [(
        f"the virtual-time event loop would wait forever at loop time {now!r}: {why}, no "
        f"callback is ready, no executor job or subprocess is running and no fd could wake it"
    )]
    if fd_notes:
        lines.append("fds: " + "; ".join(f"{fd}: {what}" for fd, what, _ in fd_notes))
    lines.append(f"pending tasks ({len(tasks)}):")
    lines.extend("  " + describe_task(t) for t in tasks)
    return VirtualTimeDeadlock("\n".join(lines), tuple(tasks), now)
