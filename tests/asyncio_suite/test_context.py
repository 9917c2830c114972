"""CPython's test_context: ``asyncio.run()`` (its loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_context")

for_each_loop(globals(), cpython.DecimalContextTest)
