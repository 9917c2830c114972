"""qloop's benchmark suite (pytest-benchmark).

Run ``pytest bench/ --benchmark-only`` for the timings, or ``python -m bench.table`` for the
summary table with ratios and bars.  See ``bench/README.md``.
"""
