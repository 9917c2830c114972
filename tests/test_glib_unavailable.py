"""Without PyGObject: ``import qloop`` and the main loop work, ``ctx.g_source()`` raises
``GLibUnavailable`` (an ImportError) whose message says what to install, naming both extras
(``qloop[glib]`` for GLib 2.80 and newer, ``qloop[glib-legacy]`` before that).

Unlike test_glib.py this module does not need ``gi``: the child interpreter hides it, so
the test runs whether or not PyGObject is installed here.
"""

from __future__ import annotations

from _mainloop_support import run_python_json

_NO_GI_CODE = r"""
import importlib, json, sys
sys.modules["gi"] = None  # PyGObject is not importable, whether installed or not
import qloop
mod = importlib.import_module(MODNAME)
out = {"impl": qloop.IMPLEMENTATION, "same_class": qloop.GLibUnavailable is mod.GLibUnavailable,
       "subclass": issubclass(mod.GLibUnavailable, ImportError)}
ctx = mod.AioContext()
try:
    ctx.g_source()
except mod.GLibUnavailable as exc:
    out["raised"] = True
    out["is_import_error"] = isinstance(exc, ImportError)
    out["message"] = str(exc)
else:
    out["raised"] = False
# the context and the main loop still work
ran = []
ctx.bh_schedule_oneshot(lambda: ran.append("bh"))
ctx.poll(False)
mod.init_main_loop()
mod.bh_new(lambda: ran.append("main")).schedule()
for _ in range(3):
    mod.main_loop_wait(True)
out["ran"] = ran
ctx.close()
print(json.dumps(out))
"""



def test_g_source_without_pygobject_raises_glib_unavailable(qloop_module):
    mod = qloop_module
    assert issubclass(mod.GLibUnavailable, ImportError)
    out = run_python_json(mod, f"MODNAME = {mod.__name__!r}\n" + _NO_GI_CODE)
    assert out["impl"] == ("fallback" if mod.__name__ == "qloop._fallback" else "core")
    assert out["same_class"] and out["subclass"]
    assert out["raised"], "g_source() did not raise without PyGObject"
    assert out["is_import_error"]
    msg = out["message"]
    assert "PyGObject" in msg, msg
    # both ways to install it, and where each one applies
    assert "pip install 'qloop[glib]'" in msg and "2.80" in msg, msg
    assert "pip install 'qloop[glib-legacy]'" in msg and "< 3.51" in msg, msg
    assert out["ran"] == ["bh", "main"]
