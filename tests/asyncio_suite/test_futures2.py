"""CPython's test_futures2: IsolatedAsyncioTestCase classes (their loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_futures2")

for_each_loop(
    globals(),
    cpython.CFutureTests,
    cpython.PyFutureTests,
    cpython.FutureReprTests,
)
