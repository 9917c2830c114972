"""How CPython's asyncio tests are pointed at the loop under test.

Each ``test_*.py`` here takes test classes of one ``test.test_asyncio`` module and calls
:func:`for_each_loop`, which makes one subclass per selected loop arm, named
``<Class>[<arm>]`` (e.g. ``StreamTests[qloop-core]``), with :class:`LoopUnderTest` first in
its bases and the hooks the module needs before the CPython class:

* every test runs with the arm's ``EventLoopPolicy`` installed (:class:`LoopUnderTest`), so
  ``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner()`` and
  ``unittest.IsolatedAsyncioTestCase`` create the loop under test;
* :class:`CreateEventLoop` answers ``create_event_loop()``, the factory of the loop test mixins
  (test_events, test_sock_lowlevel, test_sendfile);
* :class:`NewLoop` answers ``new_loop()``, the factory of ``functional.FunctionalTestCaseMixin``
  (test_server, test_buffered_proto, test_sslproto);
* :class:`NewTestLoop` answers ``new_test_loop()`` without a time generator (test_futures,
  test_tasks); with a generator the test needs ``TestLoop``'s virtual clock and keeps it.

Test ids in ``exclusions.txt`` and in the harness are ``<module>.<Class>.<test>`` with the
CPython class name (``test_streams.StreamTests.test_readline``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import sys
import unittest
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ._loops import LoopArm, selected_arms

SUITE_ARMS = selected_arms()
# CPython module -> the names of its classes the harness runs (or replaces), for the self-check
ADAPTED: dict[str, set[str]] = {}
EXCLUSIONS_FILE = Path(__file__).with_name("exclusions.txt")


# asyncio's policy getter and setter without the DeprecationWarning the public ones give from
# Python 3.14 (one per test otherwise): the ones asyncio itself calls, where they exist
_get_policy: Any = getattr(asyncio.events, "_get_event_loop_policy",
                           asyncio.get_event_loop_policy)
_set_policy: Any = getattr(asyncio.events, "_set_event_loop_policy",
                           asyncio.set_event_loop_policy)


class LoopUnderTest:
    """First base of every generated class: the arm's policy is asyncio's while a test runs.

    ``run()`` (not ``setUp()``) installs it, because ``IsolatedAsyncioTestCase`` creates its
    loop before ``setUp()``.  The previous policy is restored afterwards, whatever the test
    did to the policy meanwhile.
    """

    loop_arm: LoopArm
    suite_id: str  # "<module>.<CPython class>"

    def run(self, result: Any = None) -> Any:
        previous = _get_policy()
        _set_policy(self.loop_arm.new_policy())
        try:
            return super().run(result)  # type: ignore[misc]
        finally:
            _set_policy(previous)

    @staticmethod
    def close_loop(loop: asyncio.AbstractEventLoop) -> None:
        """``test_utils.TestCase.close_loop`` for any loop.

        The original reads ``BaseEventLoop._default_executor`` (to join the executor's threads
        only when there is one): loops that have that attribute keep it; others get the
        public equivalent, ``shutdown_default_executor()`` then ``close()``.
        """
        if hasattr(loop, "_default_executor"):
            import_cpython_module("utils").TestCase.close_loop(loop)
            return
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


class CreateEventLoop:
    """``create_event_loop()``: the loop factory of the CPython loop test mixins."""

    loop_arm: LoopArm

    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop_arm.new_event_loop()


class NewLoop:
    """``new_loop()``: the loop factory of ``functional.FunctionalTestCaseMixin``."""

    loop_arm: LoopArm

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop_arm.new_event_loop()


class LoopFactory:
    """``IsolatedAsyncioTestCase.loop_factory`` (Python 3.13+; a CPython class may name
    ``asyncio.EventLoop``): the loop under test."""

    loop_arm: LoopArm

    def loop_factory(self) -> asyncio.AbstractEventLoop:
        return self.loop_arm.new_event_loop()


class EagerLoopFactory:
    """``loop_factory``: the loop under test with ``asyncio.eager_task_factory``."""

    loop_arm: LoopArm

    def loop_factory(self) -> asyncio.AbstractEventLoop:
        loop = self.loop_arm.new_event_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop


class NewTestLoop:
    """``new_test_loop()`` without a time generator returns the loop under test.

    ``test_utils.TestLoop`` is a ``BaseEventLoop`` whose clock a generator drives; tests that
    pass no generator never let its time move, so they run on any loop.
    """

    loop_arm: LoopArm

    def new_test_loop(self, gen: Any = None) -> asyncio.AbstractEventLoop:
        if gen is not None:
            return super().new_test_loop(gen)  # type: ignore[misc, no-any-return]
        loop = self.loop_arm.new_event_loop()
        self.set_event_loop(loop)  # type: ignore[attr-defined]
        return loop


def import_cpython_module(name: str) -> ModuleType:
    """``test.test_asyncio.<name>``; the tests skip where the interpreter lacks it.

    Not every Python installation ships its test suite (Debian: ``libpython3.X-testsuite``);
    CI checks that it is there before running the suite.  The class lists here follow the
    suite of Python 3.11+ (3.10's lacks test_taskgroups, test_timeouts, asyncio.Runner...).
    """
    return pytest.importorskip(
        f"test.test_asyncio.{name}",
        reason=f"this Python has no test.test_asyncio.{name} (CPython's test suite)",
    )


def cpython_module_name(namespace_name: str) -> str:
    """``asyncio_suite.test_streams`` -> ``test_streams``."""
    return namespace_name.rpartition(".")[2]


def optional_classes(module: ModuleType, *names: str) -> list[type]:
    """The classes of ``module`` among ``names`` that this Python's test suite has (newer
    Pythons add test classes)."""
    return [getattr(module, name) for name in names if hasattr(module, name)]


def for_each_loop(
    namespace: dict[str, Any], *templates: type, hooks: tuple[type, ...] = ()
) -> None:
    """Add ``<template>[<arm>]`` to ``namespace`` for every template and selected arm.

    The class is ``(LoopUnderTest, *hooks, template)``; a template is a CPython test class,
    or a harness class (``__test__ = False``) that combines CPython mixins.
    """
    module = cpython_module_name(namespace["__name__"])
    for template in templates:
        ADAPTED.setdefault(module, set()).add(template.__name__)
        ADAPTED[module].update(getattr(template, "replaces", ()))
        for arm in SUITE_ARMS:
            name = f"{template.__name__}[{arm.id}]"
            namespace[name] = type(
                name,
                (LoopUnderTest, *hooks, template),
                {
                    "__module__": namespace["__name__"],
                    "__qualname__": name,
                    "__test__": True,
                    "loop_arm": arm,
                    "suite_id": f"{module}.{template.__name__}",
                    "pytestmark": arm.marks,
                },
            )


# ---------------------------------------------------------------------------------------------
# The exclusion file


@dataclass(frozen=True)
class Exclusion:
    pattern: str  # "<module>.<Class>" (the whole class) or "<module>.<Class>.<test>", globs ok
    reason: str
    line: int
    # "python>=3.13", "python<3.14", "python>=3.12,<3.14" after the id: the Pythons the line
    # is for (None: all)
    pythons: str | None = None

    def applies(self, version: tuple[int, ...] | None = None) -> bool:
        """Whether the line is for ``version`` (default: the running Python)."""
        if self.pythons is None:
            return True
        here = tuple(version or sys.version_info[:2])[:2]
        return all(here >= wanted if op == ">=" else here < wanted
                   for op, wanted in _parse_pythons(self.pythons))

    def matches(self, test_id: str) -> bool:
        return fnmatch.fnmatchcase(test_id, self.pattern) or fnmatch.fnmatchcase(
            test_id, self.pattern + ".*"
        )


def _parse_pythons(spec: str) -> list[tuple[str, tuple[int, int]]]:
    """``python>=3.13`` -> [(">=", (3, 13))]; ``python>=3.12,<3.14`` -> both conditions."""
    conditions = []
    if spec.startswith("python"):
        for part in spec[len("python"):].split(","):
            op = ">=" if part.startswith(">=") else "<" if part.startswith("<") else ""
            major, dot, minor = part[len(op):].partition(".")
            if not (op and dot and major.isdigit() and minor.isdigit()):
                break
            conditions.append((op, (int(major), int(minor))))
        else:
            return conditions
    raise ValueError(f"{spec!r}: expected python>=X.Y, python<X.Y or python>=X.Y,<X.Y")


def load_exclusions(path: Path = EXCLUSIONS_FILE, *, every_python: bool = False
                    ) -> list[Exclusion]:
    """Parse ``exclusions.txt``: ``<test id> [python>=X.Y,<X.Y] <reason>`` per line (either
    bound may go);
    ``#`` starts a comment.  The lines for the running Python, or all with ``every_python``."""
    out = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition(" ")
        reason = reason.strip()
        pythons = None
        if reason.startswith(("python>", "python<", "python=")):
            pythons, _, reason = reason.partition(" ")
            try:
                _parse_pythons(pythons)
            except ValueError as exc:
                raise ValueError(f"{path.name}:{number}: {exc}") from None
            reason = reason.strip()
        if not reason:
            raise ValueError(f"{path.name}:{number}: {pattern!r} has no reason")
        exclusion = Exclusion(pattern, reason, number, pythons)
        if every_python or exclusion.applies():
            out.append(exclusion)
    return out


def exclusion_for(test_id: str, exclusions: list[Exclusion]) -> Exclusion | None:
    return next((e for e in exclusions if e.matches(test_id)), None)


def unittest_names(cls: type) -> list[str]:
    """The test methods unittest would run in ``cls``."""
    return unittest.TestLoader().getTestCaseNames(cls)  # type: ignore[arg-type]


def cpython_test_classes(module: Any) -> dict[str, type]:
    """The ``unittest.TestCase`` classes a ``test.test_asyncio`` module defines."""
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, unittest.TestCase)
        and obj.__module__ == module.__name__
    }
