"""echo: a TCP echo server on 127.0.0.1, 100 connections, 1 KiB messages.

The server runs in its own process (``bench._echo_server``, one per implementation): on qloop
it is built on ``ctx.set_fd_handler`` with non-blocking sockets, on asyncio/uvloop it is an
``asyncio.Protocol``.  The load client (``bench._echo_client``, the same for every server)
runs in another process.  One round = R round trips (default 100,000) spread over the
connections.  The figure that counts is the server's CPU seconds per round trip, read from
``/proc/<pid>`` before and after the round (``extra_info["server_cpu_per_rt"]``), because the
client may well be the bottleneck of the round-trips-per-second number.
Bar: qloop-core's server CPU per round trip <= uvloop's.
"""

from __future__ import annotations

import pytest

from bench._echo_measure import measure_echo


@pytest.mark.benchmark(group="echo")
def test_echo(benchmark, impl):
    measure_echo(
        benchmark, ["-m", "bench._echo_server", "--impl", impl.name], impl.name
    )
