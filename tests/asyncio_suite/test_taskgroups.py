"""CPython's test_taskgroups: IsolatedAsyncioTestCase classes; from Python 3.13 they name
their loop (``loop_factory``: asyncio.EventLoop, with the eager task factory for
TestEagerTaskTaskGroup), replaced by the loop under test."""

from ._harness import (
    EagerLoopFactory,
    LoopFactory,
    for_each_loop,
    import_cpython_module,
    optional_classes,
)

cpython = import_cpython_module("test_taskgroups")

for_each_loop(globals(), cpython.TestTaskGroup, hooks=(LoopFactory,))
for_each_loop(globals(), *optional_classes(cpython, "TestEagerTaskTaskGroup"),
              hooks=(EagerLoopFactory,))
