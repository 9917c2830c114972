"""Introspection: every public method and function has a signature that ``inspect.signature``
reads and a docstring, on both implementations, and the two implementations' signatures
match (the compiled core's methods carry them as CPython's builtins do); Cython's internals
stay out of ``help()``."""

from __future__ import annotations

import importlib
import inspect
import pydoc

import pytest

CONTEXT_MANAGER = ("__enter__", "__exit__")


def _public_classes(mod):
    out = {name: getattr(mod, name) for name in mod.__all__
           if inspect.isclass(getattr(mod, name)) and getattr(mod, name).__module__ == mod.__name__}
    out["bql"] = type(mod.bql)  # the big lock's class
    return out


def _public_functions(mod):
    return {name: getattr(mod, name) for name in mod.__all__
            if callable(getattr(mod, name)) and not inspect.isclass(getattr(mod, name))}


def _members(cls):
    for name in sorted(dir(cls)):
        if name.startswith("_") and name not in CONTEXT_MANAGER:
            continue
        yield name, inspect.getattr_static(cls, name)


def _shape(sig: inspect.Signature) -> list:
    """Parameters as (name, kind, default), with ``self`` as the positional-only it is in
    the core and an ordinary parameter in the fallback."""
    out = []
    for p in sig.parameters.values():
        kind = inspect.Parameter.POSITIONAL_ONLY if p.name == "self" else p.kind
        out.append((p.name, kind, p.default))
    return out


def _signature(obj):
    return inspect.signature(obj.__func__ if isinstance(obj, (staticmethod, classmethod))
                             else obj)


def test_every_public_method_has_signature_and_docstring(qloop_module):
    missing = []
    for cname, cls in _public_classes(qloop_module).items():
        inspect.signature(cls)  # construction signature
        assert cls.__doc__, cname
        for name, member in _members(cls):
            if isinstance(member, property) or type(member).__name__ == "getset_descriptor":
                if not member.__doc__:
                    missing.append(f"{cname}.{name} (property) has no docstring")
                continue
            if not callable(member) and not isinstance(member, (staticmethod, classmethod)):
                continue
            try:
                _signature(member)
            except (ValueError, TypeError) as exc:
                missing.append(f"{cname}.{name}: no signature ({exc})")
            if not inspect.getdoc(member):
                missing.append(f"{cname}.{name} has no docstring")
    for name, fn in _public_functions(qloop_module).items():
        try:
            inspect.signature(fn)
        except (ValueError, TypeError) as exc:
            missing.append(f"{name}: no signature ({exc})")
        if not inspect.getdoc(fn):
            missing.append(f"{name} has no docstring")
    assert missing == []


def test_signatures_match_between_implementations(pytestconfig):
    if pytestconfig.getoption("--no-c-extensions"):
        pytest.skip("the compiled core is not tested in this run")
    core = importlib.import_module("qloop._core")
    fallback = importlib.import_module("qloop._fallback")
    ccls, fcls = _public_classes(core), _public_classes(fallback)
    assert sorted(ccls) == sorted(fcls)
    diffs = []
    for cname in ccls:
        c, f = ccls[cname], fcls[cname]
        if _shape(inspect.signature(c)) != _shape(inspect.signature(f)):
            diffs.append(f"{cname}(): {inspect.signature(c)} != {inspect.signature(f)}")
        cm, fm = dict(_members(c)), dict(_members(f))
        if sorted(cm) != sorted(fm):
            diffs.append(f"{cname} members: {sorted(set(cm) ^ set(fm))} in one only")
        for name in set(cm) & set(fm):
            a, b = cm[name], fm[name]
            if isinstance(b, property) or not callable(b):
                continue
            sa, sb = _signature(a), _signature(b)
            if _shape(sa) != _shape(sb):
                diffs.append(f"{cname}.{name}: core {sa} != fallback {sb}")
    cfun, ffun = _public_functions(core), _public_functions(fallback)
    assert sorted(cfun) == sorted(ffun)
    for name in cfun:
        sa, sb = inspect.signature(cfun[name]), inspect.signature(ffun[name])
        if _shape(sa) != _shape(sb):
            diffs.append(f"{name}: core {sa} != fallback {sb}")
    assert diffs == []


def test_help_shows_signatures_and_no_cython_internals(qloop_module):
    text = pydoc.render_doc(qloop_module.AioContext, renderer=pydoc.plaintext)
    assert "poll(self, /, blocking)" in text or "poll(self, blocking" in text
    assert "poll(...)" not in text
    for internal in ("__reduce_cython__", "__setstate_cython__", "__pyx_vtable__"):
        assert internal not in text
