"""Checks of ``python -m bench.table``'s rendering that need no benchmark run."""

from __future__ import annotations

from bench import table

META = {"date": "2026-12-07", "nproc": 2}


def test_a_run_without_qloop_api_workloads_prints_no_empty_table():
    # e.g. ``python -m bench.table -- -k aio_``: only the asyncio table has rows
    text = table.render({"meta": META, "stat": "min", "rows": [], "aio_rows": []})
    assert "(no workload of qloop's own API in this run)" in text
    assert "core/uvloop" not in text  # no header line of an empty table


def test_a_row_is_printed_under_the_header():
    row = {
        "workload": "bh_chain",
        "metric": "ops/s",
        "unit": "ops/s",
        "values": {"qloop-core": 2e6, "asyncio": 1e6},
        "ratios": {"core/asyncio": 2.0},
        "bar": "core/uvloop >= 3",
        "status": "n/a",
    }
    lines = table.render({"meta": META, "stat": "min", "rows": [row], "aio_rows": []})
    lines = lines.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    assert lines[header + 2].startswith("bh_chain")
    assert "2.00" in lines[header + 2]


def test_the_worst_benchmark_for_other_load_is_one_long_enough_to_measure():
    # /proc/stat's 10 ms ticks: one stray tick over 11 ms reads as ~1 "CPU" of other load
    from bench import conftest

    by_test = {
        "test_short": {"wall_s": 0.011, "other_cpu_s": 0.08, "cpus": 7.27},
        "test_long": {"wall_s": 20.0, "other_cpu_s": 1.0, "cpus": 0.05},
        "test_echo_x": {"wall_s": 5.0, "other_cpu_s": 5.0, "cpus": 1.0},  # not counted
    }
    summary = conftest._summarise_other_load(by_test)
    assert summary["worst_test_cpus"] == 0.05
    assert round(summary["other_cpu_s"], 2) == 1.08
    only_short = conftest._summarise_other_load({"test_short": by_test["test_short"]})
    assert only_short["worst_test_cpus"] is None
