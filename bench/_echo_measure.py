"""The echo measurement shared by ``echo`` and the ``aio_echo_*`` workloads.

A server process (started from ``server_args``) prints ``PORT <n>``; the load client
(``bench._echo_client``, the same for every server) opens CONNS connections and makes R round
trips of MSIZE bytes per round.  The figure that counts is the server's CPU seconds per round
trip, read from ``/proc/<pid>`` before and after the round (``extra_info["server_cpu_per_rt"]``),
because the client may well be the bottleneck of the round-trips-per-second number.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench._common import (
    REPO_ROOT,
    ROUNDS,
    process_cpu_seconds,
    process_user_system_seconds,
    readline,
    run_rounds,
    scaled,
    stop_process,
    subprocess_env,
)

CONNS = 100
MSIZE = 1024
R = scaled(100_000, minimum=1000)
START_TIMEOUT_S = 60.0
ROUND_TIMEOUT_S = 120.0


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=str(REPO_ROOT),
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def measure_echo(benchmark, server_args: list[str], label: str) -> None:
    """Run the echo load against the server started by ``python <server_args>``."""
    server = client = None
    try:
        server = _spawn(server_args)
        line = readline(server, START_TIMEOUT_S, f"echo server ({label})")
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        client = _spawn(
            [
                "-m",
                "bench._echo_client",
                "--port",
                str(port),
                "--conns",
                str(CONNS),
                "--msize",
                str(MSIZE),
            ]
        )
        line = readline(client, START_TIMEOUT_S, "echo client (connect + warm-up)")
        assert line.startswith("READY"), line
        client_kind = line.split()[1]
        samples: list[dict] = []

        def one_round() -> int:
            cpu0 = process_cpu_seconds(server.pid)
            user0, sys0 = process_user_system_seconds(server.pid)
            client.stdin.write(f"RUN {R}\n")
            client.stdin.flush()
            answer = json.loads(readline(client, ROUND_TIMEOUT_S, "echo client round"))
            server_cpu = process_cpu_seconds(server.pid) - cpu0
            user1, sys1 = process_user_system_seconds(server.pid)
            answer["server_user"] = user1 - user0
            answer["server_sys"] = sys1 - sys0
            if "error" in answer:
                raise RuntimeError(answer["error"])
            answer["server_cpu"] = server_cpu
            samples.append(answer)
            return answer["rt"]

        run_rounds(
            benchmark,
            one_round,
            ops=R,
            expect=R,
            rounds=ROUNDS,
            unit="round trips",
            connections=CONNS,
            message_bytes=MSIZE,
            client_loop=client_kind,
        )
        best = min(samples, key=lambda s: s["server_cpu"])
        benchmark.extra_info.update(
            server_cpu_per_rt=best["server_cpu"] / best["rt"],
            # user/system from clock ticks: summed over the rounds for resolution
            server_user_cpu_per_rt=sum(x["server_user"] for x in samples)
            / sum(x["rt"] for x in samples),
            server_sys_cpu_per_rt=sum(x["server_sys"] for x in samples)
            / sum(x["rt"] for x in samples),
            server_cpu_per_rt_rounds=[s["server_cpu"] / s["rt"] for s in samples],
            client_cpu_per_rt=min(s["client_cpu"] / s["rt"] for s in samples),
            server_cpu_utilisation=max(s["server_cpu"] / s["elapsed"] for s in samples),
            client_cpu_utilisation=max(s["client_cpu"] / s["elapsed"] for s in samples),
            rt_per_s=max(s["rt"] / s["elapsed"] for s in samples),
        )
        client.stdin.write("QUIT\n")
        client.stdin.flush()
        client.wait(timeout=30)
        assert server.poll() is None, "the echo server died"
    finally:
        stop_process(client)
        stop_process(server)
