"""Regenerate the golden traces: ``PYTHONPATH=. python tests/golden/make_golden.py``.

Each ``tests/golden/<name>.json`` holds ``{"program": [...], "trace": [...]}``: a program of
the differential harness (``tests/test_hypothesis_differential.py``) and the trace the
reference implementation (``qloop._fallback``) produced.  The script refuses to write a file
when the compiled core gives a different trace.  ``tests/test_hypothesis_differential.py``
checks that BOTH implementations reproduce every committed trace exactly, so a change that
moves both implementations the same wrong way shows up as a golden diff to review.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from test_hypothesis_differential import random_program, run_program

# name -> (seed, number of ops).  Hand-written programs below pin specific semantics.
SEEDED = {"seed_11": (11, 60), "seed_23": (23, 80), "seed_42": (42, 80), "seed_77": (77, 100)}

HANDWRITTEN = {
    # master's BH order: LIFO per batch, self-reschedule runs in the next pass, idle BHs,
    # delete-self, raising BHs (first exception raised, the rest of the iteration still runs)
    "bh_semantics": [
        ["bh_new", 0, "plain", 0], ["bh_new", 1, "resched", 2], ["bh_new", 2, "raise", 0],
        ["bh_new", 3, "delete_self", 0], ["bh_new", 4, "resched_idle", 1],
        ["bh", 0, "schedule"], ["bh", 1, "schedule"], ["bh", 2, "schedule"],
        ["bh", 3, "schedule"], ["bh", 4, "schedule_idle"], ["timeout"], ["poll"],
        ["timeout"], ["poll"], ["bh", 3, "schedule"], ["bh", 0, "schedule"],
        ["bh", 0, "cancel"], ["poll"], ["oneshot", "raise"], ["oneshot", "plain"],
        ["bh_new", 2, "base_raise", 0], ["bh", 2, "schedule"], ["poll"], ["poll"],
        ["bh_new", 0, "nested", 0], ["bh_new", 1, "plain", 0], ["bh", 1, "schedule"],
        ["bh", 0, "schedule"], ["poll"], ["timeout"],
    ],
    # manual VIRTUAL clock: mod / anticipate / delete, re-arming, raising and nested timers
    "timer_semantics": [
        ["timer_new", 0, 1, "rearm", 2], ["timer_new", 1, 1000, "raise", 0],
        ["timer_new", 2, 1, "nested", 0], ["timer_new", 3, 1, "base_raise", 0],
        ["timer", 0, "mod_ns", 100], ["timer", 1, "mod", 250], ["timer", 2, "mod_ns", 0],
        ["timer", 0, "anticipate_ns", 400], ["timer", 0, "anticipate_ns", 50],
        ["timeout"], ["poll"], ["advance", 100], ["advance", 200], ["timer", 3, "mod_ns", 10],
        ["advance", 500], ["timer", 1, "delete", 0], ["timer", 1, "expired", 0],
        ["timer", 2, "mod_ns", -100], ["poll"], ["timeout"],
    ],
    # fd handlers: drain / no drain / remove / replace / write handler / nested / raise
    "fd_semantics": [
        ["fd_new", 0, "drain", 0], ["fd_new", 1, "nodrain", 1], ["fd_new", 2, "remove_self", 0],
        ["fd_new", 3, "replace_self", 0], ["fd_new", 4, "write", 1],
        ["fd_send", 0, 3], ["fd_send", 1, 5], ["fd_send", 2, 7], ["fd_send", 3, 11],
        ["poll"], ["poll"], ["poll"], ["fd_send", 2, 1], ["fd_send", 3, 2], ["poll"],
        ["fd_new", 0, "raise", 0], ["fd_new", 1, "nested", 0], ["fd_send", 0, 1],
        ["fd_send", 1, 1], ["poll"], ["poll"], ["fd_remove", 4], ["poll"], ["timeout"],
    ],
}


def main() -> int:
    fallback = importlib.import_module("qloop._fallback")
    core = importlib.import_module("qloop._core")
    programs = {name: random_program(random.Random(seed), n) for name, (seed, n) in SEEDED.items()}
    programs.update(HANDWRITTEN)
    status = 0
    for name, program in programs.items():
        trace = run_program(fallback, program)
        if run_program(core, program) != trace:
            print(f"{name}: the implementations disagree; not written", file=sys.stderr)
            status = 1
            continue
        path = HERE / f"{name}.json"
        with open(path, "w") as f:
            f.write('{"program": [\n')
            f.write(",\n".join("  " + json.dumps(op) for op in program))
            f.write('\n],\n"trace": [\n')
            f.write(",\n".join("  " + json.dumps(entry) for entry in trace))
            f.write("\n]}\n")
        print(f"{path.relative_to(HERE.parent.parent)}: {len(program)} ops, {len(trace)} entries")
    return status


if __name__ == "__main__":
    sys.exit(main())
