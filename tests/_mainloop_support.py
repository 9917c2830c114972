"""Shared fixtures and helpers for the main-loop / runstate / coroutine / signal tests.

conftest.py registers this module as a plugin, so its fixtures (``main_loop``, ``guard``) reach
every test; helpers are imported from it (the tests directory is on ``sys.path``).  Everything goes through the ``qloop_module`` fixture of
``conftest.py`` (both implementations); nothing is imported from ``qloop`` directly.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

UINT32_MAX = 0xFFFFFFFF

# A blocking main_loop_wait() in these tests is always bounded by a FILL notifier that lowers
# the timeout to this many ms, so a lost wake-up fails the test instead of hanging it.
GUARD_MS = 5000
# "Promptly": a wake-up that should be immediate must happen well within this many seconds.
PROMPT_S = 2.0


def drain_main_loop(mod: ModuleType) -> None:
    """Consume the initial notification and anything pending on the main loop's contexts."""
    ctx = mod.get_aio_context()
    io = mod.iohandler_get_aio_context()
    for _ in range(5):
        mod.main_loop_wait(True)
    for c in (ctx, io):
        for _ in range(1000):
            if not c.poll(False):
                break
        else:  # pragma: no cover - diagnostic
            raise AssertionError("context did not drain in 1000 non-blocking polls")


@pytest.fixture
def main_loop(qloop_module: ModuleType) -> Iterator[ModuleType]:
    """``qloop_module`` with the process-wide main loop initialised and drained.

    Teardown resets everything (contexts, signal handlers, notifiers, run state, child
    watches) and the clocks (manual mode off, VIRTUAL disabled).
    """
    mod = qloop_module
    mod.init_main_loop()
    try:
        drain_main_loop(mod)
        yield mod
    finally:
        mod._main_loop._shutdown_main_loop()
        mod.clock_set_manual(False)
        mod.clock_enable(mod.ClockType.VIRTUAL, False)


class PollRecorder:
    """A main-loop poll notifier that records (state, timeout) and optionally acts on FILL.

    ``bound_ms``: lower the FILL timeout to at most this (None: leave it).
    ``on_fill`` / ``on_done``: extra callables ``f(mlpoll)`` run on FILL / on OK-ERR.
    ``log``: a shared list the notifier appends "FILL"/"OK"/"ERR" to.
    """

    def __init__(self, mod: ModuleType, log: list[Any] | None = None,
                 bound_ms: int | None = GUARD_MS) -> None:
        self.mod = mod
        self.log = log if log is not None else []
        self.bound_ms = bound_ms
        self.states: list[Any] = []
        self.fill_timeouts: list[int] = []
        self.done_timeouts: list[int] = []
        self.on_fill: list[Callable[[Any], Any]] = []
        self.on_done: list[Callable[[Any], Any]] = []
        self.bql_held: list[bool] = []

    def __call__(self, mlpoll: Any) -> None:
        S = self.mod.MainLoopPollState
        self.states.append(mlpoll.state)
        self.log.append(S(mlpoll.state).name)
        self.bql_held.append(self.mod.bql_locked())
        if mlpoll.state == S.FILL:
            self.fill_timeouts.append(mlpoll.timeout)
            if self.bound_ms is not None:
                t = mlpoll.timeout
                if t == UINT32_MAX or t < 0 or t > self.bound_ms:
                    mlpoll.timeout = self.bound_ms
            for f in self.on_fill:
                f(mlpoll)
        else:
            self.done_timeouts.append(mlpoll.timeout)
            for f in self.on_done:
                f(mlpoll)


@pytest.fixture
def guard(main_loop: ModuleType) -> Iterator[PollRecorder]:
    """A PollRecorder registered on the main loop that bounds every blocking wait."""
    rec = PollRecorder(main_loop)
    main_loop.add_main_loop_poll_notifier(rec)
    yield rec
    # _shutdown_main_loop() drops the poll notifiers


def wait_until(mod: ModuleType, cond: Callable[[], bool], timeout: float = 5.0,
               max_iterations: int = 10_000) -> int:
    """Blocking main_loop_wait() until ``cond()``; fail (not hang) after ``timeout`` s.

    Each wait is bounded by a guard notifier (GUARD_MS) that the caller must have installed
    (the ``guard`` fixture).  Returns the number of iterations made.
    """
    deadline = time.monotonic() + timeout
    n = 0
    while not cond():
        if time.monotonic() > deadline or n >= max_iterations:
            pytest.fail(f"condition not reached within {timeout} s ({n} iterations)")
        mod.main_loop_wait(False)
        n += 1
    return n


def start_thread(target: Callable[[], Any]) -> threading.Thread:
    """Start a daemon thread that stores its exception on ``thread.error``."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - checked by join()
            t.error = exc  # type: ignore[attr-defined]

    t = threading.Thread(target=run, daemon=True)
    t.error = None  # type: ignore[attr-defined]
    t.start()
    return t


# The wait system calls of the loops under test (poll, ppoll, epoll_wait, epoll_pwait,
# epoll_pwait2, io_uring_enter) by machine, as /proc/self/task/<tid>/syscall numbers them.
_WAIT_SYSCALLS = {
    "x86_64": {"7", "271", "232", "281", "441", "426"},
    "aarch64": {"73", "22", "441", "426"},
}


def wait_until_thread_sleeps(native_id: int, timeout: float = PROMPT_S) -> bool:
    """Wait (bounded) until thread ``native_id`` is blocked in a poll, epoll or io_uring wait
    (Linux /proc).

    True if that was observed; False if it cannot be observed here, or was not within
    ``timeout``.  The last look comes after the deadline: the calling thread may itself have
    been kept off the CPU past it.  Callers decide what False means."""
    numbers = _WAIT_SYSCALLS.get(platform.machine())
    path = f"/proc/self/task/{native_id}/syscall"
    if numbers is None or not os.path.exists(path):
        time.sleep(0.1)
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                current = f.read().split(None, 1)[0]
        except OSError:
            return False
        if current in numbers:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)  # an upper-bounded poll of a condition, not a settle delay


def join(t: threading.Thread, timeout: float = 5.0) -> None:
    t.join(timeout)
    assert not t.is_alive(), f"thread did not finish within {timeout} s"
    if t.error is not None:  # type: ignore[attr-defined]
        raise t.error  # type: ignore[attr-defined]


def package_root(mod: ModuleType) -> str:
    """The directory to put on PYTHONPATH so a subprocess imports the same qloop."""
    return os.path.dirname(os.path.dirname(os.path.abspath(mod.__file__)))


def subprocess_env(mod: ModuleType, **extra: str) -> dict:
    """The environment for a child Python that must import the same qloop, on the same
    implementation, as ``mod`` (and GLib enabled unless ``extra`` says otherwise)."""
    env = dict(os.environ)
    root = package_root(mod)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if mod.__name__ == "qloop._fallback":
        env["QLOOP_NO_EXTENSIONS"] = "1"
        env.pop("QLOOP_REQUIRE_EXTENSIONS", None)
    else:
        env.pop("QLOOP_NO_EXTENSIONS", None)
        env["QLOOP_REQUIRE_EXTENSIONS"] = "1"
    env.pop("QLOOP_NO_GLIB", None)
    env.update(extra)
    return env


def run_python_json(mod: ModuleType, code: str, timeout: float = 30.0, **extra_env: str) -> Any:
    """Run ``code`` in a fresh interpreter that imports the qloop under test (``mod``; from
    outside the source tree, see ``subprocess_env``); its last stdout line is JSON, returned."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(mod, **extra_env),
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"child printed nothing; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])
