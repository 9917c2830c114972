"""CPython's test_buffered_proto: ``functional.FunctionalTestCaseMixin`` makes its loop with
``new_loop()``, which returns the loop under test."""

from ._harness import NewLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_buffered_proto")

for_each_loop(globals(), cpython.BufferedProtocolSelectorTests, hooks=(NewLoop,))
