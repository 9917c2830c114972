"""EventNotifier (docs/notifiers.md): eventfd or pipe, set/test_and_clear, close."""

from __future__ import annotations

import os
import select

import pytest

KINDS = [pytest.param(False, id="eventfd"), pytest.param(True, id="pipe")]


def readable(fd: int) -> bool:
    r, _, _ = select.select([fd], [], [], 0)
    return bool(r)


@pytest.fixture(params=KINDS)
def notifier(request, qloop_module):
    n = qloop_module.EventNotifier(use_pipe=request.param)
    yield n
    n.close()


def test_new_notifier_is_clear(notifier):
    assert notifier.test_and_clear() is False
    assert not readable(notifier.fileno())


def test_set_then_test_and_clear(notifier):
    notifier.set()
    assert readable(notifier.fileno())
    assert notifier.test_and_clear() is True
    assert not readable(notifier.fileno())
    assert notifier.test_and_clear() is False


def test_sets_coalesce(notifier):
    for _ in range(5):
        notifier.set()
    assert notifier.test_and_clear() is True
    assert notifier.test_and_clear() is False


def test_many_sets_never_fail_and_one_clear_drains(notifier):
    # A pipe fills after 64 KiB (8192 writes of 8 bytes): EAGAIN counts as success.
    for _ in range(10_000):
        notifier.set()
    assert notifier.test_and_clear() is True
    assert not readable(notifier.fileno())
    assert notifier.test_and_clear() is False


@pytest.mark.parametrize("use_pipe", [False, True], ids=["eventfd", "pipe"])
def test_active_true_starts_set(qloop_module, use_pipe):
    with qloop_module.EventNotifier(active=True, use_pipe=use_pipe) as n:
        assert readable(n.fileno())
        assert n.test_and_clear() is True
        assert n.test_and_clear() is False


def test_default_is_inactive(qloop_module):
    with qloop_module.EventNotifier() as n:
        assert n.test_and_clear() is False


def test_fileno_is_open_fd(notifier):
    fd = notifier.fileno()
    assert isinstance(fd, int) and fd >= 0
    os.fstat(fd)  # raises if not an open fd


def test_fds_are_nonblocking_and_cloexec(notifier):
    fd = notifier.fileno()
    assert os.get_blocking(fd) is False
    assert os.get_inheritable(fd) is False


def test_context_manager_returns_self_and_closes(qloop_module):
    with qloop_module.EventNotifier() as n:
        fd = n.fileno()
        n.set()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize("use_pipe", [False, True], ids=["eventfd", "pipe"])
def test_closed_notifier_raises_runtime_error(qloop_module, use_pipe):
    n = qloop_module.EventNotifier(use_pipe=use_pipe)
    n.close()
    with pytest.raises(RuntimeError):
        n.set()
    with pytest.raises(RuntimeError):
        n.test_and_clear()
    with pytest.raises(RuntimeError):
        n.fileno()


def test_set_from_other_thread_is_seen(notifier, threads):
    threads.start(notifier.set)
    threads.join_all()
    assert notifier.test_and_clear() is True


def test_registered_with_context_calls_io_read_with_notifier(ctx, notifier):
    seen = []

    def io_read(n):
        seen.append(n)
        n.test_and_clear()

    ctx.set_event_notifier(notifier, io_read)
    assert ctx.poll(False) is False
    notifier.set()
    assert ctx.poll(False) is True
    assert seen == [notifier]
    ctx.set_event_notifier(notifier, None)
    assert ctx.poll(False) is False
