"""Helper program for tests/test_signals_child.py: run qloop's main_loop() until a signal.

Implementation: ``--impl core`` / ``--impl fallback`` imports ``qloop._core`` /
``qloop._fallback`` directly; without the flag ``import qloop`` picks it (so the
``QLOOP_NO_EXTENSIONS`` environment variable decides).

Protocol on stdout (line-buffered, flushed):
  ``impl <core|fallback> <path of the qloop package>``  first;
  ``ready``  once main_loop() is running (its SIGINT/SIGTERM/SIGHUP handlers are installed);
  ``shutdown-notifier <CAUSE NAME>``  from a shutdown notifier.
The exit status is main_loop()'s return value.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("core", "fallback"), default=None)
    parser.add_argument("--reset-signals", action="store_true",
                        help="SIGINT/SIGTERM/SIGHUP to Python's start-up handlers first")
    parser.add_argument("--ignore", choices=("SIGINT", "SIGTERM", "SIGHUP"), default=None,
                        help="then set this one to SIG_IGN (as nohup does for SIGHUP)")
    args = parser.parse_args()
    if args.reset_signals:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if args.ignore is not None:
        signal.signal(getattr(signal, args.ignore), signal.SIG_IGN)

    if args.impl is None:
        import qloop as mod

        impl = mod.IMPLEMENTATION
    else:
        mod = importlib.import_module("qloop._core" if args.impl == "core" else "qloop._fallback")
        impl = args.impl
    pkg = os.path.dirname(os.path.abspath(sys.modules["qloop"].__file__))
    print(f"impl {impl} {pkg}", flush=True)

    mod.init_main_loop()

    def on_shutdown(cause) -> None:
        print(f"shutdown-notifier {mod.ShutdownCause(cause).name}", flush=True)

    mod.shutdown_notifiers.add(on_shutdown)

    # "ready" is printed from a BH, i.e. from inside main_loop(), after it has installed its
    # termination-signal handlers: a SIGTERM sent on "ready" cannot hit the default action.
    mod.bh_new(lambda: print("ready", flush=True)).schedule()
    sys.exit(mod.main_loop())


if __name__ == "__main__":
    main()
