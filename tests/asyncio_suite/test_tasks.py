"""CPython's test_tasks: ``new_test_loop()`` without a time generator returns the loop under
test (in CPython, a ``TestLoop``); the tests that make their own loop take it from the policy.
Tests that pass a time generator keep ``TestLoop``: they need its virtual clock."""

from ._harness import NewTestLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_tasks")

for_each_loop(
    globals(),
    cpython.CTask_CFuture_Tests,
    cpython.CTask_CFuture_SubclassTests,
    cpython.CTaskSubclass_PyFuture_Tests,
    cpython.PyTask_CFutureSubclass_Tests,
    cpython.CTask_PyFuture_Tests,
    cpython.PyTask_CFuture_Tests,
    cpython.PyTask_PyFuture_Tests,
    cpython.PyTask_PyFuture_SubclassTests,
    cpython.CTask_Future_Tests,
    cpython.PyIntrospectionTests,
    cpython.CIntrospectionTests,
    cpython.PyCurrentLoopTests,
    cpython.CCurrentLoopTests,
    cpython.GenericTaskTests,
    cpython.FutureGatherTests,
    cpython.CoroutineGatherTests,
    cpython.RunCoroutineThreadsafeTests,
    cpython.SleepTests,
    hooks=(NewTestLoop,),
)
