"""qloop's asyncio event loop: networking (shared by both implementations).

``MIXINS`` are the classes ``qloop._eventloop.build_implementation`` adds to ``EventLoop``.
"""

from __future__ import annotations

from typing import Any, Tuple

MIXINS: Tuple[Any, ...] = ()
