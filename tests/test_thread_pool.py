"""The thread pool of an AioContext (docs/thread-pool.md; QEMU's thread-pool.c and its
tests): submission, delivery in the context, newest-first delivery of a batch, cancellation,
coroutines, the worker limits, teardown with the context, and 8 submitting threads.

Both implementations run every test (the pool is shared code over each one's contexts and
BHs).  No test sleeps: workers are gated with events, and the context is polled until the
callbacks it expects ran.
"""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

WAIT = 10.0  # seconds an event wait may take before the test fails instead of hanging


def _identity(x):
    return x


def _join_workers(pool, ctx=None):
    """Join the pool's workers until none is left (ones still being started included)."""
    for _ in range(1000):
        if ctx is not None and not ctx.closed:
            ctx.poll(False)  # a worker may be started from a BH
        workers = list(pool._threads)
        if not workers and pool.threads == 0:
            return
        for t in workers:
            if t.ident is not None:  # started
                t.join(WAIT)
                assert not t.is_alive()
    raise AssertionError(f"workers left: {pool!r}")


def test_one_pool_per_context_made_on_first_use(qloop_module, ctx):
    pool = ctx.thread_pool()
    assert ctx.thread_pool() is pool
    assert isinstance(pool, qloop_module.ThreadPool)
    assert pool.ctx is ctx
    assert (pool.min_threads, pool.max_threads, pool.threads) == (0, 64, 0)
    with pytest.raises(TypeError, match="AioContext.thread_pool"):
        qloop_module.ThreadPool()
    with pytest.raises(TypeError, match="ThreadPool.submit"):
        qloop_module.ThreadPoolRequest()


def test_submit_delivers_the_result_in_the_context(ctx, poll_until):
    pool = ctx.thread_pool()
    me = threading.get_ident()
    got = []

    def work(a, b):
        return a + b, threading.get_ident() != me

    reqs = [pool.submit(work, i, 10, callback=lambda v: got.append((v, threading.get_ident())))
            for i in range(20)]
    poll_until(ctx, lambda: len(got) == 20)
    assert sorted(v for v, _ in got) == [(i + 10, True) for i in range(20)]
    assert {t for _, t in got} == {me}
    assert all(r.done and r.state == "done" and not r.cancelled for r in reqs)
    assert reqs[3].result() == (13, True)


def test_an_exception_goes_to_the_callback_and_result_raises_it(ctx, poll_until):
    pool = ctx.thread_pool()
    got = []

    def boom():
        raise ValueError("in the worker")

    req = pool.submit(boom, callback=got.append)
    poll_until(ctx, lambda: got)
    assert isinstance(got[0], ValueError)
    with pytest.raises(ValueError, match="in the worker"):
        req.result()


def test_no_callback_is_fine(ctx, poll_until):
    req = ctx.thread_pool().submit(_identity, 5)
    poll_until(ctx, lambda: req.done)
    ctx.poll(False)
    assert req.result() == 5


class _Gate:
    """Jobs that block until the test opens their gate."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = threading.Event()

    def job(self, value):
        self.started.set()
        assert self.gate.wait(WAIT)
        return value


def test_a_batch_is_delivered_newest_submission_first_and_cancel_works(ctx, poll_until):
    """One worker: A blocks, B..E queue behind it; C is cancelled while queued (True), A
    while running cannot be (False).  E holds the worker once A, B and D are done: the next
    poll delivers that batch newest first, C's cancellation among them."""
    pool = ctx.thread_pool()
    pool.set_params(0, 1)
    a, e = _Gate(), _Gate()
    order = []

    def cb(name):
        return lambda v: order.append((name, v))

    ra = pool.submit(a.job, "A", callback=cb("A"))
    ctx.poll(False)  # the BH that starts the worker
    assert a.started.wait(WAIT)
    rb = pool.submit(_identity, "B", callback=cb("B"))
    rc = pool.submit(_identity, "C", callback=cb("C"))
    rd = pool.submit(_identity, "D", callback=cb("D"))
    re_ = pool.submit(e.job, "E", callback=cb("E"))
    assert (ra.state, rb.state) == ("active", "queued")
    assert not ra.cancel()
    assert rc.cancel() and rc.cancelled and rc.done
    assert not rc.cancel()
    a.gate.set()
    assert e.started.wait(WAIT)  # A, B and D are done: one worker takes jobs in order
    ctx.poll(False)
    assert [name for name, _ in order] == ["D", "C", "B", "A"]
    assert isinstance(order[1][1], concurrent.futures.CancelledError)
    with pytest.raises(concurrent.futures.CancelledError):
        rc.result()
    assert rd.result() == "D" and not ra.cancelled
    e.gate.set()
    poll_until(ctx, lambda: len(order) == 5)
    assert order[-1] == ("E", "E") and re_.result() == "E"


def test_result_before_done_is_an_error(ctx, poll_until):
    pool = ctx.thread_pool()
    g = _Gate()
    req = pool.submit(g.job, 1)
    with pytest.raises(RuntimeError, match="still"):
        req.result()
    g.gate.set()
    poll_until(ctx, lambda: req.done)
    ctx.poll(False)


def test_a_nested_poll_in_a_callback_delivers_the_other_completions(ctx, poll_until):
    """Why the completion BH reschedules itself before each callback: a callback that waits
    (nested poll) for another request already completed sees it delivered."""
    pool = ctx.thread_pool()
    pool.set_params(0, 1)
    g, last = _Gate(), _Gate()
    got = []

    def newest_cb(v):
        got.append(v)
        for _ in range(100):  # wait for X, the older one, from inside this callback
            if "X" in got:
                break
            ctx.poll(False)
        got.append("nested done")

    pool.submit(g.job, "X", callback=got.append)
    pool.submit(_identity, "Y", callback=newest_cb)
    pool.submit(last.job, "last", callback=got.append)
    ctx.poll(False)
    g.gate.set()
    assert last.started.wait(WAIT)  # X and Y are done
    ctx.poll(False)
    assert got == ["Y", "X", "nested done"]
    last.gate.set()
    poll_until(ctx, lambda: "last" in got)


def test_a_raising_callback_does_not_lose_the_others(ctx, ctx_checks, poll_until):
    ctx_checks.expect_errors(ZeroDivisionError)
    pool = ctx.thread_pool()
    pool.set_params(0, 1)
    g, last = _Gate(), _Gate()
    got = []
    pool.submit(g.job, 1, callback=got.append)
    pool.submit(_identity, 2, callback=lambda v: 1 / 0)
    pool.submit(last.job, 3, callback=got.append)
    ctx.poll(False)
    g.gate.set()
    assert last.started.wait(WAIT)
    with pytest.raises(ZeroDivisionError):
        ctx.poll(False)  # 2's callback raises; 1 is still delivered (the BH stayed scheduled)
    poll_until(ctx, lambda: 1 in got)
    last.gate.set()
    poll_until(ctx, lambda: 3 in got)


def test_co_submit_resumes_the_coroutine_with_the_result(qloop_module, ctx, poll_until):
    mod = qloop_module
    pool = ctx.thread_pool()
    log = []

    def boom():
        raise KeyError("k")

    async def body():
        log.append(await pool.co_submit(_identity, 7))
        log.append(mod.in_coroutine())
        try:
            await pool.co_submit(boom)
        except KeyError as exc:
            log.append(repr(exc))
        return "end"

    co = mod.Coroutine(body(), ctx=ctx)
    co.enter()
    poll_until(ctx, lambda: co.done)
    assert log == [7, True, "KeyError('k')"]
    assert co.result == "end"
    with pytest.raises(RuntimeError, match="inside a qloop Coroutine"):
        pool.co_submit(_identity, 1).__await__().send(None)


def test_bad_input(ctx):
    pool = ctx.thread_pool()

    async def coro_fn():
        pass

    with pytest.raises(TypeError, match="fn must be callable"):
        pool.submit(42)
    with pytest.raises(TypeError, match="coroutine function"):
        pool.submit(coro_fn)
    with pytest.raises(TypeError, match="callback must be callable"):
        pool.submit(_identity, 1, callback=3)
    with pytest.raises(TypeError, match="fn must be callable"):
        pool.co_submit(None)
    for lo, hi in ((-1, 4), (0, 0), (5, 4)):
        with pytest.raises(ValueError, match="bad thread pool parameters"):
            pool.set_params(lo, hi)
    with pytest.raises(TypeError):
        pool.set_params(1.5, 4)
    assert pool.threads == 0  # nothing was submitted


def test_set_params_spawns_the_minimum(ctx, poll_until):
    pool = ctx.thread_pool()
    pool.set_params(3, 4)
    assert (pool.min_threads, pool.max_threads, pool.threads) == (3, 4, 3)
    ctx.poll(False)  # the first worker starts from a BH, and starts the next one
    pool.set_params(0, 1)  # the extra ones exit when they next look for work
    got = []
    for i in range(10):
        pool.submit(_identity, i, callback=got.append)
    poll_until(ctx, lambda: len(got) == 10)
    assert sorted(got) == list(range(10))


def test_close_tears_the_pool_down(qloop_module, make_ctx, poll_until):
    ctx = make_ctx(owned=False)
    pool = ctx.thread_pool()
    pool.set_params(0, 1)
    g = _Gate()
    got = []
    running = pool.submit(g.job, 1, callback=got.append)
    ctx.poll(False)
    assert g.started.wait(WAIT)
    queued = pool.submit(_identity, 2, callback=got.append)
    ctx.close()
    assert queued.cancelled and queued.done
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(_identity, 3)
    with pytest.raises(RuntimeError, match="closed"):
        ctx.thread_pool()
    g.gate.set()  # the running job finishes in the background; nothing is delivered
    _join_workers(pool)
    assert running.result() == 1 and got == [] and pool.threads == 0


def test_idle_workers_exit_at_close(make_ctx, poll_until):
    ctx = make_ctx(owned=False)
    pool = ctx.thread_pool()
    got = []
    pool.submit(_identity, 1, callback=got.append)
    poll_until(ctx, lambda: got)
    ctx.close()
    _join_workers(pool)
    assert pool.threads == 0


def test_completions_from_eight_submitting_threads(ctx, threads, poll_until):
    """8 threads submit 2,000 jobs each to one context's pool while that context's thread
    polls: every callback runs exactly once, in the context's thread, with its own result."""
    pool = ctx.thread_pool()
    per_thread, nthreads = 2000, 8
    me = threading.get_ident()
    seen: dict[tuple[int, int], int] = {}
    wrong_thread = []

    def cb(value):
        if threading.get_ident() != me:
            wrong_thread.append(value)
        seen[value] = seen.get(value, 0) + 1

    start = threading.Barrier(nthreads)

    def submitter(k):
        start.wait(WAIT)
        for i in range(per_thread):
            pool.submit(_identity, (k, i), callback=cb)

    for k in range(nthreads):
        threads.start(submitter, k)
    poll_until(ctx, lambda: len(seen) == per_thread * nthreads, timeout=60)
    threads.join_all()
    ctx.poll(False)
    assert wrong_thread == []
    assert set(seen) == {(k, i) for k in range(nthreads) for i in range(per_thread)}
    assert set(seen.values()) == {1}
    assert pool.threads <= pool.max_threads


def test_a_batch_of_completions_is_delivered_by_one_poll(ctx, poll_until):
    """Workers finishing while the context is busy schedule the (already pending) completion
    BH: one iteration delivers the whole batch."""
    pool = ctx.thread_pool()
    pool.set_params(0, 1)
    g, last = _Gate(), _Gate()
    got = []
    pool.submit(g.job, -1, callback=got.append)
    for i in range(100):
        pool.submit(_identity, i, callback=got.append)
    pool.submit(last.job, 100, callback=got.append)
    ctx.poll(False)
    g.gate.set()
    assert last.started.wait(WAIT)  # the 101 jobs before it are done
    assert ctx.poll(False) is True
    assert got == list(range(99, -2, -1))  # all in one iteration, newest first
    last.gate.set()
    poll_until(ctx, lambda: 100 in got)


def test_idle_workers_above_the_minimum_exit(ctx, poll_until, monkeypatch):
    from qloop._main import threadpool

    monkeypatch.setattr(threadpool, "IDLE_TIMEOUT", 0.01)
    pool = ctx.thread_pool()
    got = []
    for i in range(4):
        pool.submit(_identity, i, callback=got.append)
    poll_until(ctx, lambda: len(got) == 4)
    _join_workers(pool, ctx)
    assert pool.threads == 0 and pool.idle_threads == 0


def test_a_forked_child_starts_its_own_workers(qloop_module, ctx, poll_until):
    """The workers do not survive fork(): the child's pool forgets them and starts new ones."""
    import os

    pool = ctx.thread_pool()
    got = []
    pool.submit(_identity, 1, callback=got.append)
    poll_until(ctx, lambda: got)  # the parent's pool has a worker now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            child_got = []
            fired = []
            rt = qloop_module.ClockType.REALTIME
            dog = ctx.timer_new_ns(rt, lambda: fired.append(1))  # a lost job ends the wait
            dog.mod_ns(qloop_module.clock_get_ns(rt) + 10**10)
            pool.submit(_identity, 7, callback=child_got.append)
            while not child_got and not fired:
                ctx.poll(True)
            code = 0 if child_got == [7] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
