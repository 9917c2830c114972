"""Shared helpers for the qloop benchmark suite.

Every workload runs on four implementations, named by these ids (the pytest parameter
``impl``):

* ``qloop-core``      -- ``qloop._core`` (compiled), driven through its own API;
* ``qloop-fallback``  -- ``qloop._fallback`` (pure Python), same API;
* ``asyncio``         -- the stdlib's default event loop (``asyncio.SelectorEventLoop`` on POSIX);
* ``uvloop``          -- ``uvloop.new_event_loop()``.

Environment knobs (all optional):

* ``QLOOP_BENCH_SCALE``   -- multiplies every workload size (default 1.0; CI smoke test: 0.01);
* ``QLOOP_BENCH_ROUNDS``  -- timed rounds per benchmark (default 3);
* ``QLOOP_BENCH_STRICT``  -- non-empty: an implementation that cannot be imported fails the
  benchmark instead of skipping it;
* ``QLOOP_BENCH_TIMEOUT`` -- seconds one benchmark may take before the run is aborted with a
  traceback dump (default 600);
* ``QLOOP_BENCH_PIN``     -- ``0``: do not pin the two threads of ``threadsafe`` to one CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import os
import select
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

IMPLS = ("qloop-core", "qloop-fallback", "asyncio", "uvloop")
QLOOP_MODULES = {"qloop-core": "qloop._core", "qloop-fallback": "qloop._fallback"}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {raw!r}")
    return value


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {raw!r}")
    return value


SCALE = _env_float("QLOOP_BENCH_SCALE", 1.0)
ROUNDS = _env_int("QLOOP_BENCH_ROUNDS", 3)
STRICT = bool(os.environ.get("QLOOP_BENCH_STRICT", "").strip())
TIMEOUT = _env_float("QLOOP_BENCH_TIMEOUT", 600.0)
PIN = os.environ.get("QLOOP_BENCH_PIN", "1").strip() not in ("0", "", "no", "false")


def scaled(n: int, minimum: int = 1) -> int:
    """``n`` times QLOOP_BENCH_SCALE, at least ``minimum``."""
    return max(minimum, round(n * SCALE))


# ---------------------------------------------------------------------------------------------
# Implementations


@dataclass(frozen=True)
class Impl:
    """One implementation under test.

    For qloop ids ``module`` is ``qloop._core`` or ``qloop._fallback`` and ``open()`` returns a
    new ``AioContext``; for the asyncio ids ``open()`` returns a new event loop.
    """

    name: str
    module: Any = None
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None

    @property
    def is_qloop(self) -> bool:
        return self.module is not None

    def open(self, **kwargs: Any) -> Any:
        if self.is_qloop:
            return self.module.AioContext(**kwargs)
        assert self.loop_factory is not None
        return self.loop_factory()

    def skip_without_fdmon(self, fdmon: str) -> None:
        """pytest.skip when this qloop implementation cannot open a context on ``fdmon`` (the
        fallback has no io_uring; a kernel or sandbox may refuse it), with the reason."""
        import pytest

        try:
            self.open(fdmon=fdmon).close()
        except OSError as exc:
            pytest.skip(str(exc))

    @staticmethod
    def close(obj: Any) -> None:
        if obj is None:
            return
        try:
            obj.close()
        except RuntimeError:
            # closing twice, or a loop still marked running after a failed round
            pass


def _default_asyncio_loop() -> asyncio.AbstractEventLoop:
    if sys.platform == "win32":  # pragma: no cover - qloop is POSIX-first
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop()


def load_impl(name: str) -> Impl:
    """Return the Impl for ``name``; ImportError (with the reason) if it is not available."""
    if name in QLOOP_MODULES:
        with warnings.catch_warnings():
            # importing the package may warn that it fell back; the bench imports both arms
            warnings.simplefilter("ignore", RuntimeWarning)
            module = importlib.import_module(QLOOP_MODULES[name])
        return Impl(name, module=module)
    if name == "asyncio":
        return Impl(name, loop_factory=_default_asyncio_loop)
    if name == "uvloop":
        import uvloop

        return Impl(name, loop_factory=uvloop.new_event_loop)
    raise ValueError(f"unknown implementation {name!r}; expected one of {IMPLS}")


# ---------------------------------------------------------------------------------------------
# Running a benchmark


def run_rounds(
    benchmark: Any,
    target: Callable[..., Any],
    *,
    ops: int,
    expect: Any,
    setup: Callable[[], tuple] | None = None,
    cleanup: Callable[..., None] | None = None,
    rounds: int | None = None,
    gc_disabled: bool = False,
    **extra_info: Any,
) -> list[Any]:
    """Time ``target(*setup())`` with ``benchmark.pedantic``, one call per round.

    ``setup()`` (untimed) returns the positional arguments of one round; ``cleanup(*args)``
    releases them (it runs after each round and again, idempotently, at the end, since
    pytest-benchmark skips teardown when benchmarks are disabled).  Every round's result must
    equal ``expect``: the workload really ran to completion.  ``ops`` (the operations one round
    performs) goes to ``extra_info`` so that ops/s can be computed from the JSON.
    ``gc_disabled``: the cyclic GC is off during each timed round (for workloads that measure
    an algorithm's scaling rather than allocation costs, where collections triggered by the
    size of the live heap would blur the comparison).
    Returns every round's result.
    """
    made: list[tuple] = []
    results: list[Any] = []

    def _setup():
        gc.collect()
        args = setup() if setup is not None else ()
        made.append(args)
        return args, {}

    def _target(*args):
        if gc_disabled:
            gc.disable()
            try:
                result = target(*args)
            finally:
                gc.enable()
        else:
            result = target(*args)
        results.append(result)
        return result

    def _teardown(*args):
        if cleanup is not None:
            cleanup(*args)

    benchmark.extra_info["ops"] = ops
    benchmark.extra_info["scale"] = SCALE
    benchmark.extra_info["gc"] = "disabled while timed" if gc_disabled else "enabled"
    benchmark.extra_info.update(extra_info)
    try:
        benchmark.pedantic(
            _target,
            setup=_setup,
            teardown=_teardown,
            rounds=rounds or ROUNDS,
            iterations=1,
            warmup_rounds=0,
        )
    finally:
        if cleanup is not None:
            for args in made:
                cleanup(*args)
    assert results, "the benchmark did not run"
    for result in results:
        assert result == expect, f"workload result {result!r}, expected {expect!r}"
    return results


@contextlib.contextmanager
def pinned_to_one_cpu(enabled: bool = True):
    """Pin the calling thread (and the threads it starts meanwhile) to one CPU.

    Yields the CPU number, or None when pinning is off or unsupported.  Two threads that hand
    the GIL back and forth gain nothing from two CPUs, and unpinned they are bimodal on a VM
    (measured on 2 vCPUs: the same 50,000 round trips take 0.7 s or 2.5 s depending on whether
    the scheduler keeps them together), so pinning makes the comparison repeatable.
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    old = os.sched_getaffinity(0)
    cpu = min(old)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        yield None
        return
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, old)


# ---------------------------------------------------------------------------------------------
# Subprocesses (echo server/client, memory probe)


def subprocess_env() -> dict[str, str]:
    """Environment for bench subprocesses: they import ``bench`` and the same ``qloop``."""
    paths = [str(REPO_ROOT)]
    try:
        spec = importlib.util.find_spec("qloop")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        parent = str(Path(spec.origin).resolve().parent.parent)
        if parent not in paths:
            paths.insert(0, parent)
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def readline(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """Read one line from ``proc.stdout`` (a text pipe) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: no answer within {timeout:.0f} s")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                err = ""
                if proc.stderr is not None:
                    try:
                        proc.wait(timeout=5)
                        err = proc.stderr.read()
                    except subprocess.TimeoutExpired:
                        pass
                raise RuntimeError(
                    f"{what}: process ended (rc={proc.poll()}): {err[-2000:]}"
                )
            return line.rstrip("\n")


def stop_process(proc: subprocess.Popen | None) -> None:
    """Terminate a subprocess started by the bench (by its own handle, never by name)."""
    if proc is None or proc.poll() is not None:
        return
    for pipe in (proc.stdin,):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass
    try:
        proc.terminate()
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) that process ``pid`` has used so far.

    Uses ``/proc/PID/task/*/schedstat`` (nanoseconds) when the kernel provides it, else
    ``/proc/PID/stat`` utime + stime (clock ticks).
    """
    task_dir = Path(f"/proc/{pid}/task")
    try:
        total_ns = 0
        for task in task_dir.iterdir():
            with open(task / "schedstat") as f:
                total_ns += int(f.read().split()[0])
        return total_ns / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return sum(process_user_system_seconds(pid))


def process_user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` from ``/proc/PID/stat`` (clock ticks).

    ``fields[0]`` below is stat field 3 (state); utime and stime are fields 14 and 15.

    Coarser than :func:`process_cpu_seconds` (1/CLK_TCK, usually 10 ms) but split: on a
    loopback echo most system time is the kernel's TCP work, the user time is the loop's own.
    """
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def machine_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy (not idle/iowait) over ``seconds``, from ``/proc/stat``.

    Sampled while this process sleeps, so it measures other load on the machine.
    """

    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1.0 - (idle1 - idle0) / total


def cpu_snapshot() -> dict | None:
    """Machine-wide busy CPU seconds (``/proc/stat``), this process tree's CPU seconds, and time.

    Two snapshots give the CPU that *other* processes used in between (see :func:`other_load`).
    """
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user + nice + system only: irq/softirq time (the loopback TCP work of the echo benchmark
    # lands there) is charged to no process, and steal is the hypervisor's
    busy_ticks = values[0] + values[1] + values[2]
    t = os.times()
    return {
        "machine_busy_s": busy_ticks / _CLK_TCK,
        "own_s": t.user + t.system + t.children_user + t.children_system,
        "wall": time.monotonic(),
    }


def other_load(start: dict | None, end: dict | None) -> dict | None:
    """CPU used by other processes between two :func:`cpu_snapshot` calls.

    Children are counted once reaped (every bench subprocess is waited for), so the figure is
    an estimate; ``cpus`` is the average number of CPUs that other load kept busy.
    """
    if not start or not end:
        return None
    wall = end["wall"] - start["wall"]
    other = (end["machine_busy_s"] - start["machine_busy_s"]) - (
        end["own_s"] - start["own_s"]
    )
    return {
        "wall_s": wall,
        "other_cpu_s": max(0.0, other),
        "cpus": max(0.0, other) / wall if wall > 0 else None,
    }


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raise_nofile_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted``; return the soft limit now."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else soft
