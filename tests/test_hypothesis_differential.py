"""Hypothesis differential test: generated programs over the public API give the SAME trace
on ``qloop._core`` and ``qloop._fallback``; committed golden traces pin the behaviour of both.

A program is a list of JSON-able ops (lists of str/int) run by :func:`run_program`:

* BHs (``bh_new``/``bh``/``oneshot``) whose callbacks are plain, re-schedule themselves
  (normal or idle), delete themselves, raise an ``Exception`` or a ``BaseException`` subclass,
  call ``ctx.poll(False)`` nested, schedule / cancel another BH, arm a timer or post a oneshot;
* timers on VIRTUAL under the manual clock (``clock_set_manual(True)``,
  ``clock_enable(VIRTUAL, True)``, ``clock_advance_virtual_time``), with ``mod``/``mod_ns``/
  ``mod_anticipate``/``mod_anticipate_ns``/``delete``, whose callbacks re-arm, raise, poll
  nested, delete or move another timer, or schedule a BH;
* fd handlers on non-blocking socketpairs (``fdmon="poll"``: dispatch in registration order)
  that drain, do not drain (level-triggered: they fire again), remove or replace themselves,
  raise, poll nested, or have a write handler that feeds the read side then removes itself;
* ``poll(False)`` results, ``compute_timeout()``, ``notify()``;
* the exception handler set or removed (what it receives is traced), an fd closed while its
  handler is registered (POLLNVAL: the handler is removed and the error reported), a BH's
  ``name`` (also once deleted), timers created with any ``attributes`` value.

Every callback and every poll / compute_timeout result is appended to the trace, and so is
every exception (type, and message for the program's own exceptions).  Both arms must give
identical traces (the pure-Python fallback is the reference).

The golden traces in ``tests/golden/*.json`` are regenerated with
``PYTHONPATH=. python tests/golden/make_golden.py`` (review the diff: a golden change is a
behaviour change of BOTH implementations).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

GOLDEN_DIR = Path(__file__).parent / "golden"
N_EXAMPLES = int(os.environ.get("QLOOP_DIFF_EXAMPLES", "1500"))

SLOTS = 5  # BH / timer / fd slots a program refers to
BH_BEHAVIOURS = ["plain", "resched", "resched_idle", "delete_self", "raise", "base_raise",
                 "nested", "sched_other", "cancel_other", "oneshot", "arm_timer"]
BH_OPS = ["schedule", "schedule", "schedule", "schedule_idle", "cancel", "delete"]
ONESHOT_BEHAVIOURS = ["plain", "raise", "nested"]
TIMER_BEHAVIOURS = ["plain", "rearm", "raise", "base_raise", "nested", "del_other",
                    "mod_other", "sched_bh"]
TIMER_OPS = ["mod_ns", "mod_ns", "mod", "anticipate_ns", "anticipate", "delete", "expired"]
FD_BEHAVIOURS = ["drain", "nodrain", "remove_self", "replace_self", "raise", "nested",
                 "write"]


class Boom(Exception):
    """An ordinary exception raised by a program callback."""


class Halt(BaseException):
    """A BaseException (not Exception) raised by a program callback."""


def _exc(e: BaseException) -> list:
    """Trace form of an exception: the program's own ones with their message."""
    if isinstance(e, (Boom, Halt)):
        return [type(e).__name__, str(e)]
    return [type(e).__name__]


# --------------------------------------------------------------------------------------------
# The interpreter


def run_program(mod, ops: list[list]) -> list[list]:
    """Run ``ops`` on implementation ``mod``; return the trace (a JSON-able list of lists)."""
    V = mod.ClockType.VIRTUAL
    mod.clock_set_manual(True)
    mod.clock_enable(V, True)
    # start on a whole millisecond so scaled (``mod(expire)``) times are program-determined
    v0 = -(-mod.clock_get_ns(V) // 1_000_000) * 1_000_000 + 1_000_000
    mod.clock_advance_virtual_time(v0)
    trace: list[list] = []
    ctx = mod.AioContext(fdmon="poll")
    bhs: dict = {}  # slot -> (uid, BH)
    timers: dict = {}  # slot -> (uid, Timer)
    fds: dict = {}  # slot -> (uid, a, b)
    socks: list = []
    uid = [0]
    depth = [0]

    def new_uid() -> int:
        uid[0] += 1
        return uid[0]

    def vnow() -> int:
        return mod.clock_get_ns(V) - v0

    def nested(tag: list) -> None:
        if depth[0]:
            trace.append(tag + ["nested-skip"])
            return
        depth[0] += 1
        try:
            trace.append(tag + ["nested", ctx.poll(False)])
        except BaseException as e:  # noqa: BLE001 - recorded
            trace.append(tag + ["nested-exc"] + _exc(e))
        finally:
            depth[0] -= 1

    def bh_call(slot: int, op: str, who: list) -> None:
        if slot not in bhs:
            return
        u, bh = bhs[slot]
        try:
            getattr(bh, op)()
        except BaseException as e:  # noqa: BLE001 - recorded (RuntimeError after delete)
            trace.append(who + ["bh-op-exc", u, op] + _exc(e))

    def timer_arm(slot: int, rel: int, who: list) -> None:
        if slot not in timers:
            return
        u, t = timers[slot]
        t.mod_ns(mod.clock_get_ns(V) + rel)
        trace.append(who + ["armed", u, t.pending, t.expire_time_ns - v0])

    # -- BH callbacks
    def make_bh_cb(u: int, beh: str, arg: int):
        left = [arg]
        me: list = [None]
        tag = ["bh", u]

        def cb():
            trace.append(tag + [vnow()])
            if beh == "resched" or beh == "resched_idle":
                if left[0] > 0:
                    left[0] -= 1
                    try:
                        me[0].schedule() if beh == "resched" else me[0].schedule_idle()
                    except RuntimeError as e:
                        trace.append(tag + ["resched-exc"] + _exc(e))
            elif beh == "delete_self":
                me[0].delete()
            elif beh == "raise":
                raise Boom(f"bh{u}")
            elif beh == "base_raise":
                raise Halt(f"bh{u}")
            elif beh == "nested":
                nested(tag)
            elif beh == "sched_other":
                bh_call(arg % SLOTS, "schedule", tag)
            elif beh == "cancel_other":
                bh_call(arg % SLOTS, "cancel", tag)
            elif beh == "oneshot":
                ctx.bh_schedule_oneshot(lambda: trace.append(["oneshot-of", u]))
            elif beh == "arm_timer":
                timer_arm(arg % SLOTS, 0, tag)

        return cb, me

    # -- timer callbacks
    def make_timer_cb(u: int, beh: str, arg: int):
        left = [arg]
        me: list = [None]
        tag = ["timer", u]

        def cb():
            trace.append(tag + [vnow()])
            if beh == "rearm":
                if left[0] > 0:
                    left[0] -= 1
                    me[0].mod_ns(mod.clock_get_ns(V) + 50 * (arg + 1))
            elif beh == "raise":
                raise Boom(f"timer{u}")
            elif beh == "base_raise":
                raise Halt(f"timer{u}")
            elif beh == "nested":
                nested(tag)
            elif beh == "del_other":
                if arg % SLOTS in timers:
                    timers[arg % SLOTS][1].delete()
            elif beh == "mod_other":
                timer_arm(arg % SLOTS, 30, tag)
            elif beh == "sched_bh":
                bh_call(arg % SLOTS, "schedule", tag)

        return cb, me

    # -- fd handlers
    def drain(s) -> int:
        n = 0
        while True:
            try:
                chunk = s.recv(4096)
            except BlockingIOError:
                return n
            if not chunk:
                return n
            n += len(chunk)

    def make_fd_read(u: int, beh: str, arg: int, a, b):
        calls = [0]
        tag = ["fd", u]

        def writer():
            calls[0] += 1
            trace.append(["fdw", u, calls[0]])
            b.send(b"w")  # makes the read side readable
            if calls[0] > arg:
                ctx.set_fd_handler(a, io_read=reader)  # drop the write interest

        def replacement():
            trace.append(["fd-replacement", u, drain(a)])

        def reader():
            calls[0] += 1
            if beh == "nodrain":
                # level-triggered: fires again until drained every (arg+2)-th call
                if calls[0] % (arg + 2) == 0:
                    trace.append(tag + ["drained", drain(a)])
                else:
                    trace.append(tag + ["nodrain", calls[0]])
                return
            trace.append(tag + [drain(a)])
            if beh == "remove_self":
                ctx.set_fd_handler(a, None)
            elif beh == "replace_self":
                ctx.set_fd_handler(a, io_read=replacement)
            elif beh == "raise":
                raise Boom(f"fd{u}")
            elif beh == "nested":
                nested(tag)

        if beh == "write":
            return reader, writer
        return reader, None

    def advance(delta: int) -> None:
        try:
            mod.clock_advance_virtual_time(mod.clock_get_ns(V) + delta)
            trace.append(["advanced", vnow()])
        except BaseException as e:  # noqa: BLE001 - recorded
            trace.append(["advance-exc", vnow()] + _exc(e))

    def poll(tag: str = "poll") -> bool:
        try:
            r = ctx.poll(False)
            trace.append([tag, r])
            return r
        except BaseException as e:  # noqa: BLE001 - recorded
            trace.append([tag + "-exc"] + _exc(e))
            return True

    try:
        trace.append(["start", ctx.poll(False), ctx.compute_timeout()])
        for op in ops:
            name = op[0]
            if name == "bh_new":
                _, slot, beh, arg = op
                u = new_uid()
                cb, me = make_bh_cb(u, beh, arg)
                me[0] = ctx.bh_new(cb, name=f"bh{u}")
                bhs[slot] = (u, me[0])
            elif name == "bh":
                _, slot, what = op
                if slot in bhs:
                    bh_call(slot, what, ["main"])
            elif name == "oneshot":
                _, beh = op
                u = new_uid()

                def one(u=u, beh=beh):
                    trace.append(["oneshot", u])
                    if beh == "raise":
                        raise Boom(f"oneshot{u}")
                    if beh == "nested":
                        nested(["oneshot", u])

                ctx.bh_schedule_oneshot(one)
            elif name == "timer_new":
                _, slot, scale, beh, arg = op
                u = new_uid()
                cb, me = make_timer_cb(u, beh, arg)
                t = ctx.timer_new(V, scale, cb)
                me[0] = t
                if slot in timers:
                    timers[slot][1].delete()  # an armed timer would otherwise outlive its slot
                timers[slot] = (u, t)
            elif name == "timer":
                _, slot, what, rel = op
                if slot not in timers:
                    continue
                u, t = timers[slot]
                ns = mod.clock_get_ns(V) + rel
                sc = t.scale
                if what == "mod_ns":
                    t.mod_ns(ns)
                elif what == "mod":
                    t.mod(ns // sc)
                elif what == "anticipate_ns":
                    t.mod_anticipate_ns(ns)
                elif what == "anticipate":
                    t.mod_anticipate(ns // sc)
                elif what == "delete":
                    t.delete()
                exp = t.expire_time_ns
                trace.append(["timer-state", u, t.pending, exp - v0 if exp >= 0 else -1,
                              t.expired(ns // sc)])
            elif name == "fd_new":
                _, slot, beh, arg = op
                u = new_uid()
                a, b = socket.socketpair()
                a.setblocking(False)
                b.setblocking(False)
                socks.extend((a, b))
                if slot in fds:
                    ctx.set_fd_handler(fds[slot][1], None)
                fds[slot] = (u, a, b)
                reader, writer = make_fd_read(u, beh, arg, a, b)
                ctx.set_fd_handler(a, io_read=reader, io_write=writer)
            elif name == "fd_send":
                _, slot, n = op
                if slot in fds:
                    fds[slot][2].send(b"x" * n)
            elif name == "fd_remove":
                _, slot = op
                if slot in fds:
                    ctx.set_fd_handler(fds[slot][1], None)
            elif name == "poll":
                poll()
            elif name == "timeout":
                trace.append(["timeout", ctx.compute_timeout()])
            elif name == "notify":
                ctx.notify()
            elif name == "advance":
                advance(op[1])
            elif name == "exc_handler":
                if op[1]:
                    ctx.set_exception_handler(
                        lambda c, e: trace.append(["handled", c is ctx] + _exc(e)))
                else:
                    ctx.set_exception_handler(None)
            elif name == "fd_close":
                _, slot = op
                if slot in fds:
                    u, a, b = fds.pop(slot)
                    a.close()  # still registered: the next wait reports POLLNVAL
                    trace.append(["fd-closed", u])
            elif name == "bh_name":
                _, slot = op
                if slot in bhs:
                    u, bh = bhs[slot]
                    trace.append(["bh-name", u, bh.name, bh.deleted])
            elif name == "timer_attrs":
                try:
                    t = ctx.timer_new_ns(V, lambda: None, attributes=op[1])
                    trace.append(["timer-attrs", t.attributes])
                except BaseException as e:  # noqa: BLE001 - recorded
                    trace.append(["timer-attrs-exc"] + _exc(e))
            else:  # pragma: no cover - a malformed program is a harness bug
                raise AssertionError(f"unknown op {op!r}")
        for _ in range(40):
            if not poll("drain"):
                break
        trace.append(["end-timeout", ctx.compute_timeout()])
        advance(10_000)
        for _ in range(40):
            if not poll("drain2"):
                break
    finally:
        for _, a, _b in fds.values():
            ctx.set_fd_handler(a, None)
        ctx.close()
        for s in socks:
            s.close()
        mod.clock_set_manual(False)
        mod.clock_enable(V, False)
    return json.loads(json.dumps(trace))


# --------------------------------------------------------------------------------------------
# Program generators: a Hypothesis strategy, and a seeded one for the golden files.

slot_st = st.integers(0, SLOTS - 1)
op_st = st.one_of(
    st.tuples(st.just("bh_new"), slot_st, st.sampled_from(BH_BEHAVIOURS), st.integers(0, 3)),
    st.tuples(st.just("bh"), slot_st, st.sampled_from(BH_OPS)),
    st.tuples(st.just("bh"), slot_st, st.sampled_from(BH_OPS)),
    st.tuples(st.just("oneshot"), st.sampled_from(ONESHOT_BEHAVIOURS)),
    st.tuples(st.just("timer_new"), slot_st, st.sampled_from([1, 1000]),
              st.sampled_from(TIMER_BEHAVIOURS), st.integers(0, 3)),
    st.tuples(st.just("timer"), slot_st, st.sampled_from(TIMER_OPS),
              st.integers(-2, 20).map(lambda k: k * 50)),
    st.tuples(st.just("fd_new"), slot_st, st.sampled_from(FD_BEHAVIOURS), st.integers(0, 2)),
    st.tuples(st.just("fd_send"), slot_st, st.integers(1, 64)),
    st.tuples(st.just("fd_remove"), slot_st),
    st.tuples(st.just("poll")),
    st.tuples(st.just("poll")),
    st.tuples(st.just("timeout")),
    st.tuples(st.just("notify")),
    st.tuples(st.just("advance"), st.integers(0, 20).map(lambda k: k * 50)),
    st.tuples(st.just("exc_handler"), st.booleans()),
    st.tuples(st.just("fd_close"), slot_st),
    st.tuples(st.just("bh_name"), slot_st),
    st.tuples(st.just("timer_attrs"), st.sampled_from(
        [0, 1, 2, 1 << 30, 1 << 31, 0xFFFFFFFF, 1 << 32, -1, 2**64])),
).map(list)
program_st = st.lists(op_st, min_size=1, max_size=80)


def random_program(rng: random.Random, n_ops: int) -> list[list]:
    """A seeded program with the same grammar as ``program_st`` (used by make_golden.py)."""
    ops: list[list] = []
    for _ in range(n_ops):
        k = rng.choices(["bh_new", "bh", "oneshot", "timer_new", "timer", "fd_new", "fd_send",
                         "fd_remove", "poll", "timeout", "notify", "advance"],
                        weights=[5, 10, 2, 4, 8, 3, 5, 1, 10, 2, 1, 4])[0]
        s = rng.randrange(SLOTS)
        if k == "bh_new":
            ops.append([k, s, rng.choice(BH_BEHAVIOURS), rng.randint(0, 3)])
        elif k == "bh":
            ops.append([k, s, rng.choice(BH_OPS)])
        elif k == "oneshot":
            ops.append([k, rng.choice(ONESHOT_BEHAVIOURS)])
        elif k == "timer_new":
            ops.append([k, s, rng.choice([1, 1000]), rng.choice(TIMER_BEHAVIOURS),
                        rng.randint(0, 3)])
        elif k == "timer":
            ops.append([k, s, rng.choice(TIMER_OPS), rng.randint(-2, 20) * 50])
        elif k == "fd_new":
            ops.append([k, s, rng.choice(FD_BEHAVIOURS), rng.randint(0, 2)])
        elif k == "fd_send":
            ops.append([k, s, rng.randint(1, 64)])
        elif k == "fd_remove":
            ops.append([k, s])
        elif k == "advance":
            ops.append([k, rng.randint(0, 20) * 50])
        else:
            ops.append([k])
    return ops


# --------------------------------------------------------------------------------------------
# Tests


def _both(pytestconfig):
    if os.environ.get("QLOOP_NO_EXTENSIONS") or pytestconfig.getoption("--no-c-extensions"):
        pytest.skip("the compiled core is not tested in this run")
    return importlib.import_module("qloop._fallback"), importlib.import_module("qloop._core")


def _assert_same(expected: list, got: list, ops: list) -> None:
    for k, (a, b) in enumerate(zip(expected, got, strict=False)):
        assert a == b, (f"first difference at trace entry {k}: fallback {a!r}, core {b!r}\n"
                        f"program: {ops!r}")
    assert len(expected) == len(got), f"trace lengths differ; program: {ops!r}"


STATS = {"examples": 0, "trace_entries": 0}


@settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=program_st)
def _differential(ops, fallback, core):
    expected = run_program(fallback, ops)
    got = run_program(core, ops)
    STATS["examples"] += 1
    STATS["trace_entries"] += len(expected)
    _assert_same(expected, got, ops)


def test_generated_programs_same_trace(pytestconfig):
    fallback, core = _both(pytestconfig)
    STATS["examples"] = STATS["trace_entries"] = 0
    _differential(fallback=fallback, core=core)
    assert STATS["examples"] >= min(N_EXAMPLES, 50)
    print(f"\nhypothesis differential: {STATS['examples']} programs, "
          f"{STATS['trace_entries']} trace entries compared")


GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def test_golden_files_exist():
    assert len(GOLDEN_FILES) >= 3, "tests/golden/*.json are missing: run make_golden.py"


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_trace(qloop_module, path):
    """Both implementations reproduce the committed trace exactly."""
    golden = json.loads(path.read_text())
    got = run_program(qloop_module, golden["program"])
    _assert_same(golden["trace"], got, golden["program"])


def test_golden_traces_cover_the_features():
    """The golden set exercises every kind of event the harness can record."""
    kinds = set()
    for path in GOLDEN_FILES:
        for entry in json.loads(path.read_text())["trace"]:
            kinds.add(entry[0])
            kinds.update(x for x in entry[1:] if isinstance(x, str))
    for needed in ["bh", "timer", "fd", "fdw", "oneshot", "poll", "timeout", "advanced",
                   "poll-exc", "Boom", "Halt", "nested", "timer-state", "bh-op-exc",
                   "RuntimeError", "nodrain", "fd-replacement"]:
        assert needed in kinds, f"no golden trace records {needed!r}"


def test_harness_detects_a_difference(qloop_module):
    """Sanity check: the trace depends on the program (so equality is not vacuous)."""
    a = run_program(qloop_module, [["bh_new", 0, "plain", 0], ["bh", 0, "schedule"], ["poll"]])
    b = run_program(qloop_module, [["bh_new", 0, "plain", 0], ["poll"]])
    assert a != b
    assert ["bh", 1, 0] in a and ["poll", True] in a
    assert ["poll", False] in b
