"""Package: which implementation is live, version, and the public names of both modules."""

from __future__ import annotations

import enum
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest

# Public names of the in-scope API.md sections (Clocks, EventNotifier, AioContext, BH,
# Timer, NotifierList), exported by both qloop._core and qloop._fallback.
API_NAMES = [
    "ClockType",
    "SCALE_NS",
    "SCALE_US",
    "SCALE_MS",
    "clock_get_ns",
    "clock_get_us",
    "clock_get_ms",
    "clock_enable",
    "clock_is_enabled",
    "clock_set_manual",
    "clock_advance_virtual_time",
    "soonest_timeout",
    "timeout_ns_to_ms",
    "EventNotifier",
    "AioContext",
    "BH",
    "Timer",
    "TIMER_ATTR_EXTERNAL",
    "NotifierList",
]

CLASS_MEMBERS = {
    "EventNotifier": ["set", "test_and_clear", "fileno", "close", "__enter__", "__exit__"],
    "AioContext": [
        "set_fd_handler", "set_fd_poll", "set_event_notifier", "poll", "notify",
        "compute_timeout", "bh_new", "bh_schedule_oneshot", "timer_new", "timer_new_ns",
        "timer_new_us", "timer_new_ms", "set_poll_params", "close", "fdmon",
        "set_exception_handler", "__enter__", "__exit__",
    ],
    "BH": ["schedule", "schedule_idle", "cancel", "delete", "name"],
    "Timer": [
        "mod", "mod_ns", "mod_anticipate", "mod_anticipate_ns", "delete", "pending",
        "expired", "expire_time_ns",
    ],
    "NotifierList": ["add", "remove", "notify"],
}


def package_root() -> str:
    spec = importlib.util.find_spec("qloop")
    assert spec is not None and spec.origin is not None, "qloop is not importable"
    return os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))


def run_python(code: str, **env_overrides: str) -> str:
    env = dict(os.environ)
    env.pop("QLOOP_NO_EXTENSIONS", None)
    env.update(env_overrides)
    env["PYTHONPATH"] = package_root() + os.pathsep + env.get("PYTHONPATH", "")
    # cwd outside the source tree: `python -c` puts the cwd first on sys.path, and a source
    # checkout without an in-place build would shadow the installed package
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
        cwd=tempfile.gettempdir(), check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def compiled_arm_skipped(config) -> bool:
    return bool(os.environ.get("QLOOP_NO_EXTENSIONS")) or config.getoption("--no-c-extensions")


def test_implementation_is_core_by_default(pytestconfig):
    if compiled_arm_skipped(pytestconfig):
        pytest.skip("the compiled core is not tested in this run")
    out = run_python(
        "import qloop; print(qloop.IMPLEMENTATION); print(qloop.USE_EXTENSIONS)",
        QLOOP_REQUIRE_EXTENSIONS="",
    )
    assert out.splitlines() == ["core", "True"]


def test_implementation_is_fallback_with_no_extensions():
    out = run_python(
        "import qloop; print(qloop.IMPLEMENTATION); print(qloop.USE_EXTENSIONS)",
        QLOOP_NO_EXTENSIONS="1",
    )
    assert out.splitlines() == ["fallback", "False"]


def test_live_module_is_reexported():
    out = run_python(
        "import qloop, qloop._fallback as f\n"
        "print(all(getattr(qloop, n) is getattr(f, n) for n in "
        f"{API_NAMES!r}))",
        QLOOP_NO_EXTENSIONS="1",
    )
    assert out == "True"


def test_version_and_flags_in_process():
    import qloop

    assert isinstance(qloop.__version__, str) and qloop.__version__
    assert isinstance(qloop.USE_EXTENSIONS, bool)
    assert qloop.IMPLEMENTATION in ("core", "fallback")
    assert qloop.USE_EXTENSIONS == (qloop.IMPLEMENTATION == "core")
    live = importlib.import_module("qloop._" + qloop.IMPLEMENTATION)
    for name in API_NAMES:
        assert getattr(qloop, name) is getattr(live, name), name


@pytest.mark.parametrize("name", API_NAMES)
def test_module_exports_api_name(qloop_module, name):
    assert hasattr(qloop_module, name)


@pytest.mark.parametrize("cls", sorted(CLASS_MEMBERS))
def test_class_members(qloop_module, cls):
    klass = getattr(qloop_module, cls)
    missing = [m for m in CLASS_MEMBERS[cls] if not hasattr(klass, m)]
    assert missing == []


def test_clock_type_is_int_enum(qloop_module):
    assert issubclass(qloop_module.ClockType, enum.IntEnum)
    assert [c.name for c in qloop_module.ClockType] == ["REALTIME", "VIRTUAL", "HOST", "VIRTUAL_RT"]


def test_both_modules_export_the_same_public_names(pytestconfig):
    if compiled_arm_skipped(pytestconfig):
        pytest.skip("the compiled core is not tested in this run")
    fallback = importlib.import_module("qloop._fallback")
    core = importlib.import_module("qloop._core")
    for name in API_NAMES:
        assert hasattr(core, name) and hasattr(fallback, name), name
    fb_all = getattr(fallback, "__all__", None)
    core_all = getattr(core, "__all__", None)
    assert fb_all is not None and core_all is not None, "both modules define __all__"
    assert sorted(fb_all) == sorted(core_all)
    for cls, members in CLASS_MEMBERS.items():
        for m in members:
            assert hasattr(getattr(core, cls), m) == hasattr(getattr(fallback, cls), m)
