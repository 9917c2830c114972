"""qloop: QEMU's main loop (AioContext, bottom halves, timers) for Python.

This is the one place that picks the implementation: the compiled ``qloop._core`` unless
``QLOOP_NO_EXTENSIONS`` is set (any non-empty value) or the interpreter is not CPython, in
which case the pure-Python ``qloop._fallback``.  ``QLOOP_REQUIRE_EXTENSIONS=1`` turns a
failed import of the compiled core into an error instead of a fallback.
"""

from __future__ import annotations

import os
import platform

from ._version import __version__

NO_EXTENSIONS: bool = bool(os.environ.get("QLOOP_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)
REQUIRE_EXTENSIONS: bool = bool(os.environ.get("QLOOP_REQUIRE_EXTENSIONS"))

# Type checkers read qloop/__init__.pyi (the whole public API, precisely typed), not this.
if NO_EXTENSIONS:
    from ._fallback import *
    from ._fallback import __all__ as _names

    USE_EXTENSIONS = False
else:
    try:
        from ._core import *
        from ._core import __all__ as _names

        USE_EXTENSIONS = True
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        import warnings

        warnings.warn(
            "qloop: the compiled core could not be imported; using the pure-Python fallback",
            RuntimeWarning,
            stacklevel=2,
        )
        from ._fallback import *
        from ._fallback import __all__ as _names

        USE_EXTENSIONS = False

IMPLEMENTATION: str = "core" if USE_EXTENSIONS else "fallback"

__all__ = ["IMPLEMENTATION", "USE_EXTENSIONS", "__version__"]
__all__.extend(_names)
