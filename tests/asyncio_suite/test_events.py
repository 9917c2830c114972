"""CPython's test_events.

The loop tests are the mixins ``EventLoopTestsMixin`` + ``SubprocessTestsMixin`` with
``create_event_loop()`` returning the loop under test (CPython runs them once per selector,
with asyncio's child watcher attached; qloop reaps its children itself).  The other classes
take their loop from the policy.
"""

import unittest

from ._harness import CreateEventLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_events")
test_utils = import_cpython_module("utils")


class EventLoopTests(
    cpython.EventLoopTestsMixin, cpython.SubprocessTestsMixin, test_utils.TestCase
):
    __test__ = False
    replaces = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")


for_each_loop(globals(), EventLoopTests, hooks=(CreateEventLoop,))

if hasattr(cpython, "UnixPipeObjectSupportTests"):  # Python 3.13+

    class UnixPipeObjectSupportTests(cpython.UnixPipeObjectSupportTests):  # type: ignore[misc]
        """connect_read_pipe/connect_write_pipe with pipe objects; CPython's setUp makes an
        asyncio ``SelectorEventLoop``, this one the loop under test."""

        __test__ = False

        def setUp(self) -> None:
            unittest.TestCase.setUp(self)
            self.loop = self.loop_arm.new_event_loop()  # type: ignore[attr-defined]
            self.addCleanup(self.loop.close)

    for_each_loop(globals(), UnixPipeObjectSupportTests)
for_each_loop(
    globals(),
    cpython.HandleTests,
    cpython.TestPyGetEventLoop,
    cpython.TestCGetEventLoop,
    cpython.TestServer,
)
