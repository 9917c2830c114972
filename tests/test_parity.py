"""The twins mirror each other (CONTRIBUTING.md, "The layout"): for each class of the compiled
core (``qloop/_cy/*.pxi``) and its pure-Python twin (``qloop/_py/*.py``), the same methods in
the same order; and for the modules of functions over an AioContext (its adapters), the same
module-level functions in the same order.  Read from the sources.  C-only or Python-only
helpers are listed below, each with the reason it has no twin; everything else must pair up.

The behaviour side of parity (same results, same exception types and messages) is
``tests/test_bad_input_table.py`` and the differential tests."""

from __future__ import annotations

import ast
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) / "qloop"

# (stem, class) pairs: the class of the same name in _cy/<stem>.pxi and _py/<stem>.py
TWIN_CLASSES = [
    ("notifier", "EventNotifier"),
    ("timers", "_TimerList"),
    ("timers", "Timer"),
    ("bh", "BH"),
    ("context", "_Handler"),
    ("context", "AioContext"),
    ("loop", "Handle"),
    ("loop", "TimerHandle"),
    ("loop", "_LoopBase"),
    ("loop", "_FdEntry"),
    ("mainloop", "BigLock"),
    ("mainloop", "MainLoopWait"),
    ("transports", "_TransportBase"),
    ("transports", "_ReadableTransport"),
    ("transports", "_StreamTransport"),
    ("pipes", "_ReadPipeTransport"),
    ("pipes", "_WritePipeTransport"),
    ("dgram", "_DatagramTransport"),
]

# Modules whose module-level functions pair up: _cy/<stem>.pxi and _py/<stem>.py (AioContext's
# adapters, functions over a context rather than methods of it).
TWIN_MODULES = ["context_gsource", "context_mainloop"]

# Construction and finalisation differ by nature (Cython's __cinit__/__dealloc__ and C fields
# against Python's __init__/__del__), and a cdef class fakes isinstance() with a __class__
# property: not compared.
LIFECYCLE = {"__init__", "__del__", "__cinit__", "__dealloc__", "__init_subclass__", "__class__"}

# Methods one twin has and the other does not, with why.
ONLY_IN_CORE: dict[str, dict[str, str]] = {
    "EventNotifier": {
        "_set": "the nogil C body of set(), also called by the C wait",
        "_test_and_clear": "the nogil C body of test_and_clear(), also called by the C wait",
    },
    "_TimerList": {
        "_push": "a C heap of structs needs its own sift-up (the fallback uses heapq)",
        "_pop_top": "a C heap of structs needs its own sift-down (the fallback uses heapq)",
        "_drop_stale_top": "C struct entries carry their own staleness test (fallback: _head)",
        "_compact": "rebuilds the C array in place (fallback: _maybe_compact)",
    },
    "BH": {"_check": "a C-level closed-context check callable without a Python frame"},
    "AioContext": {
        "_set_fd_owner": "C fd owners (transports) reach the dispatch without a Python call",
        "_rebuild_pollfds": "the C pollfd array (the fallback hands select.poll a dict)",
        "_wait_failed": "turns a C errno into OSError outside the nogil wait",
        "_add_ready": "appends to the C ready array (the fallback: a Python list)",
        "_wait_ppoll": "the nogil ppoll(2) wait",
        "_wait_epoll": "the nogil epoll_wait(2) wait",
        "_dispatch_owner": "the C fd owner's dispatch (see _set_fd_owner)",
        "_bh_enqueue": "the atomic C push onto the pending stack (fallback: BH._enqueue)",
        "_timer_new": "the C body shared by the four timer_new* methods",
        "_poll": "the C body of poll() with a C bool argument",
        "_free_deleted_handlers": "frees C handler nodes once no walker holds them",
    },
    "Handle": {"_new": "freelisted C allocation (the fallback calls the class)"},
    "TimerHandle": {"_new_timer": "freelisted C allocation (the fallback calls the class)"},
    "_LoopBase": {
        "slow_callback_duration": "a C double behind a property (the fallback: an attribute)",
        "_now_ns": "an inline C clock read (the fallback: a bound function attribute)",
        "_check_closed_py": "a Python entry to the C closed check, for the shared API",
        "_ready": "a snapshot of the C ring as a property (the fallback: the deque itself)",
        "_check_thread_py": "a Python entry to the C thread check, for the shared API",
        "_grow_ring": "the C ready ring grows by reallocation (the fallback: a deque)",
        "_push": "pushes onto the C ready ring",
        "_grow_ring_holding": "grows the C ring under a handle that must be tracked if it fails",
        "_call_soon": "the C body of call_soon/call_soon_threadsafe, installed as fast calls",
        "_call_soon_slow": "_call_soon's out-of-line path (debug traceback, ring growth)",
        "_heap_pop": "a C heap needs its own sift-down (the fallback uses heapq)",
    },
    "BigLock": {"_lock": "the nogil C body of lock()", "_unlock": "the C body of unlock()"},
    "MainLoopWait": {"_reserve": "grows the C pollfd array (the fallback: Python lists)"},
    "_DatagramTransport": {
        "_on_read_py": "the Python-visible read entry of the C read path",
        "_send_one": "one C sendto(2)",
        "_send_py": "the Python-visible send entry of the C send path",
    },
}
ONLY_IN_FALLBACK: dict[str, dict[str, str]] = {
    "_TimerList": {
        "_head": "skips stale heapq entries (core: _drop_stale_top)",
        "_maybe_compact": "rebuilds the heapq list (core: _compact)",
    },
    "BH": {"_enqueue": "appends an operation for the owner thread (core: an atomic C push)"},
    "AioContext": {
        "_bh_absorb": "applies the queued BH operations (the core's flags are atomic in place)",
        "_collect_ready": "turns poll results into ready handlers (core: in the C wait)",
    },
    "Handle": {"_cancelled": "a method the C class reads as a field"},
    "_LoopBase": {
        "_new_handle": "the Python body of call_soon (core: _call_soon)",
        "call_soon": "installed on the core class as a C fast call, not a def",
        "call_soon_threadsafe": "installed on the core class as a C fast call, not a def",
    },
    "MainLoopWait": {
        "_sync": "keeps select.poll's registrations in step (core: fills a C array)",
    },
    "_TransportBase": {
        "_on_read": "the fd handler the fallback registers (core: a C fd owner)",
        "_on_write": "the fd handler the fallback registers (core: a C fd owner)",
    },
}


# Module-level functions one twin module has and the other does not, with why.
MODULE_ONLY_IN_CORE: dict[str, dict[str, str]] = {
    "context_mainloop": {
        "ml_nfds": "the main loop's C pollfd count (fallback: ml_fds returns a dict)",
        "ml_fill": "fills the main loop's C pollfd array (fallback: ml_fds)",
    },
}
MODULE_ONLY_IN_FALLBACK: dict[str, dict[str, str]] = {
    "context_mainloop": {"ml_fds": "the main loop's fds as a dict (core: ml_nfds and ml_fill)"},
}


def cython_methods(stem: str, cls: str) -> list[str]:
    text = (ROOT / "_cy" / f"{stem}.pxi").read_text()
    # the class body runs to the next top-level definition (docstrings may start lines at 0)
    m = re.search(rf"^cdef class {re.escape(cls)}\b[^\n]*:\n(.*?)(?=^(?:cdef|cpdef|def|class|@|ctypedef|"
                  rf"include|_\w+ = |\w+ = |# -----)|\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, f"no cdef class {cls} in _cy/{stem}.pxi"
    names = re.findall(r"^    (?:async\s+)?(?:cpdef|def|cdef)\s+(?:[\w\s\*\[\],]*?\s)?\*?(\w+)\s*\(",
                       m.group(1), re.MULTILINE)
    return list(dict.fromkeys(n for n in names if n not in LIFECYCLE))  # a setter repeats


def python_methods(stem: str, cls: str) -> list[str]:
    tree = ast.parse((ROOT / "_py" / f"{stem}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return list(dict.fromkeys(  # a property's setter repeats its name
                n.name for n in node.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                and n.name not in LIFECYCLE))
    raise AssertionError(f"no class {cls} in _py/{stem}.py")


def assert_paired(what: str, kind: str, core: list[str], core_only: dict[str, str],
                  fallback: list[str], fallback_only: dict[str, str]) -> None:
    """The same names in the same order, but for the allow-listed ones."""
    core = [n for n in core if n not in core_only]
    fallback = [n for n in fallback if n not in fallback_only]
    assert set(core) == set(fallback), (
        f"{what}: only in the core: {sorted(set(core) - set(fallback))}; "
        f"only in the fallback: {sorted(set(fallback) - set(core))}")
    assert core == fallback, f"{what}: the same {kind} in another order"


@pytest.mark.parametrize(("stem", "cls"), TWIN_CLASSES, ids=[c for _, c in TWIN_CLASSES])
def test_twin_classes_have_the_same_methods_in_the_same_order(stem, cls):
    assert_paired(cls, "methods", cython_methods(stem, cls), ONLY_IN_CORE.get(cls, {}),
                  python_methods(stem, cls), ONLY_IN_FALLBACK.get(cls, {}))


def test_the_allow_lists_name_methods_that_exist():
    for cls, names in ONLY_IN_CORE.items():
        stem = next(s for s, c in TWIN_CLASSES if c == cls)
        assert set(names) <= set(cython_methods(stem, cls)), cls
    for cls, names in ONLY_IN_FALLBACK.items():
        stem = next(s for s, c in TWIN_CLASSES if c == cls)
        assert set(names) <= set(python_methods(stem, cls)), cls


def cython_functions(stem: str) -> list[str]:
    """The module-level functions (cdef, cpdef or def) of ``_cy/<stem>.pxi``, in order."""
    text = (ROOT / "_cy" / f"{stem}.pxi").read_text()
    return re.findall(r"^(?:cdef|cpdef|def)[ \t]+(?!class\b)(?:[\w \t\*\[\],]*?[ \t])?\*?(\w+)"
                      r"[ \t]*\(", text, re.MULTILINE)


def python_functions(stem: str) -> list[str]:
    """The module-level functions of ``_py/<stem>.py``, in order."""
    tree = ast.parse((ROOT / "_py" / f"{stem}.py").read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.parametrize("stem", TWIN_MODULES)
def test_twin_modules_have_the_same_functions_in_the_same_order(stem):
    core = cython_functions(stem)
    assert core, f"no functions found in _cy/{stem}.pxi"
    assert_paired(stem, "functions", core, MODULE_ONLY_IN_CORE.get(stem, {}),
                  python_functions(stem), MODULE_ONLY_IN_FALLBACK.get(stem, {}))


def test_the_module_allow_lists_name_functions_that_exist():
    for stem, names in MODULE_ONLY_IN_CORE.items():
        assert stem in TWIN_MODULES and set(names) <= set(cython_functions(stem)), stem
    for stem, names in MODULE_ONLY_IN_FALLBACK.items():
        assert stem in TWIN_MODULES and set(names) <= set(python_functions(stem)), stem
