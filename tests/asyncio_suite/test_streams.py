"""CPython's test_streams: StreamTests makes its loop with ``asyncio.new_event_loop()`` (the policy)."""

from ._harness import for_each_loop, import_cpython_module

cpython = import_cpython_module("test_streams")

for_each_loop(globals(), cpython.StreamTests)
