"""CPython's test_timeouts: an IsolatedAsyncioTestCase (its loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_timeouts")

for_each_loop(globals(), cpython.TimeoutTests)
