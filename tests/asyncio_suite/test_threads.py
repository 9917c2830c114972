"""CPython's test_threads: an IsolatedAsyncioTestCase (its loop comes from the policy): to_thread over run_in_executor."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_threads")

for_each_loop(globals(), cpython.ToThreadTests)
