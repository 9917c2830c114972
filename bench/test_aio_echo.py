"""aio_echo_protocol / aio_echo_streams: TCP echo servers on each asyncio event loop.

The same load and accounting as ``echo`` (``bench._echo_measure``): 100 connections, 1 KiB
messages, 100,000 round trips per round from the load client ``bench._echo_client`` in its own
process; the figure is the server process's CPU per round trip.  The server
(``bench._aio_echo_server``) runs on the loop under test: an ``asyncio.Protocol``
(``loop.create_server``), or ``asyncio.start_server`` with StreamReader/StreamWriter.
Bar: qloop-core's server CPU per round trip <= the best peer's; the fallback's <= asyncio's.
"""

from __future__ import annotations

import pytest

from bench._echo_measure import measure_echo


def _server(loop_impl, api: str) -> list[str]:
    return ["-m", "bench._aio_echo_server", "--impl", loop_impl.name, "--api", api]


@pytest.mark.benchmark(group="aio_echo_protocol")
def test_aio_echo_protocol(benchmark, loop_impl):
    measure_echo(
        benchmark, _server(loop_impl, "protocol"), f"{loop_impl.name} protocol"
    )


@pytest.mark.benchmark(group="aio_echo_streams")
def test_aio_echo_streams(benchmark, loop_impl):
    measure_echo(benchmark, _server(loop_impl, "streams"), f"{loop_impl.name} streams")
