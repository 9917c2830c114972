"""Summary table of the qloop benchmarks: ops/s per implementation, ratios, bars, PASS/FAIL.

    python -m bench.table                      # runs pytest bench/ --benchmark-only, then the table
    python -m bench.table -- -k "bh_ or timers" # extra arguments after -- go to pytest
    python -m bench.table --from run.json      # table from an existing --benchmark-json file
    python bench/table.py --out bench/results.json

Every number in one table comes from the same pytest-benchmark run.  ops/s is
``extra_info["ops"] / <stat>`` of the round times (``--stat``, default ``min``: the best round,
the least disturbed by the rest of the machine).  Ratios are "core / X" of ops/s (higher is
better for the core); for echo the figure is round trips per CPU-second of the *server*
process (the inverse of its CPU time per round trip), so there too higher is better.
The table is printed and written as JSON (``--out``, default ``bench/results.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("qloop-core", "qloop-fallback", "asyncio", "uvloop")
SHORT = {
    "qloop-core": "core",
    "qloop-fallback": "fallback",
    "asyncio": "asyncio",
    "uvloop": "uvloop",
}

# workload -> (minimum core/uvloop ratio) for the plain throughput workloads
SPEED_BARS = {"bh_chain": 3.0, "bh_batch": 3.0, "timers": 2.0, "threadsafe": 1.2,
              "bh_oneshot": 3.0}
TIMER_SCALE_BAR = 2.0  # cost(1M armed) / cost(1k armed), core
TIMER_SCALE_RANDOM_BAR = 3.0  # the same with a random timer re-armed each time, core
TIMER_MOD_1M_BAR = 5.0  # core / uvloop re-arms per second among 1M armed
# core: re-arm cost among 1M armed over the cost of touching the same random timers (floor)
TIMER_FLOOR_BAR = 1.1
IDLE_FDS_BAR = 1.1  # time(10k idle) / time(0 idle), core
IDLE_FDS_FALLBACK_BAR = 1.2  # the same, fallback
FDMON_AUTO_BAR = 0.95  # auto / the better of forced poll and epoll, round trips per CPU-s
FDMON_AUTO_IDLE_BAR = 1.05  # auto: CPU per round trip with 10k idle fds / with none
FDMON_AUTO_CASES = ("pairs_1", "pairs_8", "pairs_30", "pairs_64", "fds_10k")
IO_URING_CPU_BAR = 1.0  # io_uring CPU / epoll CPU (ping-pong, echo, churn), core
MAIN_LOOP_CHAIN_BARS = {"glib_on": 3.0, "glib_off": 4.0}  # core / uvloop
MAIN_LOOP_FALLBACK_BAR = 1.5  # fallback / asyncio, GLib off
MAIN_LOOP_ITERATION_US = 1.5  # core, one main_loop_wait iteration
MEMORY_BAR = 200.0  # bytes per armed timer, core
FALLBACK_VS_ASYNCIO = 1.0
CORE_VS_FALLBACK = 5.0
FALLBACK_WORKLOADS = ("bh_chain", "bh_batch", "timers", "bh_oneshot")


# ---------------------------------------------------------------------------------------------
# Machine / run metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=str(REPO_ROOT),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict:
    out = {}
    code = (
        "import json,warnings\n"
        "warnings.simplefilter('ignore')\n"
        "d={}\n"
        "try:\n import qloop; d['qloop']=qloop.__version__; d['qloop_default']=qloop.IMPLEMENTATION\n"
        "except Exception as e: d['qloop']=repr(e)\n"
        "for m in ('qloop._core','qloop._fallback'):\n"
        " try:\n  __import__(m); d[m]='importable'\n"
        " except Exception as e: d[m]='unavailable: %r' % (e,)\n"
        "try:\n import uvloop; d['uvloop']=uvloop.__version__\n"
        "except Exception as e: d['uvloop']=repr(e)\n"
        "try:\n import pytest_benchmark; d['pytest-benchmark']=pytest_benchmark.__version__\n"
        "except Exception as e: d['pytest-benchmark']=repr(e)\n"
        "print(json.dumps(d))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=str(REPO_ROOT),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception as exc:  # noqa: BLE001 - metadata is best effort
        out = {"error": repr(exc)}
    return out


def machine_meta() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "nproc_usable": affinity,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "commit": commit or "unknown (no commit yet)",
        "dirty": bool(dirty) if dirty is not None else None,
        "versions": _versions(),
    }


# ---------------------------------------------------------------------------------------------
# Reading pytest-benchmark JSON


def _impl_of(bench: dict) -> str | None:
    params = bench.get("params") or {}
    # "loop_impl": the asyncio event-loop workloads (bench/test_aio_*.py)
    impl = params.get("impl") or params.get("loop_impl")
    if (
        impl is None
    ):  # fall back to the test id: test_x[qloop-core] / test_x[armed_1k-uvloop]
        name = bench.get("name", "")
        for candidate in IMPLS:
            if candidate in name:
                impl = candidate
    return impl


def _variant_of(bench: dict) -> str | None:
    params = dict(bench.get("params") or {})
    params.pop("impl", None)
    params.pop("loop_impl", None)
    if not params:
        return None
    return "-".join(str(v) for _, v in sorted(params.items()))


def collect(data: dict, stat: str) -> dict:
    """{(group, variant): {impl: record}} with ops/s computed from ``stat``."""
    out: dict = {}
    for bench in data.get("benchmarks", []):
        impl = _impl_of(bench)
        if impl is None:
            continue
        group = bench.get("group") or bench.get("name", "").split("[")[0]
        stats = bench.get("stats") or {}
        extra = bench.get("extra_info") or {}
        ops = extra.get("ops")
        t = stats.get(stat)
        rec = {
            "name": bench.get("fullname") or bench.get("name"),
            "ops": ops,
            "rounds": stats.get("rounds"),
            "min": stats.get("min"),
            "median": stats.get("median"),
            "mean": stats.get("mean"),
            "stddev": stats.get("stddev"),
            "ops_per_s": (ops / t) if ops and t else None,
            "extra_info": extra,
        }
        out.setdefault((group, _variant_of(bench)), {})[impl] = rec
    return out


# ---------------------------------------------------------------------------------------------
# Building the rows


def _ratio(a, b):
    if a is None or b is None or b == 0 or (isinstance(a, float) and math.isnan(a)):
        return None
    return a / b


def _status(ok) -> str:
    if ok is None:
        return "n/a"
    return "PASS" if ok else "FAIL"


def _us(rec: dict, key: str) -> str:
    v = rec["extra_info"].get(key)
    return "?" if v is None else f"{v * 1e6:.1f}"


def _all_known(checks: dict):
    """PASS when every measured check passes; None (n/a) when nothing was measured."""
    known = [v for v in checks.values() if v is not None]
    if not known:
        return None
    return all(known)


def _partial_note(checks: dict) -> str:
    missing = [k for k, v in checks.items() if v is None]
    if not missing or len(missing) == len(checks):
        return ""
    return "partial: not measured: " + ", ".join(missing)


def _row(workload, metric, unit, values, bar="", ok=None, detail="", ratios=True):
    row = {
        "workload": workload,
        "metric": metric,
        "unit": unit,
        "values": {impl: values.get(impl) for impl in IMPLS},
        "bar": bar,
        "status": _status(ok) if bar else "",
        "detail": detail,
    }
    if ratios:
        core = values.get("qloop-core")
        row["ratios"] = {
            "core/uvloop": _ratio(core, values.get("uvloop")),
            "core/asyncio": _ratio(core, values.get("asyncio")),
            "core/fallback": _ratio(core, values.get("qloop-fallback")),
            "fallback/asyncio": _ratio(
                values.get("qloop-fallback"), values.get("asyncio")
            ),
        }
    else:
        row["ratios"] = {}
    return row


def _io_uring_rows(results: dict, cpu_rate) -> list[dict]:
    """fdmon="io_uring" against "epoll" (qloop-core): the fdmon_auto ping-pong at every N,
    its 10k-idle cost, the echo server (echo_fdmon) and connection churn (fdmon_churn)."""
    rows: list[dict] = []
    core = "qloop-core"

    def one(value):
        return {core: value} if value is not None else {}

    def bar_row(workload, metric, value, bar, ok):
        return _row(workload, metric, "x", one(value), bar, None if value is None else ok,
                    ratios=False)

    for case in ("fds_0", *FDMON_AUTO_CASES):
        uring = cpu_rate(f"io_uring-{case}").get(core)
        epoll_ = cpu_rate(f"epoll-{case}").get(core)
        if uring is None:
            continue
        rows.append(_row(f"fdmon_auto[{case}] io_uring", "round trips/CPU-s", "ops/s",
                         one(uring)))
        r = _ratio(epoll_, uring)  # CPU per round trip, io_uring / epoll
        rows.append(bar_row(f"fdmon_auto[{case}]", "io_uring CPU / epoll CPU", r,
                            f"core <= {IO_URING_CPU_BAR:g}x",
                            r is not None and r <= IO_URING_CPU_BAR))
    none_ = cpu_rate("io_uring-fds_0").get(core)
    many = cpu_rate("io_uring-fds_10k").get(core)
    if none_ and many:
        r = _ratio(none_, many)
        rows.append(bar_row("fdmon_auto", "io_uring: CPU 10k idle / 0 idle", r,
                            f"core <= {FDMON_AUTO_IDLE_BAR:g}x",
                            r is not None and r <= FDMON_AUTO_IDLE_BAR))

    def per_op(group, variant, key, per_ops):
        rec = results.get((group, variant), {}).get(core)
        if rec is None:
            return None
        v = rec["extra_info"].get(key)
        if v is None:
            return None
        return v / rec["ops"] if per_ops and rec["ops"] else v

    for group, key, per_ops, what in (
            ("echo_fdmon", "server_cpu_per_rt", False, "server CPU per round trip"),
            ("fdmon_churn", "cpu_min_s", True, "server CPU per connection")):
        epoll_ = per_op(group, "epoll", key, per_ops)
        uring = per_op(group, "io_uring", key, per_ops)
        for variant, v in (("epoll", epoll_), ("io_uring", uring)):
            if v is not None:
                rows.append(_row(f"{group} {variant}", what, "us", one(v * 1e6), ratios=False))
        if epoll_ is not None and uring is not None:
            r = _ratio(uring, epoll_)
            rows.append(bar_row(group, "io_uring CPU / epoll CPU", r,
                                f"core <= {IO_URING_CPU_BAR:g}x",
                                r is not None and r <= IO_URING_CPU_BAR))
    return rows


def build_rows(results: dict) -> list[dict]:
    rows: list[dict] = []

    def ops(group, variant=None):
        return {
            impl: rec["ops_per_s"]
            for impl, rec in results.get((group, variant), {}).items()
        }

    for workload, bar in SPEED_BARS.items():
        values = ops(workload)
        if not values:
            continue
        r = _ratio(values.get("qloop-core"), values.get("uvloop"))
        rows.append(
            _row(
                workload,
                "ops/s",
                "ops/s",
                values,
                f"core/uvloop >= {bar:g}",
                None if r is None else r >= bar,
            )
        )

    # timer_scale: cost per re-arm with 1M armed vs 1k armed
    small, large = ops("timer_scale", "armed_1k"), ops("timer_scale", "armed_1M")
    if small or large:
        n_large = next(
            (
                rec["extra_info"].get("armed")
                for rec in results.get(("timer_scale", "armed_1M"), {}).values()
            ),
            None,
        )
        rows.append(_row("timer_scale[1k armed]", "re-arms/s", "ops/s", small))
        rows.append(
            _row(f"timer_scale[{n_large or '1M'} armed]", "re-arms/s", "ops/s", large)
        )
        slow = {impl: _ratio(small.get(impl), large.get(impl)) for impl in IMPLS}
        c = slow.get("qloop-core")
        rows.append(
            _row(
                "timer_scale",
                "slowdown 1M/1k",
                "x",
                slow,
                f"core <= {TIMER_SCALE_BAR:g}x",
                None if c is None else c <= TIMER_SCALE_BAR,
                ratios=False,
            )
        )

    # idle_fds: ping-pong with 10k idle sockets vs none
    none_, many = ops("idle_fds", "idle_0"), ops("idle_fds", "idle_10k")
    if none_ or many:
        n_idle = next(
            (
                rec["extra_info"].get("idle_sockets")
                for rec in results.get(("idle_fds", "idle_10k"), {}).values()
            ),
            None,
        )
        rows.append(_row("idle_fds[0 idle]", "round trips/s", "ops/s", none_))
        rows.append(
            _row(f"idle_fds[{n_idle or '10k'} idle]", "round trips/s", "ops/s", many)
        )
        slow = {impl: _ratio(none_.get(impl), many.get(impl)) for impl in IMPLS}
        checks = {
            "core": slow.get("qloop-core"),
            "fallback": slow.get("qloop-fallback"),
        }
        limits = {"core": IDLE_FDS_BAR, "fallback": IDLE_FDS_FALLBACK_BAR}
        rows.append(
            _row(
                "idle_fds",
                "slowdown 10k/0 idle",
                "x",
                slow,
                f"core <= {IDLE_FDS_BAR:g}x, fallback <= {IDLE_FDS_FALLBACK_BAR:g}x",
                _all_known(
                    {
                        k: (None if v is None else v <= limits[k])
                        for k, v in checks.items()
                    }
                ),
                detail=_partial_note(checks),
                ratios=False,
            )
        )

    # fdmon_auto: auto against forced poll and epoll, round trips per CPU-second
    def cpu_rate(variant):
        out = {}
        for impl, rec in results.get(("fdmon_auto", variant), {}).items():
            cpu = rec["extra_info"].get("cpu_min_s")
            if cpu and rec["ops"]:
                out[impl] = rec["ops"] / cpu
        return out

    for case in FDMON_AUTO_CASES:
        auto = cpu_rate(f"auto-{case}")
        if not auto:
            continue
        poll_, epoll_ = cpu_rate(f"poll-{case}"), cpu_rate(f"epoll-{case}")
        rows.append(_row(f"fdmon_auto[{case}] auto", "round trips/CPU-s", "ops/s", auto))
        rows.append(_row(f"fdmon_auto[{case}] poll", "round trips/CPU-s", "ops/s", poll_))
        rows.append(_row(f"fdmon_auto[{case}] epoll", "round trips/CPU-s", "ops/s", epoll_))
        rel = {}
        for impl in IMPLS:
            forced = [v for v in (poll_.get(impl), epoll_.get(impl)) if v is not None]
            rel[impl] = _ratio(auto.get(impl), max(forced)) if forced else None
        checks = {k: rel.get(f"qloop-{k}") for k in ("core", "fallback")}
        rows.append(
            _row(
                f"fdmon_auto[{case}]",
                "auto / best forced",
                "x",
                rel,
                f"core, fallback >= {FDMON_AUTO_BAR:g}",
                _all_known({k: None if v is None else v >= FDMON_AUTO_BAR
                            for k, v in checks.items()}),
                detail=_partial_note(checks),
                ratios=False,
            )
        )
    none_, many = cpu_rate("auto-fds_0"), cpu_rate("auto-fds_10k")
    if none_ and many:
        slow = {impl: _ratio(none_.get(impl), many.get(impl)) for impl in IMPLS}
        checks = {k: slow.get(f"qloop-{k}") for k in ("core", "fallback")}
        rows.append(_row("fdmon_auto[fds_0] auto", "round trips/CPU-s", "ops/s", none_))
        rows.append(
            _row(
                "fdmon_auto",
                "auto: CPU 10k idle / 0 idle",
                "x",
                slow,
                f"core, fallback <= {FDMON_AUTO_IDLE_BAR:g}x",
                _all_known({k: None if v is None else v <= FDMON_AUTO_IDLE_BAR
                            for k, v in checks.items()}),
                detail=_partial_note(checks),
                ratios=False,
            )
        )

    # io_uring (core): against epoll in the same run, CPU per round trip / per connection
    rows.extend(_io_uring_rows(results, cpu_rate))

    # main_loop_chain: the BH chain driven by main_loop_wait, GLib on and off
    for variant, bar in MAIN_LOOP_CHAIN_BARS.items():
        values = ops("main_loop_chain", variant)
        if not values:
            continue
        r = _ratio(values.get("qloop-core"), values.get("uvloop"))
        checks = {"core/uvloop": None if r is None else r >= bar}
        text = f"core/uvloop >= {bar:g}"
        if variant == "glib_off":
            fa = _ratio(values.get("qloop-fallback"), values.get("asyncio"))
            checks["fallback/asyncio"] = None if fa is None else fa >= MAIN_LOOP_FALLBACK_BAR
            text += f"; fallback/asyncio >= {MAIN_LOOP_FALLBACK_BAR:g}"
        rows.append(
            _row(
                f"main_loop_chain[{variant}]",
                "callbacks/s",
                "ops/s",
                values,
                text,
                _all_known(checks),
                detail=_partial_note(checks),
            )
        )

    # main_loop_iteration: us per iteration (fd handler, main-loop timer, poll notifier)
    values = ops("main_loop_iteration")
    if values:
        us = {impl: (1e6 / v if v else None) for impl, v in values.items()}
        c = us.get("qloop-core")
        rows.append(
            _row(
                "main_loop_iteration",
                "us/iteration",
                "us",
                us,
                f"core <= {MAIN_LOOP_ITERATION_US:g} us",
                None if c is None else c <= MAIN_LOOP_ITERATION_US,
                ratios=False,
            )
        )

    # timer_scale_random: a random timer among 1M vs among 1k; timer_mod_1m: vs uvloop at 1M
    small = ops("timer_scale_random", "armed_1k")
    large = ops("timer_scale_random", "armed_1M")
    if small or large:
        slow = {impl: _ratio(small.get(impl), large.get(impl)) for impl in IMPLS}
        c = slow.get("qloop-core")
        floors = {}
        for variant in ("armed_1k", "armed_1M"):
            for impl, rec in results.get(("timer_scale_random", variant), {}).items():
                f = rec["extra_info"].get("floor_s")
                k = rec.get("ops")
                if f is not None and k:
                    floors[(impl, variant)] = f / k
        detail = ""
        recs = results.get(("timer_scale_random", "armed_1M"), {})
        recs_small = results.get(("timer_scale_random", "armed_1k"), {})
        if "qloop-core" in recs and "qloop-core" in recs_small:
            cost_l = 1.0 / large["qloop-core"]
            cost_s = 1.0 / small["qloop-core"]
            fl = floors.get(("qloop-core", "armed_1M"))
            fs = floors.get(("qloop-core", "armed_1k"))
            if fl is not None and fs is not None:
                detail = (
                    f"core ns/re-arm: 1k {cost_s * 1e9:.0f}, 1M {cost_l * 1e9:.0f}; a random pick "
                    f"alone (floor) costs {(fl - fs) * 1e9:.0f} ns more at 1M, the re-arm "
                    f"{((cost_l - cost_s) - (fl - fs)) * 1e9:.0f} ns more than that"
                )
        rows.append(
            _row(
                "timer_scale_random",
                "slowdown 1M/1k",
                "x",
                slow,
                f"core <= {TIMER_SCALE_RANDOM_BAR:g}x",
                None if c is None else c <= TIMER_SCALE_RANDOM_BAR,
                detail=detail,
                ratios=False,
            )
        )
        # the re-arm among 1M over the floor: the same random timers touched, not re-armed
        over_floor = {}
        for impl in IMPLS:
            fl = floors.get((impl, "armed_1M"))
            if large.get(impl) and fl:
                over_floor[impl] = (1.0 / large[impl]) / fl
        if over_floor:
            c = over_floor.get("qloop-core")
            rows.append(
                _row(
                    "timer_scale_random[1M: re-arm/floor]",
                    "re-arm / touch",
                    "x",
                    over_floor,
                    f"core <= {TIMER_FLOOR_BAR:g}x",
                    None if c is None else c <= TIMER_FLOOR_BAR,
                    detail="ns per re-arm / per touch of the same random timer among 1M: "
                    + ", ".join(
                        f"{SHORT[i]} {1e9 / large[i]:.0f} / {floors[(i, 'armed_1M')] * 1e9:.0f}"
                        for i in IMPLS
                        if i in over_floor
                    ),
                    ratios=False,
                )
            )
        r = _ratio(large.get("qloop-core"), large.get("uvloop"))
        rows.append(
            _row(
                "timer_mod_1m",
                "re-arms/s",
                "ops/s",
                large,
                f"core/uvloop >= {TIMER_MOD_1M_BAR:g}",
                None if r is None else r >= TIMER_MOD_1M_BAR,
            )
        )

    # echo: round trips per server CPU-second (and wall-clock round trips/s, for information)
    echo = results.get(("echo", None), {})
    if echo:
        per_cpu = {}
        for impl, rec in echo.items():
            cpu = rec["extra_info"].get("server_cpu_per_rt")
            per_cpu[impl] = (1.0 / cpu) if cpu else None
        r = _ratio(per_cpu.get("qloop-core"), per_cpu.get("uvloop"))
        us = {impl: (1e6 / v if v else None) for impl, v in per_cpu.items()}
        rows.append(
            _row(
                "echo",
                "rt per server CPU-s",
                "ops/cpu-s",
                per_cpu,
                "core server CPU/rt <= uvloop's",
                None if r is None else r >= 1.0,
                detail="server CPU us/rt total (user + system): "
                + ", ".join(
                    f"{SHORT[i]} {us[i]:.1f} ({_us(echo[i], 'server_user_cpu_per_rt')}"
                    f" + {_us(echo[i], 'server_sys_cpu_per_rt')})"
                    for i in IMPLS
                    if us.get(i)
                ),
            )
        )
        per_user = {}
        for impl, rec in echo.items():
            user = rec["extra_info"].get("server_user_cpu_per_rt")
            per_user[impl] = (1.0 / user) if user else None
        rows.append(
            _row(
                "echo (server user CPU)",
                "rt per user CPU-s",
                "ops/cpu-s",
                per_user,
                detail="the server's user time only (the loop's own work; system time is mostly the "
                "kernel's loopback TCP, the same 1 recv + 1 send per round trip for every server)",
            )
        )
        client_util = {
            impl: rec["extra_info"].get("client_cpu_utilisation")
            for impl, rec in echo.items()
        }
        rows.append(
            _row(
                "echo (wall)",
                "round trips/s",
                "ops/s",
                {i: rec["ops_per_s"] for i, rec in echo.items()},
                detail="load client CPU utilisation (1.0 = the client was the bottleneck): "
                + ", ".join(
                    f"{SHORT[i]} {client_util[i]:.2f}"
                    for i in IMPLS
                    if client_util.get(i) is not None
                ),
            )
        )

    # fallback: the pure-Python arm against asyncio, and the core against the fallback
    for workload in FALLBACK_WORKLOADS:
        values = ops(workload)
        if not values:
            continue
        fa = _ratio(values.get("qloop-fallback"), values.get("asyncio"))
        cf = _ratio(values.get("qloop-core"), values.get("qloop-fallback"))
        checks = {
            "fallback/asyncio": None if fa is None else fa >= FALLBACK_VS_ASYNCIO,
            "core/fallback": None if cf is None else cf >= CORE_VS_FALLBACK,
        }
        rows.append(
            _row(
                f"fallback:{workload}",
                "ops/s",
                "ops/s",
                values,
                f"fallback/asyncio >= {FALLBACK_VS_ASYNCIO:g}; core/fallback >= {CORE_VS_FALLBACK:g}",
                _all_known(checks),
                detail=_partial_note(checks),
            )
        )

    # memory
    mem = results.get(("timer_memory", None), {})
    if mem:
        values = {
            impl: rec["extra_info"].get("bytes_per_timer") for impl, rec in mem.items()
        }
        n = next((rec["extra_info"].get("timers") for rec in mem.values()), None)
        c = values.get("qloop-core")
        rows.append(
            _row(
                f"timer_memory[{n}]",
                "bytes/armed timer",
                "B",
                values,
                f"core <= {MEMORY_BAR:g} B",
                None if c is None else c <= MEMORY_BAR,
                ratios=False,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(v, unit="") -> str:
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "B":
        return f"{v:.0f}"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.1f}"


def _fmt_ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def render(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "qloop benchmarks",
        f"  date: {meta.get('date')}   measured: {meta.get('measured_at', '?')}",
        f"  machine: {meta.get('platform')}  cpu: {meta.get('cpu')}  nproc: {meta.get('nproc')}",
        f"  python: {meta.get('python')}  commit: {meta.get('commit')}"
        + ("  (dirty tree)" if meta.get("dirty") else ""),
        f"  scale: {meta.get('scale')}  rounds: {meta.get('rounds')}  ops/s from round time: {report['stat']}",
    ]
    if meta.get("scale") not in (None, 1, 1.0):
        lines.append(
            f"  NOTE: reduced scale {meta.get('scale')}: the bars are defined for full-size workloads"
        )
    load = meta.get("loadavg_at_start")
    busy = meta.get("other_cpu_busy_at_start")
    if load or busy is not None:
        text = "  machine load before the run:"
        if busy is not None:
            text += f" CPUs {busy * 100:.0f}% busy (1 s sample)"
        if load:
            end = (meta.get("loadavg_at_end") or [0])[0]
            text += f"; load average {load[0]:.2f} at start, {end:.2f} at end"
        lines.append(text)
    other = meta.get("other_load_during_run") or {}
    if other.get("cpus") is not None:
        text = (
            f"  other processes during the run: {other['other_cpu_s']:.0f} CPU-s in {other['wall_s']:.0f} s"
            f" (on average {other['cpus']:.2f} of {meta.get('nproc')} CPUs busy"
        )
        if other.get("worst_test_cpus") is not None:
            text += f", {other['worst_test_cpus']:.2f} during the worst benchmark"
        text += "; echo not counted)" if other.get("excludes") else ")"
        lines.append(text)
    noisy = (
        (busy is not None and busy > 0.2)
        or (other.get("cpus") or 0) > 0.15
        or (other.get("worst_test_cpus") or 0) > 0.3
    )
    if noisy:
        lines.append(
            "  WARNING: the machine was busy with other work: ratios are unreliable, run again"
        )
    lines.append("")
    headers = [
        "workload",
        "metric",
        "core",
        "fallback",
        "asyncio",
        "uvloop",
        "core/uvloop",
        "core/asyncio",
        "core/fallback",
        "fb/asyncio",
        "bar",
        "result",
    ]
    table = []
    for row in report["rows"]:
        vals = [_fmt(row["values"].get(i), row["unit"]) for i in IMPLS]
        rat = row.get("ratios") or {}
        table.append(
            [
                row["workload"],
                row["metric"],
                *vals,
                _fmt_ratio(rat.get("core/uvloop")),
                _fmt_ratio(rat.get("core/asyncio")),
                _fmt_ratio(rat.get("core/fallback")),
                _fmt_ratio(rat.get("fallback/asyncio")),
                row["bar"],
                row["status"],
            ]
        )
    if not table:  # a -k selection without any of these workloads: no empty table
        lines.append("(no workload of qloop's own API in this run)")
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[k]) for r in table)) for k, h in enumerate(headers)]

    def fmt_row(cells):
        return "  ".join(
            c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    lines.append(fmt_row(headers))
    lines.append(fmt_row(["-" * w for w in widths]))
    lines.extend(fmt_row(r) for r in table)
    notes = [
        f"  {row['workload']}: {row['detail']}"
        for row in report["rows"]
        if row.get("detail")
    ]
    if notes:
        lines += ["", "notes:", *notes]
    missing = [
        i
        for i in IMPLS
        if not any(row["values"].get(i) is not None for row in report["rows"])
    ]
    if missing:
        lines += ["", "not measured (unavailable or skipped): " + ", ".join(missing)]
    counts = {
        s: sum(1 for r in report["rows"] if r["status"] == s)
        for s in ("PASS", "FAIL", "n/a")
    }
    lines += [
        "",
        f"bars: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['n/a']} n/a",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The asyncio event loop (bench/test_aio_*.py): five loops through the asyncio API, own table

AIO_IMPLS = ("qloop-core", "qloop-fallback", "asyncio", "uvloop", "rloop")
AIO_PEERS = ("asyncio", "uvloop", "rloop")
AIO_SHORT = {**SHORT, "rloop": "rloop"}
# group -> (label, unit); echo groups are measured in round trips per server CPU-second
AIO_WORKLOADS = {
    "aio_call_soon_chain": ("call_soon chain", "callbacks/s"),
    "aio_call_soon_batch": ("call_soon batches (1,000)", "callbacks/s"),
    "aio_call_later": ("call_later (1/10 cancelled)", "timers/s"),
    "aio_tasks": ("tasks (100 x sleep(0))", "task steps/s"),
    "aio_futures": ("futures via call_soon", "futures/s"),
    "aio_threadsafe": ("call_soon_threadsafe", "round trips/s"),
    "aio_threadsafe_burst": ("call_soon_threadsafe burst (4 threads)", "calls/s"),
    "aio_echo_protocol": ("Protocol echo (server)", "rt per server CPU-s"),
    "aio_echo_streams": ("streams echo (server)", "rt per server CPU-s"),
    "aio_tcp_throughput": ("TCP throughput", "GB/s"),
    "aio_udp_echo": ("UDP echo", "round trips/s"),
    "aio_thread_pool": ("run_in_executor(None) jobs", "jobs/s"),
    "http_raw": ("HTTP raw Protocol (wrk)", "requests/s"),
    "http_aiohttp": ("HTTP aiohttp (wrk)", "requests/s"),
    "http_uvicorn": ("HTTP uvicorn+httptools (wrk)", "requests/s"),
}
AIO_BAR = "core >= best peer; fallback >= asyncio"
# rows whose core bar is above 1x the best peer (core/best peer >= this)
AIO_CORE_BARS = {
    "aio_call_soon_chain": 1.25,
    "aio_call_soon_batch": 1.25,
    "aio_call_later": 1.25,
    "aio_tasks": 1.25,
    "aio_futures": 1.25,
    "aio_udp_echo": 1.25,
    "aio_tcp_throughput": 1.2,
    "aio_threadsafe_burst": 1.5,
    "http_raw": 1.1,
    "http_aiohttp": 1.1,
    "http_uvicorn": 1.1,
}
HTTP_WORKLOADS = ("http_raw", "http_aiohttp", "http_uvicorn")
# rows whose fallback bar is above asyncio's loop (fallback/asyncio >= this; else 1x)
AIO_FALLBACK_BARS = {
    "aio_call_soon_chain": 1.2,
    "aio_call_soon_batch": 1.2,
    "aio_call_later": 1.2,
    "aio_tasks": 1.2,
    "aio_futures": 1.2,
    "aio_udp_echo": 1.2,
}
# thread_pool (bench/test_thread_pool.py): qloop's ThreadPool against the peers' default executor
THREAD_POOL_BAR = 1.5  # core / best peer, in jobs/s and in jobs per loop-thread CPU-second
# Virtual time (bench/test_aio_virtual_sleep.py): qloop's virtual-time loop against looptime
# over asyncio's loop; its own columns and bar, rendered below the table of the other rows.
AIO_VT_WORKLOADS = {
    "aio_virtual_sleep": ("virtual-time sleeps (1,000 tasks)", "sleeps/s"),
}
AIO_VT_IMPLS = ("qloop-core", "qloop-fallback", "looptime")
AIO_VT_CORE_BAR = 5.0
AIO_VT_BAR = f"core >= {AIO_VT_CORE_BAR:g}x looptime; fallback >= looptime"


def _aio_values(group: str, recs: dict) -> dict:
    if group in HTTP_WORKLOADS:  # wrk's requests/s, the median of the rounds
        return {impl: rec["extra_info"].get("requests_per_s") for impl, rec in recs.items()}
    if group.startswith("aio_echo_"):
        out = {}
        for impl, rec in recs.items():
            cpu = rec["extra_info"].get("server_cpu_per_rt")
            out[impl] = (1.0 / cpu) if cpu else None
        return out
    return {impl: rec["ops_per_s"] for impl, rec in recs.items()}


def build_aio_rows(results: dict) -> list[dict]:
    """One row per aio_* workload: the core against the best peer, the fallback against asyncio."""
    rows = []
    for group, (label, unit) in AIO_WORKLOADS.items():
        recs = results.get((group, None), {})
        if not recs:
            continue
        values = _aio_values(group, recs)
        peers = {p: values[p] for p in AIO_PEERS if values.get(p)}
        best = max(peers, key=peers.get) if peers else None
        core_best = _ratio(values.get("qloop-core"), peers.get(best) if best else None)
        fb_asyncio = _ratio(values.get("qloop-fallback"), values.get("asyncio"))
        core_bar = AIO_CORE_BARS.get(group, 1.0)
        fallback_bar = AIO_FALLBACK_BARS.get(group, 1.0)
        checks = {
            "core/best peer": None if core_best is None else core_best >= core_bar,
            "fallback/asyncio": None if fb_asyncio is None else fb_asyncio >= fallback_bar,
        }
        detail = _partial_note(checks)
        if group == "aio_threadsafe_burst":
            detail = "; ".join(
                filter(
                    None,
                    [
                        "loop thread CPU ns/call: "
                        + ", ".join(
                            f"{AIO_SHORT[i]} {recs[i]['extra_info']['loop_cpu_per_call'] * 1e9:.0f}"
                            for i in AIO_IMPLS
                            if i in recs and recs[i]["extra_info"].get("loop_cpu_per_call")
                        ),
                        detail,
                    ],
                )
            )
        if group.startswith("aio_echo_"):
            detail = "; ".join(
                filter(
                    None,
                    [
                        "server CPU us/rt: "
                        + ", ".join(
                            f"{AIO_SHORT[i]} {1e6 / values[i]:.1f}"
                            for i in AIO_IMPLS
                            if values.get(i)
                        ),
                        detail,
                    ],
                )
            )
        rows.append(
            {
                "workload": group,
                "label": label,
                "unit": unit,
                "values": {impl: values.get(impl) for impl in AIO_IMPLS},
                "best_peer": best,
                "ratios": {"core/best peer": core_best, "fallback/asyncio": fb_asyncio},
                "bar": f"core >= {core_bar:g}x best peer; fallback >= {fallback_bar:g}x asyncio",
                "status": _status(_all_known(checks)),
                "detail": detail,
            }
        )
    rows.extend(build_thread_pool_rows(results))
    rows.extend(build_http_cpu_rows(results))
    rows.extend(build_aio_vt_rows(results))
    return rows


def build_thread_pool_rows(results: dict) -> list[dict]:
    """thread_pool: jobs/s and jobs per loop-thread CPU-second, core against the best peer."""
    recs = results.get(("thread_pool", None), {})
    if not recs:
        return []
    per_cpu = {}
    for impl, rec in recs.items():
        c = rec["extra_info"].get("loop_cpu_per_job")
        per_cpu[impl] = (1.0 / c) if c else None
    rows = []
    for label, unit, values in (
        ("thread pool round trips", "jobs/s", _aio_values("thread_pool", recs)),
        ("thread pool, loop-thread CPU", "jobs/loop CPU-s", per_cpu),
    ):
        peers = {p: values[p] for p in AIO_PEERS if values.get(p)}
        best = max(peers, key=peers.get) if peers else None
        core_best = _ratio(values.get("qloop-core"), peers.get(best) if best else None)
        fb_asyncio = _ratio(values.get("qloop-fallback"), values.get("asyncio"))
        checks = {
            "core/best peer": None if core_best is None else core_best >= THREAD_POOL_BAR,
            "fallback/asyncio": None if fb_asyncio is None else fb_asyncio >= 1.0,
        }
        detail = f"bar: core >= {THREAD_POOL_BAR:g}x best peer; fallback >= asyncio"
        if unit != "jobs/s":
            detail += "; loop-thread CPU us/job: " + ", ".join(
                f"{AIO_SHORT[i]} {1e6 / values[i]:.2f}" for i in AIO_IMPLS if values.get(i))
        note = _partial_note(checks)
        rows.append(
            {
                "workload": "thread_pool",
                "label": label,
                "unit": unit,
                "values": {impl: values.get(impl) for impl in AIO_IMPLS},
                "best_peer": best,
                "ratios": {"core/best peer": core_best, "fallback/asyncio": fb_asyncio},
                "bar": f"core >= {THREAD_POOL_BAR:g}x best peer; fallback >= asyncio",
                "status": _status(_all_known(checks)),
                "detail": detail + (f"; {note}" if note else ""),
            }
        )
    return rows


def build_http_cpu_rows(results: dict) -> list[dict]:
    """For information: the HTTP servers' requests per server CPU-second (no bar).

    wrk's requests/s depends on how much CPU the server got; its CPU time per request does
    not, so on a busy machine these rows are the steadier comparison of the loops.
    """
    rows = []
    for group in HTTP_WORKLOADS:
        recs = results.get((group, None), {})
        if not recs:
            continue
        values = {
            impl: rec["extra_info"].get("requests_per_server_cpu_s") for impl, rec in recs.items()
        }
        peers = {p: values[p] for p in AIO_PEERS if values.get(p)}
        best = max(peers, key=peers.get) if peers else None
        label = AIO_WORKLOADS[group][0].replace(" (wrk)", "")
        rows.append(
            {
                "workload": group + ":cpu",
                "kind": "http_cpu",
                "label": f"{label}, per server CPU-s",
                "unit": "requests/CPU-s",
                "values": {impl: values.get(impl) for impl in AIO_IMPLS},
                "best_peer": best,
                "ratios": {
                    "core/best peer": _ratio(
                        values.get("qloop-core"), peers.get(best) if best else None
                    ),
                    "fallback/asyncio": _ratio(
                        values.get("qloop-fallback"), values.get("asyncio")
                    ),
                },
                "bar": "",
                "status": "info",
                "detail": "",
            }
        )
    return rows


def build_aio_vt_rows(results: dict) -> list[dict]:
    """The virtual-time rows: qloop's two implementations against looptime."""
    rows = []
    for group, (label, unit) in AIO_VT_WORKLOADS.items():
        recs = results.get((group, None), {})
        if not recs:
            continue
        values = _aio_values(group, recs)
        core = _ratio(values.get("qloop-core"), values.get("looptime"))
        fallback = _ratio(values.get("qloop-fallback"), values.get("looptime"))
        checks = {
            "core/looptime": None if core is None else core >= AIO_VT_CORE_BAR,
            "fallback/looptime": None if fallback is None else fallback >= 1.0,
        }
        rows.append(
            {
                "workload": group,
                "kind": "virtual_time",
                "label": label,
                "unit": unit,
                "values": {impl: values.get(impl) for impl in AIO_VT_IMPLS},
                "ratios": {"core/looptime": core, "fallback/looptime": fallback},
                "bar": AIO_VT_BAR,
                "status": _status(_all_known(checks)),
                "detail": _partial_note(checks),
            }
        )
    return rows


def _fmt_aio(v, unit: str) -> str:
    if v is not None and unit == "GB/s":  # ops are bytes
        return f"{v / 1e9:.2f}"
    return _fmt(v)


def render_aio(report: dict) -> str:
    all_rows = report.get("aio_rows") or []
    rows = [r for r in all_rows if r.get("kind") != "virtual_time"]
    vt_rows = [r for r in all_rows if r.get("kind") == "virtual_time"]
    if not rows:
        return _render_aio_vt(vt_rows, all_rows)
    headers = [
        "workload",
        "unit",
        *(AIO_SHORT[i] for i in AIO_IMPLS),
        "best peer",
        "core/best",
        "fb/asyncio",
        "core bar",
        "result",
    ]
    table = [
        [
            row["label"],
            row["unit"],
            *(_fmt_aio(row["values"].get(i), row["unit"]) for i in AIO_IMPLS),
            row["best_peer"] or "-",
            _fmt_ratio(row["ratios"].get("core/best peer")),
            _fmt_ratio(row["ratios"].get("fallback/asyncio")),
            f">= {AIO_CORE_BARS.get(row['workload'], 1.0):g}" if row["bar"] else "-",
            row["status"],
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(r[k]) for r in table)) for k, h in enumerate(headers)]

    def fmt_row(cells):
        return "  ".join(
            c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    lines = [
        "",
        "",
        (
            "asyncio event loop: five loops through the asyncio API (bars: core >= 'core bar'"
            " x the best peer; fallback >= asyncio)"
        ),
        "",
        fmt_row(headers),
        fmt_row(["-" * w for w in widths]),
        *(fmt_row(r) for r in table),
    ]
    notes = [f"  {row['label']}: {row['detail']}" for row in rows if row["detail"]]
    if notes:
        lines += ["", "notes:", *notes]
    missing = [i for i in AIO_IMPLS if not any(r["values"].get(i) for r in rows)]
    if missing:
        lines += ["", "not measured (unavailable or skipped): " + ", ".join(missing)]
    return "\n".join(lines) + _render_aio_vt(vt_rows, all_rows)


def _render_aio_vt(vt_rows: list[dict], all_rows: list[dict]) -> str:
    """The virtual-time rows (their own columns), then the bar counts of the whole section."""
    lines = []
    if vt_rows:
        headers = ["workload", "unit", *AIO_VT_IMPLS, "core/looptime", "fb/looptime",
                   "result"]
        table = [
            [
                row["label"],
                row["unit"],
                *(_fmt_aio(row["values"].get(i), row["unit"]) for i in AIO_VT_IMPLS),
                _fmt_ratio(row["ratios"].get("core/looptime")),
                _fmt_ratio(row["ratios"].get("fallback/looptime")),
                row["status"],
            ]
            for row in vt_rows
        ]
        widths = [max(len(h), *(len(r[k]) for r in table)) for k, h in enumerate(headers)]
        lines += [
            "",
            "",
            f"virtual time: qloop's virtual-time loop against looptime (bars: {AIO_VT_BAR})",
            "",
            "  ".join(c.ljust(w) for c, w in zip(headers, widths, strict=True)).rstrip(),
            "  ".join("-" * w for w in widths),
            *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in table),
        ]
        notes = [f"  {row['label']}: {row['detail']}" for row in vt_rows if row["detail"]]
        if notes:
            lines += ["", "notes:", *notes]
    if not all_rows:
        return ""
    counts = {
        s: sum(1 for r in all_rows if r["status"] == s) for s in ("PASS", "FAIL", "n/a")
    }
    lines += [
        "",
        f"asyncio loop bars: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['n/a']} n/a",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib, Agg backend): one PNG per group of workloads, one bar per loop

CHART_COLORS = {
    "qloop-core": "#1f77b4",
    "qloop-fallback": "#9ecae1",
    "asyncio": "#7f7f7f",
    "uvloop": "#ff7f0e",
    "rloop": "#2ca02c",
}
CHART_GROUPS = {
    "http_servers": (
        ("HTTP servers under wrk (64 connections, keep-alive): requests/s and requests per"
        " server CPU-second, higher is better"),
        lambda row: row["workload"] in HTTP_WORKLOADS or row.get("kind") == "http_cpu",
    ),
    "asyncio_loops": (
        "asyncio event loops through the asyncio API: higher is better",
        lambda row: row["workload"] not in HTTP_WORKLOADS
        and row.get("kind") not in ("virtual_time", "http_cpu"),
    ),
}
QLOOP_API_CHART = (
    "qloop's own API (BHs, timers, fds) against asyncio and uvloop: higher is better"
)


def _chart_footer(meta: dict) -> str:
    date = (meta.get("measured_at") or meta.get("date") or "?")[:16].replace("T", " ")
    measured = meta.get("measured_on") or {}
    cpu = measured.get("cpu") or meta.get("cpu")
    commit = (meta.get("commit") or "?")[:10]
    scale = meta.get("scale")
    text = (
        f"measured {date} UTC on {cpu}, {meta.get('nproc')} CPUs, {meta.get('python')}, "
        f"{meta.get('kernel')}; qloop {commit}"
    )
    if scale not in (None, 1, 1.0):
        text += f"; REDUCED SCALE {scale}"
    other = (meta.get("other_load_during_run") or {}).get("cpus")
    busy = meta.get("other_cpu_busy_at_start")
    if (other or 0) > 0.15 or (busy or 0) > 0.2:
        text += (
            f"\nWARNING: a busy machine: other processes kept {other or 0:.2f} of "
            f"{meta.get('nproc')} CPUs busy on average during the run; compare only ratios "
            "within one chart"
        )
    return text


def _panel(ax, title: str, unit: str, values: dict, impls, core_bar=None) -> None:
    names = [i for i in impls if values.get(i)]
    heights = [values[i] for i in names]
    scale, suffix = 1.0, ""
    top = max(heights) if heights else 0
    if unit == "GB/s":
        scale, suffix = 1e-9, ""
    elif top >= 1e6:
        scale, suffix = 1e-6, "M"
    elif top >= 1e3:
        scale, suffix = 1e-3, "k"
    bars = ax.bar(
        range(len(names)),
        [h * scale for h in heights],
        color=[CHART_COLORS.get(n, "#bbbbbb") for n in names],
    )
    for b, h in zip(bars, heights, strict=True):
        ax.annotate(
            f"{h * scale:.3g}{suffix}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points",
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([AIO_SHORT.get(n, n) for n in names], rotation=0, fontsize=8)
    ax.set_ylabel(f"{suffix}{unit}" if suffix and unit != "GB/s" else unit, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylim(0, (top * scale) * 1.18 if top else 1)
    peers = [values[p] for p in AIO_PEERS if values.get(p)]
    sub = ""
    if values.get("qloop-core") and peers:
        sub = f"\ncore / best peer = {values['qloop-core'] / max(peers):.2f}x"
        if core_bar:
            sub += f" (bar {core_bar:g}x)"
    ax.set_title(title + sub, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def draw_charts(report: dict, outdir: Path) -> list[Path]:
    """Write the PNG bar charts of ``report`` to ``outdir``; return their paths.

    Needs matplotlib (requirements/bench.txt); without it, prints why and draws nothing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        print(f"charts not drawn: matplotlib is not available ({exc})", file=sys.stderr)
        return []
    meta = report["meta"]
    footer = _chart_footer(meta)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    groups = []
    for name, (title, pick) in CHART_GROUPS.items():
        rows = [r for r in report.get("aio_rows") or [] if pick(r)]
        panels = [
            (r["label"], r["unit"], r["values"], AIO_IMPLS, AIO_CORE_BARS.get(r["workload"]))
            for r in rows
        ]
        groups.append((name, title, panels))
    api_rows = [
        r for r in report.get("rows") or []
        if r["unit"] in ("ops/s", "ops/cpu-s") and not r["workload"].startswith("fallback:")
        and any(r["values"].values())
    ]
    groups.append(
        (
            "qloop_api",
            QLOOP_API_CHART,
            [(f"{r['workload']} ({r['metric']})", r["metric"], r["values"], IMPLS, None)
             for r in api_rows],
        )
    )
    for name, title, panels in groups:
        if not panels:
            continue
        cols = min(3, len(panels))
        nrows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(
            nrows, cols, figsize=(4.2 * cols, 3.3 * nrows + 0.9), squeeze=False
        )
        for ax, (label, unit, values, impls, bar) in zip(axes.flat, panels, strict=False):
            _panel(ax, label, unit, values, impls, bar)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        fig.suptitle(title, fontsize=11)
        lines = footer.count("\n") + 1
        fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=7, color="#555555")
        bottom = (0.1 * lines + 0.05) / fig.get_figheight()
        fig.tight_layout(rect=(0, bottom, 1, 1 - 0.35 / fig.get_figheight()))
        path = outdir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def run_pytest(json_path: Path, pytest_args: list[str]) -> int:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO_ROOT / "bench"),
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "-p",
        "no:cacheprovider",
        *pytest_args,
    ]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.call(cmd, cwd=str(REPO_ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="use this --benchmark-json file instead of running pytest",
    )
    ap.add_argument(
        "--out",
        default=str(REPO_ROOT / "bench" / "results.json"),
        help="where to write the table as JSON",
    )
    ap.add_argument(
        "--save-raw", metavar="FILE", help="also keep pytest-benchmark's raw JSON here"
    )
    ap.add_argument("--stat", choices=("min", "median", "mean"), default="min")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a bar FAILs")
    ap.add_argument(
        "--charts",
        default=str(REPO_ROOT / "bench" / "charts"),
        metavar="DIR",
        help="where to write the PNG bar charts (default bench/charts)",
    )
    ap.add_argument("--no-charts", action="store_true", help="do not draw the charts")
    ap.add_argument(
        "pytest_args", nargs="*", help="after --: extra pytest arguments (e.g. -k bh_)"
    )
    args = ap.parse_args(argv)

    rc = 0
    if args.from_file:
        raw_path = Path(args.from_file)
    else:
        tmpdir = tempfile.mkdtemp(prefix="qloop-bench-")
        raw_path = (
            Path(args.save_raw) if args.save_raw else Path(tmpdir) / "benchmark.json"
        )
        rc = run_pytest(raw_path, args.pytest_args)
        if not raw_path.exists():
            print(f"pytest exited {rc} without writing {raw_path}", file=sys.stderr)
            return rc or 1
    data = json.loads(raw_path.read_text())
    results = collect(data, args.stat)
    meta = machine_meta()
    meta["measured_at"] = data.get("datetime")
    commit_info = data.get("commit_info") or {}
    if args.from_file and all(
        c in "0123456789abcdef" for c in str(commit_info.get("id") or "x")
    ):
        meta["commit"] = commit_info.get("id")
        meta["dirty"] = commit_info.get("dirty")
    bench_meta = data.get("qloop_bench") or {}
    meta["scale"] = bench_meta.get("scale")
    meta["rounds"] = bench_meta.get("rounds")
    meta["loadavg_at_start"] = bench_meta.get("loadavg_at_start")
    meta["other_cpu_busy_at_start"] = bench_meta.get("other_cpu_busy_at_start")
    meta["other_load_during_run"] = bench_meta.get("other_load_during_run")
    meta["loadavg_at_end"] = bench_meta.get("loadavg_at_end")
    meta["source"] = (
        str(raw_path) if args.from_file else "pytest bench/ --benchmark-only (this run)"
    )
    if args.from_file:
        mi = data.get("machine_info") or {}
        meta["measured_on"] = {
            "node": mi.get("node"),
            "cpu": (mi.get("cpu") or {}).get("brand_raw"),
            "python": mi.get("python_version"),
            "release": mi.get("release"),
        }
    report = {
        "meta": meta,
        "stat": args.stat,
        "rows": build_rows(results),
        "aio_rows": build_aio_rows(results),
        "benchmarks": [
            {"group": g, "variant": v, "impl": impl, **rec}
            for (g, v), recs in sorted(
                results.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
            )
            for impl, rec in sorted(recs.items())
        ],
        "pytest_exit_code": rc,
    }
    text = render(report) + render_aio(report)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    print(f"\nwritten: {out}", file=sys.stderr)
    if not args.no_charts:
        for path in draw_charts(report, Path(args.charts)):
            print(f"written: {path}", file=sys.stderr)
    if rc:
        return rc
    if args.strict and any(
        r["status"] == "FAIL" for r in report["rows"] + report["aio_rows"]
    ):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
