"""CPython's test_locks: IsolatedAsyncioTestCase classes (their loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_locks")

for_each_loop(
    globals(),
    cpython.LockTests,
    cpython.EventTests,
    cpython.ConditionTests,
    cpython.SemaphoreTests,
    cpython.BarrierTests,
)
