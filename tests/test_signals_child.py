"""Signals (docs/signals-and-children.md: main_loop() turns SIGINT/SIGTERM/SIGHUP into
system_killed; add_signal_handler) and the child watch (qemu_add_child_watch), on both
implementations.  One test runs main_loop() in a real subprocess and sends it a real signal.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from _mainloop_support import PROMPT_S, join, start_thread, subprocess_env, wait_until

PROG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "progs", "sigterm_main_loop.py")


# --------------------------------------------------------------------------------------------
# a real signal to a real main_loop()


def _read_line(proc, deadline):
    """One line of the child's stdout, failing (not hanging) at ``deadline``."""
    fd = proc.stdout.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no complete line from the child in time (got {buf!r})")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            pytest.fail(f"child closed stdout (got {buf!r}); exit {proc.poll()}")
        buf += chunk
    return buf.decode().rstrip("\n")


def _spawn_main_loop(mod, ignore=None):
    """The helper program.  It first gives its termination signals Python's own start-up
    handlers, except ``ignore`` (SIG_IGN, as under nohup): what the test sees must not depend
    on how pytest itself was started (a shell's background job ignores SIGINT, nohup SIGHUP)."""
    cmd = [sys.executable, PROG, "--reset-signals"]
    if ignore is not None:
        cmd += ["--ignore", ignore]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env(mod), cwd=os.path.dirname(PROG))


def _signal_when_ready(proc, *signals):
    """Wait for the child's ``impl ...`` and ``ready`` lines, send it ``signals`` and collect
    its exit: (the first line, stdout, stderr, seconds from the first signal to the exit).  A
    child still running after the wait is killed."""
    try:
        deadline = time.monotonic() + 10.0
        first = _read_line(proc, deadline)
        assert _read_line(proc, deadline) == "ready"
        t0 = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=5.0)
        return first, out.decode(), err.decode(), time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_real_signal_ends_main_loop_in_subprocess(qloop_module, signame):
    mod = qloop_module
    sig = getattr(signal, signame)
    proc = _spawn_main_loop(mod)
    first, out, err, elapsed = _signal_when_ready(proc, sig)
    expected_impl = "fallback" if mod.__name__ == "qloop._fallback" else "core"
    assert first.split()[:2] == ["impl", expected_impl]
    # the same qloop package as the one under test
    assert os.path.realpath(first.split(None, 2)[2]) == os.path.realpath(
        os.path.dirname(mod.__file__))
    assert proc.returncode == 0, err
    assert out.splitlines() == ["shutdown-notifier HOST_SIGNAL"]
    assert f"terminating on signal {int(sig)}" in err
    assert elapsed < 5.0


def test_an_ignored_signal_stays_ignored(qloop_module):
    """Under nohup SIGHUP is ignored: main_loop() leaves it so, and the SIGTERM that follows
    is the one that ends the loop."""
    proc = _spawn_main_loop(qloop_module, ignore="SIGHUP")
    first, out, err, _ = _signal_when_ready(proc, signal.SIGHUP, signal.SIGTERM)
    assert first.split()[0] == "impl"
    assert proc.returncode == 0, err
    assert out.splitlines() == ["shutdown-notifier HOST_SIGNAL"]
    assert [line for line in err.splitlines() if "terminating" in line] == [
        f"qloop: terminating on signal {int(signal.SIGTERM)}"]


def test_subprocess_impl_flag(qloop_module):
    """The helper's --impl flag imports the requested implementation module directly."""
    mod = qloop_module
    impl = "fallback" if mod.__name__ == "qloop._fallback" else "core"
    env = subprocess_env(mod)
    env.pop("QLOOP_NO_EXTENSIONS", None)
    proc = subprocess.Popen([sys.executable, PROG, "--impl", impl], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    first, out, err, _ = _signal_when_ready(proc, signal.SIGTERM)
    assert first.split()[:2] == ["impl", impl]
    assert proc.returncode == 0, err
    assert "shutdown-notifier HOST_SIGNAL" in out


def test_main_loop_installs_and_removes_termination_handlers(main_loop, guard):
    mod = main_loop
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    custom_calls = []

    def custom(signum, frame):  # a user's own handler is left alone
        custom_calls.append(signum)

    prev_hup = signal.signal(signal.SIGHUP, custom)
    try:
        during = {}

        def inside():
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                during[s] = signal.getsignal(s)
            mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)

        mod.bh_new(inside).schedule()
        assert mod.main_loop() == 0
        assert during[signal.SIGHUP] is custom
        for s in (signal.SIGINT, signal.SIGTERM):
            assert during[s] not in (signal.SIG_DFL, signal.default_int_handler, before[s])
        assert signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) == before[signal.SIGINT]
        assert signal.getsignal(signal.SIGHUP) is custom
    finally:
        signal.signal(signal.SIGHUP, prev_hup)
    assert custom_calls == []


# --------------------------------------------------------------------------------------------
# add_signal_handler / remove_signal_handler


@pytest.mark.parametrize("target", ["process", "main-thread"])
def test_sigusr1_from_thread_wakes_main_loop(main_loop, guard, target):
    mod = main_loop
    main_ident = threading.get_ident()
    calls = []

    def on_usr1():  # no arguments
        calls.append((threading.get_ident(), mod.bql_locked()))

    mod.add_signal_handler(signal.SIGUSR1, on_usr1)
    threads = []

    def send():
        if target == "process":
            os.kill(os.getpid(), signal.SIGUSR1)
        else:
            signal.pthread_kill(main_ident, signal.SIGUSR1)

    def fill(ml):
        if not threads:
            threads.append(start_thread(send))

    guard.on_fill.append(fill)
    t0 = time.monotonic()
    wait_until(mod, lambda: bool(calls), timeout=PROMPT_S, max_iterations=5)
    elapsed = time.monotonic() - t0
    join(threads[0])
    assert elapsed < PROMPT_S
    assert calls == [(main_ident, True)]  # in the main loop, in the main thread, with the BQL
    assert mod.remove_signal_handler(signal.SIGUSR1) is True


def test_signal_handler_callback_exception_is_raised_by_main_loop_wait(main_loop, guard):
    mod = main_loop
    calls = []

    def bad():
        calls.append(1)
        raise LookupError("from signal callback")

    mod.add_signal_handler(signal.SIGUSR2, bad)
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
    with pytest.raises(LookupError):
        wait_until(mod, lambda: False, timeout=PROMPT_S, max_iterations=5)
    assert calls == [1]
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


def test_signal_callback_not_run_from_nested_poll(main_loop):
    mod = main_loop
    ctx = mod.get_aio_context()
    calls = []
    mod.add_signal_handler(signal.SIGUSR2, lambda: calls.append(1))
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)  # handled at once (main thread)
    for _ in range(3):
        ctx.poll(False)
    assert calls == []  # not from a nested poll of the main context
    for _ in range(3):
        mod.main_loop_wait(True)
    assert calls == [1]


def test_signal_callback_runs_in_next_main_loop_wait(main_loop):
    mod = main_loop
    calls = []
    mod.add_signal_handler(signal.SIGUSR2, lambda: calls.append(mod.bql_locked()))
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
    assert calls == []  # not from the Python-level signal handler itself
    for _ in range(3):
        mod.main_loop_wait(True)
    assert calls == [True]


@pytest.mark.parametrize("signame", ["SIGKILL", "SIGSTOP"])
def test_unhandleable_signals_raise(main_loop, signame):
    mod = main_loop
    with pytest.raises(ValueError):
        mod.add_signal_handler(getattr(signal, signame), lambda: None)
    with pytest.raises(ValueError):
        mod.remove_signal_handler(getattr(signal, signame))


@pytest.mark.parametrize("signum", [0, -1, signal.NSIG, 10_000])
def test_invalid_signal_numbers_raise(main_loop, signum):
    mod = main_loop
    with pytest.raises(ValueError):
        mod.add_signal_handler(signum, lambda: None)
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


def test_signal_handler_bad_arguments(main_loop):
    mod = main_loop
    before = signal.getsignal(signal.SIGUSR2)
    with pytest.raises(TypeError):
        mod.add_signal_handler(signal.SIGUSR2, "not callable")
    with pytest.raises(TypeError):
        mod.add_signal_handler(signal.SIGUSR2, None)
    with pytest.raises(TypeError):
        mod.add_signal_handler("SIGUSR2", lambda: None)
    assert signal.getsignal(signal.SIGUSR2) == before  # nothing installed
    errors = []

    def from_thread():
        try:
            mod.add_signal_handler(signal.SIGUSR2, lambda: None)
        except RuntimeError as exc:
            errors.append(exc)

    join(start_thread(from_thread))
    assert len(errors) == 1
    assert signal.getsignal(signal.SIGUSR2) == before


def test_remove_signal_handler_restores_previous(main_loop):
    mod = main_loop
    mine = []

    def previous(signum, frame):
        mine.append(signum)

    old = signal.signal(signal.SIGUSR2, previous)
    try:
        mod.add_signal_handler(signal.SIGUSR2, lambda: None)
        assert signal.getsignal(signal.SIGUSR2) is not previous
        mod.add_signal_handler(signal.SIGUSR2, lambda: None)  # replace the callback
        assert mod.remove_signal_handler(signal.SIGUSR2) is True
        assert signal.getsignal(signal.SIGUSR2) is previous  # the one before the first add
        assert mod.remove_signal_handler(signal.SIGUSR2) is False
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
        assert mine == [signal.SIGUSR2]  # delivered to the restored handler
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_replaced_signal_callback_is_used(main_loop, guard):
    mod = main_loop
    log = []
    mod.add_signal_handler(signal.SIGUSR2, lambda: log.append("old"))
    mod.add_signal_handler(signal.SIGUSR2, lambda: log.append("new"))
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
    wait_until(mod, lambda: bool(log), timeout=PROMPT_S, max_iterations=5)
    assert log == ["new"]
    mod.remove_signal_handler(signal.SIGUSR2)


# --------------------------------------------------------------------------------------------
# add_child_watch


def _reaped(pid):
    """True once ``pid`` is no longer our child (reaped); never reaps it itself."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def _spawn_sleep(seconds="0.05"):
    return subprocess.Popen(["sleep", seconds])


def test_child_watch_reaps_exited_child(main_loop, guard):
    mod = main_loop
    proc = _spawn_sleep()
    try:
        assert mod.add_child_watch(proc.pid) == 0
        assert mod.add_child_watch(proc.pid) == 1  # already watched
        t0 = time.monotonic()
        wait_until(mod, lambda: _reaped(proc.pid), timeout=PROMPT_S + 1, max_iterations=20)
        assert time.monotonic() - t0 < PROMPT_S + 1
        with pytest.raises(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)  # no zombie left
    finally:
        if proc.poll() is None:  # pragma: no cover - only if the watch failed
            proc.kill()
            proc.wait()


def test_child_watch_several_children(main_loop, guard):
    mod = main_loop
    procs = [_spawn_sleep(s) for s in ("0.01", "0.05", "0.1")]
    try:
        for p in procs:
            assert mod.add_child_watch(p.pid) == 0
        wait_until(mod, lambda: all(_reaped(p.pid) for p in procs), timeout=PROMPT_S + 1,
                   max_iterations=30)
        for p in procs:
            with pytest.raises(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)
        # a pid can be watched again only while it is a child: now it is not
        with pytest.raises(ValueError):
            mod.add_child_watch(procs[0].pid)
    finally:
        for p in procs:
            if p.poll() is None:  # pragma: no cover
                p.kill()
                p.wait()


def test_child_watch_of_already_exited_child_reaps_it(main_loop):
    mod = main_loop
    proc = subprocess.Popen(["true"])
    # wait for it to exit without reaping it
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert not _reaped(proc.pid)  # a zombie
    assert mod.add_child_watch(proc.pid) == 0
    assert _reaped(proc.pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)


@pytest.mark.parametrize("which", ["self", "parent", "init", "zero", "negative"])
def test_child_watch_of_non_child_raises(main_loop, which):
    mod = main_loop
    pid = {"self": os.getpid(), "parent": os.getppid(), "init": 1, "zero": 0,
           "negative": -5}[which]
    with pytest.raises(ValueError):
        mod.add_child_watch(pid)
    ran = []
    mod.bh_new(lambda: ran.append(True)).schedule()
    mod.main_loop_wait(True)
    assert ran == [True]


def test_child_watch_bad_type(main_loop):
    mod = main_loop
    with pytest.raises(TypeError):
        mod.add_child_watch("1234")
    with pytest.raises(TypeError):
        mod.add_child_watch(12.5)


def test_child_watch_running_child_is_not_reaped_early(main_loop):
    mod = main_loop
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert mod.add_child_watch(proc.pid) == 0
        for _ in range(3):
            mod.main_loop_wait(True)
        assert not _reaped(proc.pid)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------
# add_child_watch(pid, callback): the exit status


@pytest.mark.parametrize("how,expected", [("exit 0", 0), ("exit 7", 7),
                                          ("kill -TERM $$", -signal.SIGTERM)])
def test_child_watch_callback_gets_returncode(main_loop, guard, how, expected):
    mod = main_loop
    proc = subprocess.Popen(["sh", "-c", how])
    got = []
    try:
        assert mod.add_child_watch(proc.pid, lambda pid, rc: got.append(
            (pid, rc, mod.bql_locked(), threading.get_ident()))) == 0
        wait_until(mod, lambda: bool(got), timeout=PROMPT_S + 1, max_iterations=50)
    finally:
        if proc.poll() is None:  # pragma: no cover - only if the watch failed
            proc.kill()
            proc.wait()
    assert got == [(proc.pid, expected, True, threading.get_ident())]
    assert _reaped(proc.pid)


def test_child_watch_callback_of_already_exited_child_runs_in_the_loop(main_loop):
    mod = main_loop
    proc = subprocess.Popen(["sh", "-c", "exit 3"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
    got = []
    assert mod.add_child_watch(proc.pid, lambda pid, rc: got.append(rc)) == 0
    assert _reaped(proc.pid)
    assert got == []  # not from inside add_child_watch
    for _ in range(3):
        if got:
            break
        mod.main_loop_wait(True)
    assert got == [3]


def test_child_watch_second_callback_is_added(main_loop, guard):
    mod = main_loop
    proc = subprocess.Popen(["sh", "-c", "exit 5"])
    got = []
    try:
        assert mod.add_child_watch(proc.pid, lambda pid, rc: got.append(("a", rc))) == 0
        assert mod.add_child_watch(proc.pid, lambda pid, rc: got.append(("b", rc))) == 1
        wait_until(mod, lambda: len(got) == 2, timeout=PROMPT_S + 1, max_iterations=50)
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
            proc.wait()
    assert got == [("a", 5), ("b", 5)]


def test_child_watch_callback_errors(main_loop, guard):
    mod = main_loop
    with pytest.raises(TypeError):
        mod.add_child_watch(os.getpid(), "not callable")
    proc = subprocess.Popen(["true"])
    try:
        def bad(pid, rc):
            raise ValueError("from the child callback")

        mod.add_child_watch(proc.pid, bad)
        with pytest.raises(ValueError, match="from the child callback"):
            wait_until(mod, lambda: _reaped(proc.pid) and False, timeout=PROMPT_S + 1,
                       max_iterations=50)
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
            proc.wait()


def test_watch_child_on_any_context(qloop_module, make_ctx, poll_until):
    """The reusable piece: a pidfd handler on a given context, callback from its dispatch."""
    from qloop._main.childwatch import watch_child

    ctx = make_ctx()
    proc = subprocess.Popen(["sh", "-c", "exit 9"])
    got = []
    watch = watch_child(ctx, proc.pid, lambda pid, rc: got.append(rc))
    try:
        poll_until(ctx, lambda: bool(got))
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
            proc.wait()
    assert got == [9] and watch.returncode == 9 and watch.done


def test_watch_child_cancel_leaves_child_unreaped(qloop_module, make_ctx):
    from qloop._main.childwatch import watch_child

    ctx = make_ctx()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        watch = watch_child(ctx, proc.pid, lambda pid, rc: None)
        watch.cancel()
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        for _ in range(3):
            ctx.poll(False)
        assert not _reaped(proc.pid)
    finally:
        proc.wait()


# --------------------------------------------------------------------------------------------
# the signal hub: one owner of the wake-up fd, several subscribers


def test_signal_hub_two_subscribers_and_restore(main_loop, make_ctx, poll_until):
    """The main loop's handler and another loop's subscription for the same signal both get
    it; the wake-up fd and the previous handler come back when both are gone."""
    from qloop._main.signal_hub import SIGNAL_HUB

    mod = main_loop
    before_handler = signal.getsignal(signal.SIGUSR1)
    before_wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before_wakeup)
    other = make_ctx()
    got_other = []
    bh = other.bh_new(lambda: got_other.append("other"))

    def deliver(signum):
        bh.schedule()  # signal-safe

    sub = SIGNAL_HUB.subscribe(signal.SIGUSR1, deliver, other)
    got_main = []
    mod.add_signal_handler(signal.SIGUSR1, lambda: got_main.append("main"))
    try:
        t = start_thread(lambda: os.kill(os.getpid(), signal.SIGUSR1))
        join(t)
        poll_until(other, lambda: bool(got_other))
        for _ in range(5):
            if got_main:
                break
            mod.main_loop_wait(True)
        assert got_other == ["other"] and got_main == ["main"]
    finally:
        mod.remove_signal_handler(signal.SIGUSR1)
        assert SIGNAL_HUB.subscribed(signal.SIGUSR1)  # still the other subscriber's
        sub.cancel()
        sub.cancel()  # idempotent
    assert not SIGNAL_HUB.subscribed(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == before_handler
    now = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(now)
    assert now == before_wakeup
