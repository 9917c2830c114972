"""The teeth of the ``ctx`` / ``make_ctx`` fixtures (conftest.py ``ContextChecks``) and of the
asyncio loops' ``loop`` fixture (_aio_support.py ``LoopFactory``): an undeclared callback
exception or a BH/timer/fd handler left behind fails the test at teardown; declared ones pass.  Each case runs an inner pytest session with this suite's
conftest."""

from __future__ import annotations

import importlib.util
import os

pytest_plugins = ("pytester",)

CONFTEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")

INNER_TESTS = r'''
import socket

import pytest


class Boom(Exception):
    pass


def boom():
    raise Boom("x")


def test_clean(ctx):
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.poll(False) is True


def test_undeclared_error(ctx):
    ctx.bh_schedule_oneshot(boom)
    with pytest.raises(Boom):  # poll() still raises: the recorder re-raises
        ctx.poll(False)


def test_swallowed_second_error(ctx):
    ctx.bh_schedule_oneshot(boom)
    ctx.bh_schedule_oneshot(boom)
    with pytest.raises(Boom):  # the second one is only logged: the recorder sees it
        ctx.poll(False)


def test_declared_errors(ctx, ctx_checks):
    ctx_checks.expect_errors(Boom, Boom)
    ctx.bh_schedule_oneshot(boom)
    ctx.bh_schedule_oneshot(boom)
    with pytest.raises(Boom):
        ctx.poll(False)


def test_declared_but_never_raised(ctx, ctx_checks):
    ctx_checks.expect_errors(Boom)
    ctx.poll(False)


def test_own_handler_replaces_the_recorder(ctx):
    got = []
    ctx.set_exception_handler(lambda c, exc: got.append(exc))
    ctx.bh_schedule_oneshot(boom)
    ctx.poll(False)
    assert len(got) == 1


def test_leftover_bh(ctx):
    ctx.bh_new(lambda: None).schedule()


def test_leftover_timer(make_ctx, qloop_module):
    c = make_ctx()
    c.timer_new_ms(qloop_module.ClockType.REALTIME, lambda: None).mod(2**40)


def test_leftover_fd_handler(ctx):
    a, b = socket.socketpair()
    ctx.set_fd_handler(a, io_read=lambda: None)
    a.close()
    b.close()


@pytest.mark.leftovers
def test_leftovers_declared_by_marker(ctx):
    ctx.bh_new(lambda: None).schedule()


def test_leftovers_declared_by_method(make_ctx, ctx_checks):
    c = make_ctx()
    ctx_checks.allow_leftovers(c)
    c.bh_new(lambda: None).schedule()


def test_closed_by_the_test(make_ctx):
    c = make_ctx()
    c.bh_new(lambda: None).schedule()
    c.close()


def test_watchdog_is_not_a_leftover(watchdog, ctx):
    watchdog(ctx, 5.0)  # requested before ctx: still armed at ctx's teardown


def run_boom_once(loop):
    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_loop_undeclared_error(loop):
    run_boom_once(loop)


@pytest.mark.loop_errors
def test_loop_declared_error(loop):
    run_boom_once(loop)


def test_loop_own_handler_replaces_the_recorder(loop):
    seen = []
    loop.set_exception_handler(lambda lp, context: seen.append(context))
    run_boom_once(loop)
    assert len(seen) == 1
'''

EXPECTED = {
    "test_clean": "passed",
    "test_undeclared_error": "error",
    "test_swallowed_second_error": "error",
    "test_declared_errors": "passed",
    "test_declared_but_never_raised": "error",
    "test_own_handler_replaces_the_recorder": "passed",
    "test_leftover_bh": "error",
    "test_leftover_timer": "error",
    "test_leftover_fd_handler": "error",
    "test_leftovers_declared_by_marker": "passed",
    "test_leftovers_declared_by_method": "passed",
    "test_closed_by_the_test": "passed",
    "test_watchdog_is_not_a_leftover": "passed",
    "test_loop_undeclared_error": "error",
    "test_loop_declared_error": "passed",
    "test_loop_own_handler_replaces_the_recorder": "passed",
}


def test_fixture_checks_fail_undeclared_errors_and_leftovers(pytester, monkeypatch):
    spec = importlib.util.find_spec("qloop")
    assert spec is not None and spec.origin is not None
    root = os.path.dirname(os.path.dirname(spec.origin))  # the inner run imports this qloop
    here = os.path.dirname(os.path.abspath(__file__))  # the conftest's fixture plugins live here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, here, os.environ.get("PYTHONPATH", "")]))
    with open(CONFTEST) as f:
        pytester.makeconftest(f.read())
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    outcomes: dict[str, set[str]] = {}
    for report in result.outlines:
        for word in ("PASSED", "ERROR", "FAILED"):
            prefix = f"{word} test_inner.py::"
            if report.startswith(prefix):
                name = report[len(prefix):].split("[", 1)[0].split(" ", 1)[0]
                outcomes.setdefault(name, set()).add(word.lower())
    got = {}
    for name, words in outcomes.items():
        # an error at teardown comes with the test's own PASSED line
        got[name] = "error" if "error" in words else ("failed" if "failed" in words else "passed")
    assert got == EXPECTED, "\n".join(result.outlines[-60:])
    text = "\n".join(result.outlines)
    assert "did not declare" in text and "left 1 scheduled BH(s)" in text
    assert "never raised: Boom" in text
    assert "the test did not expect it (@pytest.mark.loop_errors)" in text
