"""timer_memory: RSS growth per armed timer with N armed timers (default 1,000,000).

Measured in a fresh subprocess per implementation (``bench._timer_memory``), so earlier
benchmarks do not skew the RSS.  The timed figure is the whole subprocess (start-up included)
and means little; the result is ``extra_info["bytes_per_timer"]``.
Bar: qloop-core <= 200 bytes per armed timer.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench._common import REPO_ROOT, run_rounds, scaled, subprocess_env

N = scaled(1_000_000, minimum=10_000)


@pytest.mark.benchmark(group="timer_memory")
def test_timer_memory(benchmark, impl):
    reports: list[dict] = []

    def probe() -> int:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench._timer_memory",
                "--impl",
                impl.name,
                "--n",
                str(N),
            ],
            cwd=str(REPO_ROOT),
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"memory probe failed (rc={proc.returncode}): {proc.stderr[-3000:]}"
            )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        reports.append(report)
        return report["pending"]

    run_rounds(benchmark, probe, ops=N, expect=N, rounds=1, unit="timers")
    report = reports[-1]
    benchmark.extra_info.update(
        bytes_per_timer=report["bytes_per_timer"],
        rss_growth=report["rss_after"] - report["rss_before"],
        arm_seconds=report["arm_seconds"],
        timers=N,
    )
