"""CPython's test_events.

The loop tests are the mixins ``EventLoopTestsMixin`` + ``SubprocessTestsMixin`` with
``create_event_loop()`` returning the loop under test (CPython runs them once per selector,
with asyncio's child watcher attached; qloop reaps its children itself).  The other classes
take their loop from the policy.
"""

from ._harness import CreateEventLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_events")
test_utils = import_cpython_module("utils")


class EventLoopTests(
    cpython.EventLoopTestsMixin, cpython.SubprocessTestsMixin, test_utils.TestCase
):
    __test__ = False
    replaces = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")


for_each_loop(globals(), EventLoopTests, hooks=(CreateEventLoop,))
for_each_loop(
    globals(),
    cpython.HandleTests,
    cpython.TestPyGetEventLoop,
    cpython.TestCGetEventLoop,
    cpython.TestServer,
)
