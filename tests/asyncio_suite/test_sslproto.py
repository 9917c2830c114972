"""CPython's test_sslproto: ``SslProtoHandshakeTests`` takes its loop from the policy; the
start_tls tests (``functional.FunctionalTestCaseMixin``) from ``new_loop()``."""

from ._harness import NewLoop, for_each_loop, import_cpython_module

cpython = import_cpython_module("test_sslproto")

for_each_loop(globals(), cpython.SslProtoHandshakeTests)
for_each_loop(globals(), cpython.SelectorStartTLSTests, hooks=(NewLoop,))
