"""CPython's test_waitfor: an IsolatedAsyncioTestCase (its loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module, optional_classes

cpython = import_cpython_module("test_waitfor")

for_each_loop(globals(), cpython.AsyncioWaitForTest,
              *optional_classes(cpython, "WaitForShieldTests"))
