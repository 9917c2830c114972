"""CPython's test_taskgroups: an IsolatedAsyncioTestCase (its loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_taskgroups")

for_each_loop(globals(), cpython.TestTaskGroup)
