"""CPython's own asyncio test suite (``test.test_asyncio``) run on qloop's event loop."""
