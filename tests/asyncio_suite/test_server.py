"""CPython's test_server: ``functional.FunctionalTestCaseMixin`` makes its loop with
``new_loop()``, which returns the loop under test (CPython's class returns a
``SelectorEventLoop``)."""

from ._harness import NewLoop, for_each_loop, import_cpython_module, optional_classes

cpython = import_cpython_module("test_server")

for_each_loop(globals(), cpython.SelectorStartServerTests, hooks=(NewLoop,))
for_each_loop(globals(), *optional_classes(cpython, "TestServer2", "UnixServerCleanupTests"))
