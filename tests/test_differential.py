"""Differential test: random programs give the same trace on qloop._core and qloop._fallback.

Each program mixes BH operations, timers on the manual VIRTUAL clock, EventNotifier
handlers (fdmon="poll", whose dispatch order is defined), non-blocking polls,
compute_timeout and clock_advance_virtual_time.  Everything recorded is deterministic,
so both implementations must produce identical traces.
"""

from __future__ import annotations

import importlib
import os
import random

import pytest

SEEDS = range(40)
N_OPS = 400


def generate(seed: int) -> list[tuple]:
    rng = random.Random(seed)
    ops: list[tuple] = []
    n_bh = n_timer = n_notifier = 0
    for _ in range(N_OPS):
        kind = rng.choices(
            ["bh_new", "bh_op", "oneshot", "timer_new", "timer_op", "notifier_new",
             "notifier_op", "poll", "advance", "timeout"],
            weights=[4, 12, 3, 3, 10, 2, 8, 12, 4, 3],
        )[0]
        if kind == "bh_new":
            ops.append(("bh_new", n_bh, rng.randint(0, 3)))  # times to re-schedule itself
            n_bh += 1
        elif kind == "bh_op" and n_bh:
            ops.append(("bh_op", rng.randrange(n_bh),
                        rng.choice(["schedule", "schedule", "schedule_idle", "cancel", "delete"])))
        elif kind == "oneshot":
            ops.append(("oneshot", len(ops)))
        elif kind == "timer_new":
            ops.append(("timer_new", n_timer, rng.choice([1, 1_000]), rng.randint(0, 2)))
            n_timer += 1
        elif kind == "timer_op" and n_timer:
            ops.append(("timer_op", rng.randrange(n_timer),
                        rng.choice(["mod", "mod", "anticipate", "delete", "query"]),
                        rng.randint(0, 20) * 50))
        elif kind == "notifier_new" and n_notifier < 8:
            ops.append(("notifier_new", n_notifier))
            n_notifier += 1
        elif kind == "notifier_op" and n_notifier:
            ops.append(("notifier_op", rng.randrange(n_notifier),
                        rng.choice(["set", "set", "register", "unregister"])))
        elif kind == "poll":
            ops.append(("poll",))
        elif kind == "advance":
            ops.append(("advance", rng.randint(1, 10) * 100))
        elif kind == "timeout":
            ops.append(("timeout",))
    ops.append(("drain",))
    return ops


def run_program(mod, ops: list[tuple]) -> list[tuple]:
    V = mod.ClockType.VIRTUAL
    mod.clock_set_manual(True)
    mod.clock_enable(V, True)
    v0 = mod.clock_get_ns(V)
    now = [v0]
    trace: list[tuple] = []
    ctx = mod.AioContext(fdmon="poll")
    bhs: dict[int, object] = {}
    deleted: set[int] = set()
    timers: dict[int, object] = {}
    notifiers: dict[int, object] = {}
    registered: set[int] = set()

    def bh_cb(i, resched):
        left = [resched]

        def cb():
            trace.append(("bh", i))
            if left[0] > 0 and i not in deleted:
                left[0] -= 1
                bhs[i].schedule()

        return cb

    def timer_cb(i, rearm):
        left = [rearm]

        def cb():
            trace.append(("timer", i, mod.clock_get_ns(V) - v0))
            if left[0] > 0:
                left[0] -= 1
                timers[i].mod_ns(mod.clock_get_ns(V) + 150)

        return cb

    def notifier_cb(i):
        def cb(n):
            trace.append(("fd", i, n.test_and_clear()))

        return cb

    try:
        ctx.poll(False)
        for op in ops:
            name = op[0]
            if name == "bh_new":
                _, i, resched = op
                bhs[i] = ctx.bh_new(bh_cb(i, resched), name=f"bh{i}")
            elif name == "bh_op":
                _, i, what = op
                if i in deleted:
                    continue
                getattr(bhs[i], what)()
                if what == "delete":
                    deleted.add(i)
            elif name == "oneshot":
                k = op[1]
                ctx.bh_schedule_oneshot(lambda k=k: trace.append(("oneshot", k)))
            elif name == "timer_new":
                _, i, scale, rearm = op
                timers[i] = ctx.timer_new(V, scale, timer_cb(i, rearm))
            elif name == "timer_op":
                _, i, what, rel = op
                t = timers[i]
                if what == "mod":
                    t.mod_ns(now[0] + rel)
                elif what == "anticipate":
                    t.mod_anticipate_ns(now[0] + rel)
                elif what == "delete":
                    t.delete()
                exp = t.expire_time_ns
                trace.append(("timer_state", i, t.pending, exp - v0 if exp >= 0 else -1))
            elif name == "notifier_new":
                notifiers[op[1]] = mod.EventNotifier()
            elif name == "notifier_op":
                _, i, what = op
                e = notifiers[i]
                if what == "set":
                    e.set()
                elif what == "register":
                    ctx.set_event_notifier(e, notifier_cb(i))
                    registered.add(i)
                elif what == "unregister":
                    ctx.set_event_notifier(e, None)
                    registered.discard(i)
            elif name == "poll":
                trace.append(("poll", ctx.poll(False)))
            elif name == "advance":
                now[0] += op[1]
                trace.append(("advance", op[1]))
                mod.clock_advance_virtual_time(now[0])
            elif name == "timeout":
                trace.append(("timeout", ctx.compute_timeout()))
            elif name == "drain":
                for _ in range(50):
                    r = ctx.poll(False)
                    trace.append(("poll", r))
                    if not r:
                        break
    finally:
        for i in list(registered):
            ctx.set_event_notifier(notifiers[i], None)
        ctx.close()
        for e in notifiers.values():
            e.close()
        mod.clock_set_manual(False)
        mod.clock_enable(V, False)
    return trace


@pytest.mark.parametrize("seed", SEEDS)
def test_same_trace_on_both_implementations(pytestconfig, seed):
    if os.environ.get("QLOOP_NO_EXTENSIONS") or pytestconfig.getoption("--no-c-extensions"):
        pytest.skip("the compiled core is not tested in this run")
    core = importlib.import_module("qloop._core")
    fallback = importlib.import_module("qloop._fallback")
    ops = generate(seed)
    expected = run_program(fallback, ops)
    got = run_program(core, ops)
    for k, (a, b) in enumerate(zip(expected, got, strict=False)):  # lengths: below
        assert a == b, f"first difference at trace entry {k}: fallback {a!r}, core {b!r}"
    assert len(expected) == len(got)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_program_is_deterministic(qloop_module, seed):
    """Sanity check of the harness: the same program gives the same trace twice."""
    ops = generate(seed)
    first = run_program(qloop_module, ops)
    assert first == run_program(qloop_module, ops)
    assert any(entry[0] == "bh" for entry in first)
    assert any(entry[0] == "timer" for entry in first)
