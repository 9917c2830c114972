"""Edge values: both implementations give the same outcome (same exception type, or the same
result) for out-of-range and odd arguments, and never arm a timer that fires early."""

from __future__ import annotations

import importlib
import os

import pytest

INT64_MAX = 2**63 - 1


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - the type is the outcome
        return ("raises", type(exc).__name__)


def edge_calls(mod):
    """Name -> zero-argument callable, evaluated on a fresh context of ``mod``."""
    rt = mod.ClockType.REALTIME
    ctx = mod.AioContext()
    ctx.poll(False)
    ns = ctx.timer_new_ns(rt, lambda: None)
    ms = ctx.timer_new_ms(rt, lambda: None)

    def arm(t, method, value):
        def call():
            getattr(t, method)(value)
            return (t.pending, t.expire_time_ns)

        return call

    calls = {}
    for v in [INT64_MAX, INT64_MAX + 1, 2**64, -(2**63), -(2**63) - 1, -1]:
        calls[f"ns.mod_ns({v})"] = arm(ns, "mod_ns", v)
        calls[f"ns.mod_anticipate_ns({v})"] = arm(ns, "mod_anticipate_ns", v)
    for v in [10**12, 10**13, 2**62, INT64_MAX // 10**6, INT64_MAX // 10**6 + 1]:
        calls[f"ms.mod({v})"] = arm(ms, "mod", v)
        calls[f"ms.mod_anticipate({v})"] = arm(ms, "mod_anticipate", v)
    for v in [INT64_MAX, INT64_MAX + 1, -(2**63) - 1]:
        calls[f"ms.expired({v})"] = lambda v=v: ms.expired(v)
    for v in [INT64_MAX, INT64_MAX + 1, 2**64, -(2**63) - 1]:
        calls[f"timeout_ns_to_ms({v})"] = lambda v=v: mod.timeout_ns_to_ms(v)
        calls[f"soonest_timeout({v}, 5)"] = lambda v=v: mod.soonest_timeout(v, 5)
        calls[f"soonest_timeout(-1, {v})"] = lambda v=v: mod.soonest_timeout(-1, v)
    for v in [INT64_MAX, INT64_MAX + 1, -1]:
        calls[f"set_poll_params({v}, 2, 2)"] = lambda v=v: ctx.set_poll_params(v, 2, 2)
        calls[f"set_poll_params(1000, {v}, 2)"] = lambda v=v: ctx.set_poll_params(1000, v, 2)
    for args in [(1.5, 2, 2), (1000, 1.5, 2), (1000, 2, 1.5), (True, 2, 2), (1000, -1, 2),
                 (1000, 2, -1)]:
        calls[f"set_poll_params{args}"] = lambda args=args: ctx.set_poll_params(*args)
    for a in [1.0, "1", None, -1, 2**64]:
        calls[f"timer attributes={a!r}"] = lambda a=a: ctx.timer_new_ns(rt, lambda: None, attributes=a).pending
    calls["timer_new(scale=1.0)"] = lambda: (ctx.timer_new(rt, 1.0, lambda: None), None)[1]
    calls["set_poll_params(0, 0, 0)"] = lambda: ctx.set_poll_params(0, 0, 0)
    for v in [2**31, 2**31 - 1, 2**63, 2**64]:
        calls[f"set_fd_handler({v})"] = lambda v=v: ctx.set_fd_handler(v, io_read=lambda: None)
    for s in [2**62, INT64_MAX, INT64_MAX + 1, True]:
        calls[f"timer_new(scale={s})"] = lambda s=s: (ctx.timer_new(rt, s, lambda: None), None)[1]
    calls["clock_get_ns(True)"] = lambda: mod.clock_get_ns(True)
    calls["clock_get_ns(1.0)"] = lambda: mod.clock_get_ns(1.0)
    calls["clock_get_ns(ClockType.HOST) type"] = lambda: type(mod.clock_get_ns(mod.ClockType.HOST)).__name__
    calls["AioContext(fdmon=None)"] = lambda: mod.AioContext(fdmon=None).close()
    calls["AioContext(fdmon='POLL')"] = lambda: mod.AioContext(fdmon="POLL").close()
    calls["bh_new(name=5)"] = lambda: (ctx.bh_new(lambda: None, name=5), None)[1]
    def named_callback():
        pass

    calls["bh default name"] = lambda: ctx.bh_new(named_callback).name
    calls["bh name"] = lambda: ctx.bh_new(named_callback, name="x").name
    calls["timer.expired(True)"] = lambda: ms.expired(True)
    calls["timer.mod(1.5)"] = lambda: ns.mod(1.5)
    calls["EventNotifier(active=1)"] = lambda: _notifier_roundtrip(mod, 1)
    calls["EventNotifier(active='')"] = lambda: _notifier_roundtrip(mod, "")
    calls["NotifierList.remove(unknown)"] = lambda: mod.NotifierList().remove(print)
    calls["poll(False) after all"] = lambda: ctx.poll(False)
    calls["compute_timeout after all is far"] = lambda: ctx.compute_timeout() > 10**15
    return ctx, calls


def _notifier_roundtrip(mod, active):
    with mod.EventNotifier(active=active) as e:
        return e.test_and_clear()


def run_edges(mod):
    ctx, calls = edge_calls(mod)
    try:
        return {name: outcome(fn) for name, fn in calls.items()}
    finally:
        ctx.close()


def test_same_outcomes_on_both_implementations(pytestconfig):
    if os.environ.get("QLOOP_NO_EXTENSIONS") or pytestconfig.getoption("--no-c-extensions"):
        pytest.skip("the compiled core is not tested in this run")
    core = run_edges(importlib.import_module("qloop._core"))
    fallback = run_edges(importlib.import_module("qloop._fallback"))
    diffs = {k: (fallback[k], core[k]) for k in fallback if fallback[k] != core[k]}
    assert diffs == {}, "outcome differs (fallback, core):\n" + "\n".join(
        f"  {k}: {v[0]} vs {v[1]}" for k, v in diffs.items())


def test_out_of_range_expiry_never_fires_early(ctx, qloop_module):
    """A far expiry that does not fit in int64 ns is either refused or stays far away."""
    rt = qloop_module.ClockType.REALTIME
    ran = []
    ms = ctx.timer_new_ms(rt, lambda: ran.append("ms"))
    ns = ctx.timer_new_ns(rt, lambda: ran.append("ns"))
    for t, value in [(ms, 10**13), (ms, 2**62), (ns, INT64_MAX), (ns, 2**64)]:
        try:
            t.mod(value)
        except (OverflowError, ValueError):
            continue
        assert t.pending
        assert t.expire_time_ns > qloop_module.clock_get_ns(rt) + 10**15
    assert ctx.poll(False) is False
    assert ran == []
    ct = ctx.compute_timeout()
    assert ct == -1 or ct > 10**15
    ms.delete()
    ns.delete()


@pytest.mark.parametrize("attributes", [0, 1, 1 << 31, 0xFFFFFFFF])
def test_timer_attributes_full_unsigned_32_bit_range(ctx, qloop_module, attributes):
    """TIMER_ATTR_ALL is 0xFFFFFFFF: every value up to it is accepted and read back (the
    core stores them as a C uint32, not a C int)."""
    rt = qloop_module.ClockType.REALTIME
    for new in (ctx.timer_new_ns, ctx.timer_new_ms):
        assert new(rt, lambda: None, attributes=attributes).attributes == attributes
    assert ctx.timer_new(rt, 7, lambda: None, attributes=attributes).attributes == attributes


@pytest.mark.parametrize("attributes", [-1, 1 << 32, 2**64])
def test_timer_attributes_beyond_32_bits_refused(ctx, qloop_module, attributes):
    with pytest.raises(ValueError, match="timer attributes"):
        ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None, attributes=attributes)
