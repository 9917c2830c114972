"""The fallback's bottom halves (docs/bottom-halves.md).  Twin of ``qloop/_cy/bh.pxi``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import AioContext


Callback = Callable[[], Any]


# --------------------------------------------------------------------------------------------
# Bottom halves (docs/bottom-halves.md)

_BH_PENDING = 1
_BH_SCHEDULED = 2
_BH_DELETED = 4
_BH_ONESHOT = 8
_BH_IDLE = 16
_BH_CANCEL = 32  # an op, not a flag: clear SCHEDULED


class BH:
    """A bottom half, created by ``AioContext.bh_new``.  ``callback()`` takes no arguments."""

    __slots__ = ("__weakref__", "_cb", "_ctx", "_deleted", "_flags", "_name", "_queued")
    _ctx: AioContext
    _cb: Callback | None
    _name: str
    _flags: int
    _deleted: bool
    _queued: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("BH objects are created by AioContext.bh_new()")

    @classmethod
    def _new(cls, ctx: AioContext, cb: Callback, name: str | None) -> BH:
        self = object.__new__(cls)
        self._ctx = ctx
        self._cb = cb
        self._name = name if name is not None else getattr(cb, "__qualname__", repr(cb))
        self._flags = 0
        self._deleted = False
        self._queued = False
        return self

    def _enqueue(self, op: Any) -> None:
        if self._deleted:
            raise RuntimeError(f"BH {self._name!r} was deleted")
        ctx = self._ctx
        if ctx._closed:
            raise RuntimeError("the BH's AioContext is closed")
        self._queued = False  # ops apply in order: a schedule after this one must queue
        ctx._bh_ops.append(op)
        ctx._notify()

    def schedule(self) -> None:
        """Run the callback in the next ``poll()``; idempotent; safe from any thread."""
        if self._deleted:
            raise RuntimeError(f"BH {self._name!r} was deleted")
        ctx = self._ctx
        if ctx._closed:
            raise RuntimeError("the BH's AioContext is closed")
        if not self._queued:
            # set before the append: the owner clears it when it pops the op, and then
            # applies it, so a schedule() that sees it set is covered by the queued op
            self._queued = True
            ctx._bh_ops.append(self)
        ctx._notified = True  # ctx._notify(), inline on this hot path
        if ctx._notify_me:
            ctx._notify()

    def schedule_idle(self) -> None:
        """Schedule without counting as progress; a blocking poll waits at most 10 ms for it."""
        self._enqueue((self, _BH_SCHEDULED | _BH_IDLE))

    def cancel(self) -> None:
        """Unschedule; the BH stays usable.  Unlike scheduling, it does not notify."""
        if self._deleted:
            raise RuntimeError(f"BH {self._name!r} was deleted")
        if self._ctx._closed:
            raise RuntimeError("the BH's AioContext is closed")
        self._queued = False
        self._ctx._bh_ops.append((self, _BH_CANCEL))

    def delete(self) -> None:
        """Unschedule and free; later use raises RuntimeError.  Allowed from its own callback."""
        self._enqueue((self, _BH_DELETED))
        self._deleted = True

    @property
    def deleted(self) -> bool:
        """Whether ``delete()`` was called (or the one-shot ran, or its context closed)."""
        return self._deleted

    @property
    def name(self) -> str:
        """The name given to ``bh_new``, else the callback's qualified name."""
        return self._name

    def __repr__(self) -> str:
        return f"<BH {self._name!r}{' deleted' if self._deleted else ''}>"
