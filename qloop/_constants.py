"""Constants and enums shared by both implementations (plain Python, no hot path)."""

from __future__ import annotations

import select
from enum import IntEnum

__all__ = [
    "FDMON_NAMES",
    "SCALE_MS",
    "SCALE_NS",
    "SCALE_US",
    "TIMER_ATTR_ALL",
    "TIMER_ATTR_EXTERNAL",
    "ClockType",
]


class ClockType(IntEnum):
    """QEMU's clock types (``QEMUClockType``)."""

    REALTIME = 0
    VIRTUAL = 1
    HOST = 2
    VIRTUAL_RT = 3


SCALE_NS = 1
SCALE_US = 1_000
SCALE_MS = 1_000_000

TIMER_ATTR_EXTERNAL = 1 << 0
TIMER_ATTR_ALL = 0xFFFFFFFF

FDMON_NAMES = ("auto", "poll", "epoll", "io_uring")

# fd count at which fdmon="auto" moves from ppoll to epoll: the context's own notifier and one
# more fd (docs/decisions.md, "fd monitor policy", has the measurements behind it).
AUTO_EPOLL_FDS = 2
# events taken from one epoll_wait call; the rest are seen next time (level-triggered).
EPOLL_MAX_EVENTS = 128
# blocking-timeout cap while only idle BHs are pending.
IDLE_BH_TIMEOUT_NS = 10_000_000
# run one-shot BHs a context keeps for reuse by bh_schedule_oneshot.
ONESHOT_FREE_MAX = 1024
# first value of a handler's adaptive poll time once it starts to grow.
POLL_NS_INITIAL = 4_000
# the poll(2) events that make a handler's io_read / io_write due (an error or hang-up wakes
# the reader, an error the writer); the fallback's fd handlers and GSource adapter test them.
READ_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR
WRITE_EVENTS = select.POLLOUT | select.POLLERR
