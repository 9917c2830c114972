"""echo_fdmon: the ``echo`` workload (100 connections, 1 KiB messages, R round trips; see
``test_echo.py``) on qloop-core's fd-handler server with ``AioContext(fdmon="epoll")`` against
``fdmon="io_uring"``, in one run.  The figure is the server's CPU seconds per round trip
(``extra_info["server_cpu_per_rt"]``).  Bar: io_uring <= 1.0x epoll.
"""

from __future__ import annotations

import pytest

from bench._echo_measure import measure_echo


@pytest.mark.benchmark(group="echo_fdmon")
@pytest.mark.parametrize("fdmon", ["epoll", "io_uring"])
def test_echo_fdmon(benchmark, impl, fdmon):
    if impl.name != "qloop-core":
        pytest.skip("the core's fd monitors only")
    if fdmon == "io_uring":
        impl.skip_without_fdmon(fdmon)  # the fallback, or a kernel/sandbox without io_uring
    benchmark.extra_info["fdmon"] = fdmon
    measure_echo(
        benchmark,
        ["-m", "bench._echo_server", "--impl", impl.name, "--fdmon", fdmon],
        f"{impl.name} {fdmon}",
    )
