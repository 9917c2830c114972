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
