"""CPython's test_sock_lowlevel: ``BaseSockTestsMixin`` with ``create_event_loop()`` returning
the loop under test (CPython runs it once per selector)."""

from ._harness import CreateEventLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_sock_lowlevel")
test_utils = import_cpython_module("utils")


class SockTests(cpython.BaseSockTestsMixin, test_utils.TestCase):
    __test__ = False
    replaces = ("EPollEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")


for_each_loop(globals(), SockTests, hooks=(CreateEventLoop,))
