"""CPython's test_sendfile: ``SendfileTestsBase`` with ``create_event_loop()`` returning the
loop under test (CPython runs it once per selector)."""

from ._harness import CreateEventLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_sendfile")
test_utils = import_cpython_module("utils")


class SendfileTests(cpython.SendfileTestsBase, test_utils.TestCase):
    __test__ = False
    replaces = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")


for_each_loop(globals(), SendfileTests, hooks=(CreateEventLoop,))
