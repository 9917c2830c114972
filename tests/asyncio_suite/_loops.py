"""The event loops the asyncio suite runs on ("arms"), by id.

``qloop-core`` and ``qloop-fallback`` are qloop's loop on each implementation: the modules
``qloop._core`` and ``qloop._fallback`` each export ``EventLoop``, ``new_event_loop`` and
``EventLoopPolicy``.  ``asyncio`` (the default loop), ``uvloop`` and ``rloop`` are stand-ins
that validate the harness itself; CI never runs them.  ``QLOOP_SUITE_LOOP`` (comma-separated
ids) chooses the arms; by default both qloop arms run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import warnings
from dataclasses import dataclass
from types import ModuleType

import pytest

QLOOP_ARMS = ("qloop-core", "qloop-fallback")
ENV_VAR = "QLOOP_SUITE_LOOP"

# arm id -> module exporting new_event_loop() and EventLoopPolicy (None: asyncio's default)
_MODULES = {
    "qloop-core": "qloop._core",
    "qloop-fallback": "qloop._fallback",
    "asyncio": None,
    "uvloop": "uvloop",
    "rloop": "rloop",
}


@dataclass(frozen=True)
class LoopArm:
    """One event-loop implementation under test."""

    id: str
    module_name: str | None

    @property
    def is_qloop(self) -> bool:
        return self.id in QLOOP_ARMS

    @property
    def marks(self) -> list[pytest.MarkDecorator]:
        return [pytest.mark.c_extension] if self.id == "qloop-core" else []

    def module(self) -> ModuleType:
        if self.module_name is None:
            return asyncio
        # No try/except: an ImportError of qloop._core must fail the tests, not skip them.
        with warnings.catch_warnings():
            # importing qloop may warn that it fell back; the suite imports both arms
            warnings.simplefilter("ignore", RuntimeWarning)
            return importlib.import_module(self.module_name)

    def missing_reason(self) -> str | None:
        """Why this arm cannot run yet; only "qloop's loop does not exist" is a reason."""
        if self.is_qloop and not hasattr(self.module(), "EventLoop"):
            return (
                f"{self.module_name}.EventLoop does not exist yet: qloop's asyncio event loop "
                "is not on this branch"
            )
        return None

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        if self.module_name is None:
            # the platform default (_UnixSelectorEventLoop), as asyncio.new_event_loop() makes
            return asyncio.DefaultEventLoopPolicy().new_event_loop()
        loop: asyncio.AbstractEventLoop = self.module().new_event_loop()
        return loop

    def new_policy(self) -> asyncio.AbstractEventLoopPolicy:
        if self.module_name is None:
            return asyncio.DefaultEventLoopPolicy()
        policy: asyncio.AbstractEventLoopPolicy = self.module().EventLoopPolicy()
        return policy


ARMS = {name: LoopArm(name, module) for name, module in _MODULES.items()}


def selected_arms() -> tuple[LoopArm, ...]:
    """The arms named by ``QLOOP_SUITE_LOOP`` (default: both qloop arms)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    names = (
        [n.strip() for n in raw.split(",") if n.strip()] if raw else list(QLOOP_ARMS)
    )
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ValueError(
            f"{ENV_VAR}: unknown loop(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}"
        )
    return tuple(ARMS[n] for n in names)
