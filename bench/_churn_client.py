"""Load client of the ``fdmon_churn`` workload: short TCP connections, one exchange each.

    python -m bench._churn_client PORT N THREADS

Waits for a line on stdin (the round starts), then THREADS threads open N connections in all
to 127.0.0.1:PORT, one after another per thread: connect, send 64 bytes, read the 64-byte echo,
close.  Prints ``DONE <n>`` when all have completed.
"""

from __future__ import annotations

import socket
import sys
import threading

MSG = b"c" * 64


def _worker(port: int, count: int, done: list[int]) -> None:
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(MSG)
            got = b""
            while len(got) < len(MSG):
                chunk = s.recv(len(MSG) - len(got))
                if not chunk:
                    raise ConnectionError("the server closed before echoing")
                got += chunk
        done.append(1)


def main() -> None:
    port, n, nthreads = (int(a) for a in sys.argv[1:4])
    sys.stdin.readline()
    done: list[int] = []
    per = [n // nthreads + (1 if i < n % nthreads else 0) for i in range(nthreads)]
    threads = [threading.Thread(target=_worker, args=(port, c, done)) for c in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"DONE {len(done)}", flush=True)


if __name__ == "__main__":
    main()
