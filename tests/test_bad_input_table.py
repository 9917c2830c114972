"""docs/bad-input.md is generated from this file and checked against both implementations.

The table lists every bad input of the public API and the exception it gets.  The test
recomputes it on ``qloop._fallback`` and ``qloop._core``, asserts the two agree row by row
(rows where they disagree fail the test; the four it once found are fixed, see
tests/test_fuzz_core.py), and asserts the committed markdown is exactly the recomputed table,
so the document cannot go stale.  Regenerate with::

    PYTHONPATH=. python tests/test_bad_input_table.py --write
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"
BEGIN = "<!-- BEGIN GENERATED TABLE (tests/test_bad_input_table.py) -->"
END = "<!-- END GENERATED TABLE -->"


async def _async_cb():
    return None


class UserError(Exception):
    pass


def _fileno(fn):
    return type("FilenoObj", (), {"fileno": staticmethod(fn)})()


def _raise(e):
    raise e


def _never_open_fd() -> int:
    import resource

    n = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return n if 0 < n < 2**31 else 2**20


def _with_env(name, value, fn):
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def _closed_ctx(m):
    c = m.AioContext()
    c.close()
    return c


def _deleted_bh(m, c):
    bh = c.bh_new(lambda: None)
    bh.delete()
    return bh


def _closed_notifier(m):
    n = m.EventNotifier()
    n.close()
    return n


def _timer_of_closed(m):
    c = m.AioContext()
    t = c.timer_new_ns(m.ClockType.REALTIME, lambda: None)
    c.close()
    return t


CB = lambda: None
BAD_FD = _never_open_fd()

# (API, bad input, callable(mod, ctx, sock) -> anything)
CASES = [
    ("AioContext(fdmon)", "fdmon=None", lambda m, c, s: m.AioContext(fdmon=None)),
    ("AioContext(fdmon)", "fdmon='io_uring' where the kernel has no io_uring",
     lambda m, c, s: _with_env("QLOOP_IO_URING", "enosys", lambda: m.AioContext(fdmon="io_uring"))),
    ("AioContext(fdmon)", "fdmon='io_uring' refused by a seccomp filter",
     lambda m, c, s: _with_env("QLOOP_IO_URING", "eperm", lambda: m.AioContext(fdmon="io_uring"))),
    ("AioContext(fdmon)", "fdmon='io_uring' under kernel.io_uring_disabled=2",
     lambda m, c, s: _with_env("QLOOP_IO_URING", "disabled",
                               lambda: m.AioContext(fdmon="io_uring"))),
    ("AioContext(fdmon)", "fdmon='io_uring_please'",
     lambda m, c, s: m.AioContext(fdmon="io_uring_please")),
    ("ctx.__init__()", "called again on a live context",
     lambda m, c, s: c.__init__()),
    ("BH()", "direct construction", lambda m, c, s: m.BH()),
    ("Timer()", "direct construction", lambda m, c, s: m.Timer()),
    ("ctx.set_fd_handler(fd, ...)", "fd='3'", lambda m, c, s: c.set_fd_handler("3", CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd=3.0", lambda m, c, s: c.set_fd_handler(3.0, CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd=True", lambda m, c, s: c.set_fd_handler(True, CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd=None", lambda m, c, s: c.set_fd_handler(None, CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd=-1", lambda m, c, s: c.set_fd_handler(-1, CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd=2**31", lambda m, c, s: c.set_fd_handler(2**31, CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd=10**100", lambda m, c, s: c.set_fd_handler(10**100, CB)),
    ("ctx.set_fd_handler(fd, ...)", "fd not open (EBADF)",
     lambda m, c, s: c.set_fd_handler(BAD_FD, CB)),
    ("ctx.set_fd_handler(fd, ...)", "closed socket object (fileno() -1)",
     lambda m, c, s: c.set_fd_handler(_closed_sock(), CB)),
    ("ctx.set_fd_handler(fd, ...)", "fileno() raises UserError",
     lambda m, c, s: c.set_fd_handler(_fileno(lambda: _raise(UserError())), CB)),
    ("ctx.set_fd_handler(fd, ...)", "fileno() returns '3'",
     lambda m, c, s: c.set_fd_handler(_fileno(lambda: "3"), CB)),
    ("ctx.set_fd_handler(fd, ...)", "fileno() returns -1",
     lambda m, c, s: c.set_fd_handler(_fileno(lambda: -1), CB)),
    ("ctx.set_fd_handler(fd, ...)", "io_read=42", lambda m, c, s: c.set_fd_handler(s, 42)),
    ("ctx.set_fd_handler(fd, ...)", "io_read=async def",
     lambda m, c, s: c.set_fd_handler(s, _async_cb)),
    ("ctx.set_fd_handler(fd, ...)", "io_poll without io_poll_ready",
     lambda m, c, s: c.set_fd_handler(s, CB, None, CB)),
    ("ctx.set_fd_handler(fd, None)", "remove an fd never registered",
     lambda m, c, s: c.set_fd_handler(s, None)),
    ("ctx.set_fd_handler(fd, None)", "remove fd=2**31",
     lambda m, c, s: c.set_fd_handler(2**31, None)),
    ("ctx.set_fd_handler(fd, None)", "remove fd=-1", lambda m, c, s: c.set_fd_handler(-1, None)),
    ("ctx.set_fd_poll(fd, ...)", "fd not registered", lambda m, c, s: c.set_fd_poll(s, CB, CB)),
    ("ctx.set_fd_poll(fd, ...)", "fd='x'", lambda m, c, s: c.set_fd_poll("x")),
    ("ctx.set_event_notifier(n, ...)", "n=a socket", lambda m, c, s: c.set_event_notifier(s, CB)),
    ("ctx.set_event_notifier(n, ...)", "closed EventNotifier",
     lambda m, c, s: c.set_event_notifier(_closed_notifier(m), CB)),
    ("ctx.set_poll_params(max_ns, grow, shrink)", "max_ns=-1",
     lambda m, c, s: c.set_poll_params(-1, 0, 0)),
    ("ctx.set_poll_params(max_ns, grow, shrink)", "grow=2**63",
     lambda m, c, s: c.set_poll_params(0, 2**63, 0)),
    ("ctx.set_poll_params(max_ns, grow, shrink)", "shrink=1.5",
     lambda m, c, s: c.set_poll_params(0, 0, 1.5)),
    ("ctx.bh_new(cb)", "cb=None", lambda m, c, s: c.bh_new(None)),
    ("ctx.bh_new(cb)", "cb=async def", lambda m, c, s: c.bh_new(_async_cb)),
    ("ctx.bh_new(cb, name=)", "name=3", lambda m, c, s: c.bh_new(CB, name=3)),
    ("ctx.bh_schedule_oneshot(cb)", "cb='x'", lambda m, c, s: c.bh_schedule_oneshot("x")),
    ("ctx.timer_new(clock, scale, cb)", "clock=7", lambda m, c, s: c.timer_new(7, 1, CB)),
    ("ctx.timer_new(clock, scale, cb)", "clock='x'", lambda m, c, s: c.timer_new("x", 1, CB)),
    ("ctx.timer_new(clock, scale, cb)", "clock=True", lambda m, c, s: c.timer_new(True, 1, CB)),
    ("ctx.timer_new(clock, scale, cb)", "scale=0", lambda m, c, s: c.timer_new(0, 0, CB)),
    ("ctx.timer_new(clock, scale, cb)", "scale=2**63", lambda m, c, s: c.timer_new(0, 2**63, CB)),
    ("ctx.timer_new(clock, scale, cb)", "scale=1.0", lambda m, c, s: c.timer_new(0, 1.0, CB)),
    ("ctx.timer_new(clock, scale, cb)", "clock='x', scale=0",
     lambda m, c, s: c.timer_new("x", 0, CB)),
    ("ctx.timer_new(clock, scale, cb)", "cb=None", lambda m, c, s: c.timer_new(0, 1, None)),
    ("ctx.timer_new(..., attributes=)", "attributes=-1",
     lambda m, c, s: c.timer_new(0, 1, CB, attributes=-1)),
    ("ctx.timer_new(..., attributes=)", "attributes=True",
     lambda m, c, s: c.timer_new(0, 1, CB, attributes=True)),
    ("ctx.poll(blocking)", "blocking=None", lambda m, c, s: c.poll(None)),
    ("ctx.poll(blocking)", "blocking='yes'", lambda m, c, s: c.poll("yes")),
    ("ctx.poll(blocking)", "blocking=0 (int)", lambda m, c, s: c.poll(0)),
    ("ctx.close()", "from a callback of that context", lambda m, c, s: _close_from_cb(c)),
    ("closed ctx.poll()", "after close()", lambda m, c, s: _closed_ctx(m).poll(False)),
    ("closed ctx.bh_new()", "after close()", lambda m, c, s: _closed_ctx(m).bh_new(CB)),
    ("closed ctx.set_fd_handler()", "after close()",
     lambda m, c, s: _closed_ctx(m).set_fd_handler(s, CB)),
    ("closed ctx.notify()", "after close()", lambda m, c, s: _closed_ctx(m).notify()),
    ("closed ctx.close()", "close() twice", lambda m, c, s: _closed_ctx(m).close()),
    ("ctx.thread_pool()", "after close()", lambda m, c, s: _closed_ctx(m).thread_pool()),
    ("pool.submit(fn, ...)", "fn=42", lambda m, c, s: c.thread_pool().submit(42)),
    ("pool.submit(fn, ...)", "fn=async def", lambda m, c, s: c.thread_pool().submit(_async_cb)),
    ("pool.submit(fn, ..., callback=)", "callback='x'",
     lambda m, c, s: c.thread_pool().submit(CB, callback="x")),
    ("pool.co_submit(fn, ...)", "fn=None", lambda m, c, s: c.thread_pool().co_submit(None)),
    ("pool.set_params(min, max)", "min > max", lambda m, c, s: c.thread_pool().set_params(5, 4)),
    ("pool.set_params(min, max)", "max=0", lambda m, c, s: c.thread_pool().set_params(0, 0)),
    ("pool.set_params(min, max)", "min=-1", lambda m, c, s: c.thread_pool().set_params(-1, 4)),
    ("pool.set_params(min, max)", "min=1.5", lambda m, c, s: c.thread_pool().set_params(1.5, 4)),
    ("ThreadPool()", "direct construction", lambda m, c, s: m.ThreadPool()),
    ("ThreadPoolRequest()", "direct construction", lambda m, c, s: m.ThreadPoolRequest()),
    ("ctx.wait_while(cond)", "cond=None", lambda m, c, s: c.wait_while(None)),
    ("aio_wait_while(ctx, cond)", "ctx closed",
     lambda m, c, s: m.aio_wait_while(_closed_ctx(m), CB)),
    ("aio_wait_bh_oneshot(ctx, cb)", "cb=3", lambda m, c, s: m.aio_wait_bh_oneshot(c, 3)),
    ("IOThread(name=)", "name=3", lambda m, c, s: m.IOThread(name=3)),
    ("co_reschedule_self(ctx)", "ctx=None", lambda m, c, s: m.co_reschedule_self(None)),
    ("co_reschedule_self(ctx)", "awaited outside a Coroutine",
     lambda m, c, s: m.co_reschedule_self(c).__await__().send(None)),
    ("bh.schedule()", "deleted BH", lambda m, c, s: _deleted_bh(m, c).schedule()),
    ("bh.cancel()", "deleted BH", lambda m, c, s: _deleted_bh(m, c).cancel()),
    ("bh.delete()", "deleted BH", lambda m, c, s: _deleted_bh(m, c).delete()),
    ("timer.mod_ns(ns)", "ns=1.5", lambda m, c, s: c.timer_new_ns(0, CB).mod_ns(1.5)),
    ("timer.mod_ns(ns)", "ns=2**63", lambda m, c, s: c.timer_new_ns(0, CB).mod_ns(2**63)),
    ("timer.mod(expire)", "expire*scale > INT64_MAX",
     lambda m, c, s: c.timer_new_ms(0, CB).mod(2**62)),
    ("timer.mod_anticipate_ns(ns)", "ns='1'",
     lambda m, c, s: c.timer_new_ns(0, CB).mod_anticipate_ns("1")),
    ("timer.expired(t)", "t=None", lambda m, c, s: c.timer_new_ns(0, CB).expired(None)),
    ("timer.mod_ns(ns)", "context closed", lambda m, c, s: _timer_of_closed(m).mod_ns(1)),
    ("timer.mod_ns(ns)", "context closed, ns=2**63",
     lambda m, c, s: _timer_of_closed(m).mod_ns(2**63)),
    ("timer.delete()", "context closed", lambda m, c, s: _timer_of_closed(m).delete()),
    ("EventNotifier.set()", "closed", lambda m, c, s: _closed_notifier(m).set()),
    ("EventNotifier.fileno()", "closed", lambda m, c, s: _closed_notifier(m).fileno()),
    ("EventNotifier.close()", "closed twice", lambda m, c, s: _closed_notifier(m).close()),
    ("clock_get_ns(clock)", "clock=4", lambda m, c, s: m.clock_get_ns(4)),
    ("clock_get_ns(clock)", "clock=-1", lambda m, c, s: m.clock_get_ns(-1)),
    ("clock_get_ns(clock)", "clock=1.0", lambda m, c, s: m.clock_get_ns(1.0)),
    ("clock_enable(clock, on)", "clock=None", lambda m, c, s: m.clock_enable(None, True)),
    ("clock_advance_virtual_time(ns)", "manual clock off",
     lambda m, c, s: m.clock_advance_virtual_time(0)),
    ("clock_advance_virtual_time(ns)", "ns='1'", lambda m, c, s: m.clock_advance_virtual_time("1")),
    ("clock_advance_virtual_time(ns)", "ns=2**64",
     lambda m, c, s: m.clock_advance_virtual_time(2**64)),
    ("soonest_timeout(a, b)", "a=2**63", lambda m, c, s: m.soonest_timeout(2**63, 0)),
    ("soonest_timeout(a, b)", "b=None", lambda m, c, s: m.soonest_timeout(0, None)),
    ("timeout_ns_to_ms(ns)", "ns=1.5", lambda m, c, s: m.timeout_ns_to_ms(1.5)),
    ("timeout_ns_to_ms(ns)", "ns=2**64 (saturates)", lambda m, c, s: m.timeout_ns_to_ms(2**64)),
    ("NotifierList.add(cb)", "cb=3", lambda m, c, s: m.NotifierList().add(3)),
    ("NotifierList.remove(cb)", "cb not added", lambda m, c, s: m.NotifierList().remove(CB)),
    ("new_event_loop(virtual_time=)", "virtual_time='yes'",
     lambda m, c, s: _loop_then_close(m, virtual_time="yes")),
    ("new_event_loop(autojump=)", "autojump=None", lambda m, c, s: _loop_then_close(
        m, virtual_time=True, autojump=None)),
    ("new_event_loop(autojump=, start=, autojump_after=)", "without virtual_time=True",
     lambda m, c, s: _loop_then_close(m, start=1.0)),
    ("new_event_loop(start=)", "start=nan", lambda m, c, s: _loop_then_close(
        m, virtual_time=True, start=float("nan"))),
    ("new_event_loop(start=)", "start='0'", lambda m, c, s: _loop_then_close(
        m, virtual_time=True, start="0")),
    ("new_event_loop(start=)", "start=1e12 (beyond int64 ns)", lambda m, c, s: _loop_then_close(
        m, virtual_time=True, start=1e12)),
    ("new_event_loop(autojump_after=)", "autojump_after=-1", lambda m, c, s: _loop_then_close(
        m, virtual_time=True, autojump_after=-1)),
    ("loop.advance(seconds)", "seconds=-1", lambda m, c, s: _advance(m, -1)),
    ("loop.advance(seconds)", "seconds=inf", lambda m, c, s: _advance(m, float("inf"))),
    ("loop.advance(seconds)", "seconds=None", lambda m, c, s: _advance(m, None)),
    ("loop.advance(seconds)", "a real-time loop", lambda m, c, s: _advance(m, 1, False)),
]


def _loop_then_close(m, **kwargs):
    m.new_event_loop(**kwargs).close()


def _advance(m, seconds, virtual_time=True):
    loop = m.new_event_loop(virtual_time=virtual_time)
    try:
        loop.advance(seconds)
    finally:
        loop.close()


def _closed_sock():
    x = socket.socket()
    x.close()
    return x


def _close_from_cb(c):
    errs = []

    def cb():
        try:
            c.close()
        except BaseException as e:  # noqa: BLE001
            errs.append(e)

    c.bh_schedule_oneshot(cb)
    c.poll(False)
    if errs:
        raise errs[0]


def raised(mod, fn) -> BaseException | None:
    c = mod.AioContext()
    a, b = socket.socketpair()
    try:
        fn(mod, c, a)
    except BaseException as e:  # noqa: BLE001 - the point is to classify it
        return e
    finally:
        c.close()
        a.close()
        b.close()
    return None


def outcome(mod, fn) -> str:
    e = raised(mod, fn)
    if e is None:
        return "no error"
    name = type(e).__name__
    if isinstance(e, OSError) and e.errno is not None:
        import errno as _errno

        name += f" ({_errno.errorcode.get(e.errno, e.errno)})"
    return name


def message(mod, fn) -> str:
    """The exception's message with the implementation's module name taken out (a repr
    names ``qloop._core`` or ``qloop._fallback``)."""
    e = raised(mod, fn)
    return "" if e is None else str(e).replace(mod.__name__, "qloop")


def compute_rows():
    fallback = importlib.import_module("qloop._fallback")
    core = importlib.import_module("qloop._core")
    rows = []
    for api, bad, fn in CASES:
        rows.append((api, bad, outcome(fallback, fn), outcome(core, fn)))
    return rows


def render(rows) -> str:
    lines = [BEGIN, "", "| API | bad input | exception (fallback) | exception (core) |",
             "|---|---|---|---|"]
    for api, bad, f, c in rows:
        mark = "" if f == c else " **(differs)**"
        lines.append(f"| `{api}` | {bad} | {f} | {c}{mark} |")
    lines += ["", END]
    return "\n".join(lines)


def _doc_table() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN): text.index(END) + len(END)]


@pytest.fixture(scope="module")
def rows(pytestconfig):
    if os.environ.get("QLOOP_NO_EXTENSIONS") or pytestconfig.getoption("--no-c-extensions"):
        pytest.skip("the table is computed on both implementations")
    return compute_rows()


def test_doc_matches_recomputed_table(rows):
    assert DOC.exists(), "docs/bad-input.md is missing: run tests/test_bad_input_table.py --write"
    assert _doc_table() == render(rows), (
        "docs/bad-input.md is stale: run PYTHONPATH=. python tests/test_bad_input_table.py --write")


def test_implementations_agree_on_every_row(rows):
    diff = [r for r in rows if r[2] != r[3] and "known divergence" not in r[1]]
    assert not diff, f"the implementations disagree: {diff}"


def test_implementations_give_the_same_message_on_every_row():
    if os.environ.get("QLOOP_NO_EXTENSIONS"):
        pytest.skip("the table is computed on both implementations")
    fallback = importlib.import_module("qloop._fallback")
    core = importlib.import_module("qloop._core")
    diff = [(api, bad, message(fallback, fn), message(core, fn)) for api, bad, fn in CASES
            if message(fallback, fn) != message(core, fn)]
    assert not diff, "the messages differ:\n" + "\n".join(map(repr, diff))


def test_no_row_is_marked_as_a_known_divergence(rows):
    """Every divergence this table found is fixed: none may be marked as accepted."""
    assert not [r for r in rows if "known divergence" in r[1]]


def test_every_bad_input_raises_a_clear_exception(rows):
    allowed = ("TypeError", "ValueError", "OverflowError", "OSError", "PermissionError",
               "RuntimeError",
               "UserError", "no error")
    for api, bad, f, c in rows:
        for got in (f, c):
            assert got.startswith(allowed), f"{api} with {bad}: {got}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        table = render(compute_rows())
        text = DOC.read_text() if DOC.exists() else ""
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END):]
        else:
            text = text + table + "\n"
        DOC.write_text(text)
        print(f"wrote {DOC}")
    else:
        print(render(compute_rows()))
