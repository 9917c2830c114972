"""CPython's test_queues: IsolatedAsyncioTestCase classes (their loop comes from the policy)."""

from ._harness import for_each_loop, import_cpython_module, optional_classes

cpython = import_cpython_module("test_queues")

for_each_loop(
    globals(),
    cpython.QueueBasicTests,
    cpython.QueueGetTests,
    cpython.QueuePutTests,
    cpython.LifoQueueTests,
    cpython.PriorityQueueTests,
    cpython.QueueJoinTests,
    cpython.LifoQueueJoinTests,
    cpython.PriorityQueueJoinTests,
    *optional_classes(cpython, "QueueShutdownTests", "LifoQueueShutdownTests",
                      "PriorityQueueShutdownTests"),
)
