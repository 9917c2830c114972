"""CPython's test_futures: ``new_test_loop()`` without a time generator returns the loop under
test (in CPython, a ``TestLoop``)."""

from ._harness import NewTestLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_futures")

for_each_loop(
    globals(),
    cpython.DuckTests,
    cpython.CFutureTests,
    cpython.CSubFutureTests,
    cpython.PyFutureTests,
    cpython.CFutureDoneCallbackTests,
    cpython.CSubFutureDoneCallbackTests,
    cpython.PyFutureDoneCallbackTests,
    cpython.PyFutureInheritanceTests,
    cpython.CFutureInheritanceTests,
    hooks=(NewTestLoop,),
)
