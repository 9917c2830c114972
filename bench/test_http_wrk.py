"""http_raw / http_aiohttp / http_uvicorn: real HTTP servers on each event loop under wrk.

The server (``bench._http_server``: a raw ``asyncio.Protocol`` responder, an aiohttp app, or a
uvicorn + httptools ASGI app, each answering ``Hello, World!`` with HTTP/1.1 keep-alive) runs in
its own process pinned to one CPU; wrk (https://github.com/wg/wrk, Debian package ``wrk``)
runs pinned to another (``taskset -c``): ``wrk -t1 -c64 -d4s``, one wrk run per round, 3 rounds, after a 1 s
warm-up run.  The figure is wrk's requests/s; the table takes the median of the rounds
(``extra_info["requests_per_s"]``, every round in ``extra_info["rounds_requests_per_s"]``).
Also kept: requests per CPU-second of the server process (``/proc/<pid>`` before and after each
round, as ``echo`` does), ``extra_info["requests_per_server_cpu_s"]`` (median): the loop's cost
per request, which other load on the machine does not change the way it changes requests/s.
A round fails if wrk reports a connect/timeout error or a non-2xx response, or if the server
process reports another loop than the one asked for.

At reduced scale (QLOOP_BENCH_SCALE < 1, the CI smoke run): one 1 s round, no warm-up.
Without wrk on PATH the workloads are skipped with a message saying how to install it (even
under QLOOP_BENCH_STRICT: wrk is a system package); without aiohttp, uvicorn or httptools the
workload that needs it is skipped, or fails under QLOOP_BENCH_STRICT.
Bar: qloop-core >= 1.1x the best peer (asyncio, uvloop, rloop) on each server.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import statistics
import subprocess
import sys

import pytest

from bench._common import (
    REPO_ROOT,
    ROUNDS,
    SCALE,
    STRICT,
    process_cpu_seconds,
    readline,
    stop_process,
    subprocess_env,
)

CONNS = 64
DURATION_S = max(1, round(4 * SCALE))
HTTP_ROUNDS = ROUNDS if SCALE >= 1 else 1
WARMUP_S = 1 if SCALE >= 1 else 0
START_TIMEOUT_S = 60.0
WRK = shutil.which("wrk")
TASKSET = shutil.which("taskset")
LOOP_CLASS = {  # what the server process must report as its running loop's class
    "qloop-core": "qloop.",
    "qloop-fallback": "qloop.",
    "asyncio": "asyncio.",
    "uvloop": "uvloop.",
    "rloop": "rloop.",
}


def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, wrk CPU): two different CPUs of this process's affinity, if it has two."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def _pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    """``cmd`` run by ``taskset -c <cpu>`` (unpinned without taskset or a second CPU)."""
    if cpu is None or TASKSET is None:
        return cmd
    return [TASKSET, "-c", str(cpu), *cmd]


def _parse_wrk(out: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if not rps or not total:
        raise AssertionError(f"cannot read wrk's output:\n{out}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(rps.group(1)),
        "requests": int(total.group(1)),
        "connect_errors": int(errors.group(1)) if errors else 0,
        "read_errors": int(errors.group(2)) if errors else 0,
        "write_errors": int(errors.group(3)) if errors else 0,
        "timeouts": int(errors.group(4)) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_wrk(port: int, seconds: int, cpu: int | None) -> dict:
    """One wrk run against 127.0.0.1:port; its parsed summary."""
    assert WRK is not None
    cmd = [WRK, "-t1", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "5s",
           f"http://127.0.0.1:{port}/"]
    proc = subprocess.run(
        _pinned(cpu, cmd), capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"wrk exited {proc.returncode}: {proc.stderr}{proc.stdout}")
    result = _parse_wrk(proc.stdout)
    bad = {k: result[k] for k in ("connect_errors", "timeouts", "non_2xx") if result[k]}
    assert not bad, f"wrk saw errors {bad}:\n{proc.stdout}"
    assert result["requests"] > 0, proc.stdout
    return result


def _require(app: str, *modules: str) -> None:
    """Skip without wrk; a missing Python package skips too, or fails under QLOOP_BENCH_STRICT."""
    if WRK is None:
        pytest.skip("wrk is not installed (Debian/Ubuntu: apt-get install wrk): http_* skipped")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            message = f"{app} needs {name}: {exc} (pip install -r requirements/bench.txt)"
            if STRICT:
                pytest.fail(message + " (QLOOP_BENCH_STRICT is set)")
            pytest.skip(message)


def measure_http(benchmark, impl: str, app: str) -> None:
    server_cpu, wrk_cpu = _cpus()
    env = subprocess_env()
    env.pop("QLOOP_NO_EXTENSIONS", None)
    if impl == "qloop-fallback":
        env["QLOOP_NO_EXTENSIONS"] = "1"
    server = subprocess.Popen(
        _pinned(
            server_cpu,
            [sys.executable, "-m", "bench._http_server", "--impl", impl, "--app", app],
        ),
        cwd=str(REPO_ROOT),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = readline(server, START_TIMEOUT_S, f"{app} server on {impl}")
        assert line.startswith("READY "), line
        _, port_s, loop_cls, qloop_impl = line.split()
        assert loop_cls.startswith(LOOP_CLASS[impl]), (impl, line)
        if impl.startswith("qloop-"):
            assert qloop_impl == impl.removeprefix("qloop-"), (impl, line)
        port = int(port_s)
        if WARMUP_S:
            run_wrk(port, WARMUP_S, wrk_cpu)
        rounds: list[dict] = []

        def one_round() -> dict:
            cpu0 = process_cpu_seconds(server.pid)
            result = run_wrk(port, DURATION_S, wrk_cpu)
            result["server_cpu_s"] = process_cpu_seconds(server.pid) - cpu0
            rounds.append(result)
            return result

        benchmark.pedantic(one_round, rounds=HTTP_ROUNDS, iterations=1, warmup_rounds=0)
        assert server.poll() is None, "the server died during the load"
    finally:
        stop_process(server)
    rps = [r["requests_per_s"] for r in rounds]
    per_cpu = [r["requests"] / r["server_cpu_s"] for r in rounds if r["server_cpu_s"] > 0]
    benchmark.extra_info.update(
        {
            "requests_per_s": statistics.median(rps),
            "rounds_requests_per_s": rps,
            "requests_per_server_cpu_s": statistics.median(per_cpu) if per_cpu else None,
            "rounds_requests_per_server_cpu_s": per_cpu,
            "requests": [r["requests"] for r in rounds],
            "read_errors": sum(r["read_errors"] for r in rounds),
            "server_loop": loop_cls,
            "connections": CONNS,
            "duration_s": DURATION_S,
            "server_cpu": server_cpu if TASKSET else None,
            "wrk_cpu": wrk_cpu if TASKSET else None,
            "scale": SCALE,
        }
    )


@pytest.mark.benchmark(group="http_raw")
def test_http_raw(benchmark, loop_impl):
    _require("http_raw")
    measure_http(benchmark, loop_impl.name, "raw")


@pytest.mark.benchmark(group="http_aiohttp")
def test_http_aiohttp(benchmark, loop_impl):
    _require("http_aiohttp", "aiohttp")
    measure_http(benchmark, loop_impl.name, "aiohttp")


@pytest.mark.benchmark(group="http_uvicorn")
def test_http_uvicorn(benchmark, loop_impl):
    _require("http_uvicorn", "uvicorn", "httptools")
    measure_http(benchmark, loop_impl.name, "uvicorn")
