"""The qloop demo: one AioContext running an fd handler, a bottom half and a timer.

Run it with ``qloop-demo`` (or ``python -m qloop`` from outside a source checkout).
"""

from __future__ import annotations

import socket
import sys

import qloop


def main() -> int:
    print(f"qloop {qloop.__version__}: the {qloop.IMPLEMENTATION} implementation is live "
          f"({'compiled Cython' if qloop.USE_EXTENSIONS else 'pure Python'})")
    events: list[str] = []
    with qloop.AioContext() as ctx:
        reader, writer = socket.socketpair()
        reader.setblocking(False)

        def on_readable() -> None:
            data = reader.recv(1024)
            events.append(f"fd handler read {data!r}")

        ctx.set_fd_handler(reader, on_readable)

        start = qloop.clock_get_ns(qloop.ClockType.REALTIME)

        def on_timer() -> None:
            elapsed_ms = (qloop.clock_get_ns(qloop.ClockType.REALTIME) - start) / 1e6
            events.append(f"timer fired after {elapsed_ms:.1f} ms")
            writer.send(b"hello from the timer")

        timer = ctx.timer_new_ns(qloop.ClockType.REALTIME, on_timer)
        timer.mod_ns(start + 20 * qloop.SCALE_MS)

        def on_bh() -> None:
            events.append("bottom half ran")

        ctx.bh_new(on_bh, name="demo-bh").schedule()

        print(f"fd monitor: {ctx.fdmon}; first timeout: {ctx.compute_timeout()} ns")
        iterations = 0
        while len(events) < 3:
            progress = ctx.poll(True)
            iterations += 1
            print(f"  poll #{iterations}: progress={progress}")
        for event in events:
            print(f"  - {event}")
        ctx.set_fd_handler(reader, None)
        reader.close()
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
