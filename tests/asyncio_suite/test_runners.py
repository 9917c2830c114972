"""CPython's test_runners: ``asyncio.run()`` and ``asyncio.Runner`` on the loop under test.

``BaseTest`` installs a policy whose loops come from ``new_loop()``: in CPython a mocked
``BaseEventLoop`` that records whether ``shutdown_asyncgens()`` ran (``tearDown`` checks it).
:class:`RunnerLoop` returns the loop under test with the same record.
"""

from __future__ import annotations

import asyncio

from ._harness import for_each_loop, import_cpython_module
from ._loops import LoopArm

cpython = import_cpython_module("test_runners")


class RunnerLoop:
    loop_arm: LoopArm

    def new_loop(self) -> asyncio.AbstractEventLoop:
        loop = self.loop_arm.new_event_loop()
        loop.shutdown_ag_run = False  # type: ignore[attr-defined]
        shutdown_asyncgens = loop.shutdown_asyncgens

        async def recording_shutdown_asyncgens() -> None:
            loop.shutdown_ag_run = True  # type: ignore[attr-defined]
            await shutdown_asyncgens()

        loop.shutdown_asyncgens = recording_shutdown_asyncgens  # type: ignore[method-assign]
        return loop


for_each_loop(globals(), cpython.RunTests, cpython.RunnerTests, hooks=(RunnerLoop,))
