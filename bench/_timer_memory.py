"""Memory probe for the ``timer_memory`` workload: run in a fresh process per implementation.

    python -m bench._timer_memory --impl IMPL --n N

Creates one context/loop, then N timers armed 1-2 hours ahead (qloop: ``timer_new_ns`` +
``mod_ns``; asyncio/uvloop: ``loop.call_at``), keeping every timer/handle in a list that was
allocated before the baseline.  Prints one JSON line with the RSS growth per armed timer.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from bench._common import IMPLS, load_impl, rss_bytes


def _noop():
    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--impl", choices=IMPLS, required=True)
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    n = args.n
    impl = load_impl(args.impl)
    obj = impl.open()
    keep = [None] * n
    span = 3_600_000_000_000  # 1 h in ns
    step = 7_919  # deadlines in a scrambled (not sorted) order: i * step mod n
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    if impl.is_qloop:
        mod = impl.module
        clock = mod.ClockType.REALTIME
        base = mod.clock_get_ns(clock) + span
        new = obj.timer_new_ns
        unit = span // n
        for i in range(n):
            t = new(clock, _noop)
            t.mod_ns(base + ((i * step) % n) * unit)
            keep[i] = t
        pending = sum(1 for t in keep if t.pending)
    else:
        base = obj.time() + 3600.0
        unit = 3600.0 / n
        call_at = obj.call_at
        for i in range(n):
            keep[i] = call_at(base + ((i * step) % n) * unit, _noop)
        pending = sum(1 for h in keep if not h.cancelled())
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    print(
        json.dumps(
            {
                "impl": impl.name,
                "timers": n,
                "pending": pending,
                "rss_before": before,
                "rss_after": after,
                "bytes_per_timer": (after - before) / n,
                "arm_seconds": elapsed,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
