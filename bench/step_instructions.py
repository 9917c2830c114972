"""Instructions per step of the asyncio micro workloads, split by where they run (callgrind).

    python -m bench.step_instructions [--workload ...] [--impl ...] [--steps N]

Each workload (the same code as the ``bench/test_aio_*.py`` rows) runs under
``valgrind --tool=callgrind`` twice, with N and 2N steps, in a fresh interpreter; the
difference divided by N is its cost per step without the start-up.  Each instruction is
charged to the binary it ran in:

* ``loop``     -- the loop's own compiled module (qloop's core, uvloop's or rloop's extension;
                  asyncio's loop and qloop's fallback are Python, so their share is inside
                  ``CPython``);
* ``_asyncio`` -- CPython's C accelerator of ``Task`` and ``Future`` (the same on every loop);
* ``CPython``  -- the interpreter: the benchmark's own Python, object allocation and release,
                  the cyclic GC, contextvars, the calls the loop makes into the runtime;
* ``libc``     -- the C library (memory copies, locks, the system-call stubs).

Kernel time is not counted (callgrind sees user space only), so this ranks the loop's code,
not the system calls.  The ``floor`` column answers "how fast could this row get?": the
cheapest non-loop work any loop needs per step (the smallest ``total - loop`` among the
compiled loops measured: the benchmark, Task/Future and the runtime calls every loop makes),
and ``best ratio`` is the best peer's total over that floor: the ratio a loop whose own code
cost nothing would reach.  Where it is below a bar, the bar is out of reach of any loop.  The
Python loops (asyncio, qloop-fallback) have no ``loop`` share to subtract and do not count
towards the floor.  With both ``qloop-fallback`` and ``asyncio`` measured, a row also gives
the fallback's ratio against asyncio (the fallback's bar).

Needs valgrind (Debian: ``apt-get install valgrind``).  About a minute per workload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

from bench._common import REPO_ROOT

IMPLS = ("qloop-core", "rloop", "uvloop", "asyncio", "qloop-fallback")
PEERS = ("rloop", "uvloop", "asyncio")
# loops written in Python: their own code runs in the interpreter (charged to ``CPython``)
PYTHON_LOOPS = ("asyncio", "qloop-fallback")

# which binary is "the loop" for each implementation (a substring of its path)
LOOP_OBJECT = {"qloop-core": "qloop/_core.", "uvloop": "uvloop/loop.", "rloop": "rloop/_rloop."}


def _chain(loop: asyncio.AbstractEventLoop, n: int) -> None:
    from bench.test_bh_chain import asyncio_call_soon_chain

    assert asyncio_call_soon_chain(loop, n) == n


def _batches(loop: asyncio.AbstractEventLoop, n: int) -> None:
    from bench.test_aio_call_soon_batch import BATCH, call_soon_batches

    assert call_soon_batches(loop, n // BATCH)[0] == n // BATCH * BATCH


def _call_later(loop: asyncio.AbstractEventLoop, n: int) -> None:
    # the row's body: n timers at random delays <= 50 ms, every tenth cancelled; the delays
    # are drawn with the C ``random()`` (the row draws them untimed, with ``uniform``)
    import random

    from bench.test_aio_call_later import CANCEL_EVERY, WINDOW_S, call_later_timers

    rng = random.Random(12345).random
    delays = [rng() * WINDOW_S for _ in range(n)]
    cancelled = len(range(0, n, CANCEL_EVERY))
    assert call_later_timers(loop, delays) == (n - cancelled, 0)


def _tasks(loop: asyncio.AbstractEventLoop, n: int) -> None:
    from bench.test_aio_tasks import TASKS, _main

    assert loop.run_until_complete(_main(n // TASKS)) == n // TASKS * TASKS


def _futures(loop: asyncio.AbstractEventLoop, n: int) -> None:
    from bench.test_aio_futures import _futures as futures

    assert loop.run_until_complete(futures(n)) == n * (n - 1) // 2


def _threadsafe(loop: asyncio.AbstractEventLoop, n: int) -> None:
    # the burst's instruction content without its GIL hand-offs: a second thread queues n
    # call_soon_threadsafe calls, then the loop drains them
    count = 0

    def cb() -> None:
        nonlocal count
        count += 1
        if count == n:
            loop.stop()

    def produce() -> None:
        call = loop.call_soon_threadsafe
        for _ in range(n):
            call(cb)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    loop.run_forever()
    assert count == n


def _udp_echo(loop: asyncio.AbstractEventLoop, n: int) -> None:
    from bench import test_aio_udp_echo as udp

    saved, udp.N = udp.N, n  # the client stops at the module's N
    server, transport, client = loop.run_until_complete(udp._endpoints(loop))
    try:
        assert loop.run_until_complete(udp._round(client)) == n
    finally:
        udp.N = saved
        transport.close()
        server.close()
        loop.run_until_complete(asyncio.sleep(0))


WORKLOADS: dict[str, tuple[Callable[[asyncio.AbstractEventLoop, int], None], int, str]] = {
    # name: (body, default steps, what one step is)
    # (sizes large enough that the cyclic GC's full collections, one per ~70,000 allocations,
    # fall into both runs alike: at 20,000 steps one more or less moves a row by ~15%)
    "chain": (_chain, 100_000, "callback"),
    "batches": (_batches, 100_000, "callback"),
    "call_later": (_call_later, 100_000, "timer"),
    "tasks": (_tasks, 100_000, "task step"),
    "futures": (_futures, 50_000, "future"),
    "threadsafe": (_threadsafe, 100_000, "call"),
    "udp_echo": (_udp_echo, 20_000, "round trip"),
}


def _child(impl: str, workload: str, steps: int) -> None:
    """Run one workload once (in the process callgrind watches)."""
    from bench._aio import load_loop_impl

    loop = load_loop_impl(impl).open()
    try:
        WORKLOADS[workload][0](loop, steps)
    finally:
        loop.close()


_OBJ = re.compile(r"^c?ob=\((\d+)\)(?: (.*))?$")


def charge_by_object(path: str) -> dict[str, int]:
    """Exclusive instructions per binary from a callgrind output file (``--dump-instr=no``).

    Names are compressed: ``(id) name`` defines an id the first time, in an ``ob=`` or a
    callee's ``cob=`` line.  A cost line right after ``calls=`` is the inclusive cost of that
    call, already charged to the callee's own lines: skipped."""
    names: dict[str, str] = {}
    totals: dict[str, int] = {}
    current = "?"
    skip_next = False
    with open(path) as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                m = _OBJ.match(line.rstrip("\n"))
                if m is None:
                    continue
                if m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
                if line.startswith("ob="):
                    current = names.get(m.group(1), "?")
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    totals[current] = totals.get(current, 0) + int(parts[-1])
    return totals


def _category(impl: str, obj: str) -> str:
    loop_obj = LOOP_OBJECT.get(impl)
    if loop_obj is not None and loop_obj in obj:
        return "loop"
    if "/_asyncio." in obj:
        return "_asyncio"
    if "libpython" in obj or re.search(r"/python3[.\d]*$", obj):
        return "CPython"
    if "/libc." in obj or "/libc-" in obj:
        return "libc"
    return "other"


def measure(impl: str, workload: str, steps: int, workdir: str) -> dict[str, int]:
    """Instructions per category for one run of ``steps`` steps."""
    out = os.path.join(workdir, f"callgrind.{impl}.{workload}.{steps}")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONHASHSEED="0")
    cmd = ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={out}",
           sys.executable, "-m", "bench.step_instructions", "--child", impl, workload,
           str(steps)]
    subprocess.run(cmd, check=True, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    per_category: dict[str, int] = {}
    for obj, ir in charge_by_object(out).items():
        cat = _category(impl, obj)
        per_category[cat] = per_category.get(cat, 0) + ir
    return per_category


CATEGORIES = ("loop", "_asyncio", "CPython", "libc", "other")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2], int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--impl", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--steps", type=int, default=0,
                        help="steps of the smaller run (default: per workload)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    header = f"{'workload':11s} {'impl':11s} " + " ".join(f"{c:>9s}" for c in CATEGORIES)
    print(header + f" {'total':>9s}  per step", flush=True)
    with tempfile.TemporaryDirectory(prefix="qloop-step-ir.") as workdir:
        for workload in args.workload:
            steps = args.steps or WORKLOADS[workload][1]
            totals: dict[str, float] = {}
            non_loop: list[float] = []
            for impl in args.impl:
                once = measure(impl, workload, steps, workdir)
                twice = measure(impl, workload, 2 * steps, workdir)
                per = {c: (twice.get(c, 0) - once.get(c, 0)) / steps for c in CATEGORIES}
                total = sum(per.values())
                totals[impl] = total
                if impl in LOOP_OBJECT:  # a Python loop's code is inside CPython's share
                    non_loop.append(total - per["loop"])
                print(f"{workload:11s} {impl:11s} "
                      + " ".join(f"{per[c]:9,.0f}" for c in CATEGORIES)
                      + f" {total:9,.0f}  {WORKLOADS[workload][2]}", flush=True)
            peers = [p for p in PEERS if p in totals]
            if "qloop-core" in totals and peers and non_loop:
                best = min(peers, key=totals.__getitem__)
                floor = min(non_loop)
                print(f"{workload:11s} core/{best}: {totals[best] / totals['qloop-core']:.2f}x;"
                      f" floor (least non-loop work) {floor:,.0f}, best ratio any loop could"
                      f" reach against {best}: {totals[best] / floor:.2f}x", flush=True)
            if "qloop-fallback" in totals and "asyncio" in totals:
                print(f"{workload:11s} fallback/asyncio:"
                      f" {totals['asyncio'] / totals['qloop-fallback']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
