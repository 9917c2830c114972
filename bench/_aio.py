"""Implementations of the asyncio event-loop workloads (``bench/test_aio_*.py``).

These workloads compare asyncio event loops through the asyncio API only, on five
implementations (the pytest parameter ``loop_impl``):

* ``qloop-core``      -- ``qloop._core.new_event_loop()`` (qloop's loop on the compiled core);
* ``qloop-fallback``  -- ``qloop._fallback.new_event_loop()`` (the same on the pure-Python twin);
* ``asyncio``         -- the stdlib's default loop (``SelectorEventLoop``, epoll);
* ``uvloop``          -- ``uvloop.new_event_loop()``;
* ``rloop``           -- ``rloop.new_event_loop()`` (written in Rust; the fastest peer).
"""

from __future__ import annotations

import importlib
import warnings

from bench._common import Impl, _default_asyncio_loop

AIO_IMPLS = ("qloop-core", "qloop-fallback", "asyncio", "uvloop", "rloop")
AIO_PEERS = ("asyncio", "uvloop", "rloop")
_QLOOP_MODULES = {"qloop-core": "qloop._core", "qloop-fallback": "qloop._fallback"}

def load_loop_impl(name: str) -> Impl:
    """The Impl whose ``open()`` returns a new event loop of ``name``.

    ImportError (with the reason) when it is not available.
    """
    if name in _QLOOP_MODULES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            module = importlib.import_module(_QLOOP_MODULES[name])
        return Impl(name, loop_factory=module.new_event_loop)
    if name == "asyncio":
        return Impl(name, loop_factory=_default_asyncio_loop)
    if name == "uvloop":
        import uvloop

        return Impl(name, loop_factory=uvloop.new_event_loop)
    if name == "rloop":
        import rloop

        return Impl(name, loop_factory=rloop.new_event_loop)
    raise ValueError(f"unknown implementation {name!r}; expected one of {AIO_IMPLS}")
