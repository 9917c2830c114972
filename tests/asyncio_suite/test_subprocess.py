"""CPython's test_subprocess: ``SubprocessMixin`` on the loop under test.

CPython runs the mixin once per asyncio child watcher, each attached to a fresh loop from the
policy.  A loop that reaps its own children (qloop, uvloop, rloop) needs no watcher, so the
harness class makes the loop alone; on the asyncio stand-in, the default policy supplies its
``ThreadedChildWatcher`` as usual.
"""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_subprocess")
test_utils = import_cpython_module("utils")


class SubprocessTests(cpython.SubprocessMixin, test_utils.TestCase):
    __test__ = False
    replaces = (
        "SubprocessThreadedWatcherTests",
        "SubprocessMultiLoopWatcherTests",
        "SubprocessSafeWatcherTests",
        "SubprocessFastWatcherTests",
        "SubprocessPidfdWatcherTests",
    )

    def setUp(self) -> None:
        super().setUp()
        self.loop = self.loop_arm.new_event_loop()  # type: ignore[attr-defined]
        self.set_event_loop(self.loop)


for_each_loop(globals(), SubprocessTests)
