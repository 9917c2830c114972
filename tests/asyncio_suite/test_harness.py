"""Self-checks of the asyncio suite harness (they need no event loop of qloop's).

Every test class of a covered CPython module is accounted for (run, replaced by a harness
class, or excluded as a whole with its reason), and every line of ``exclusions.txt`` names
tests that exist.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from . import _harness
from ._harness import (
    ADAPTED,
    cpython_test_classes,
    import_cpython_module,
    load_exclusions,
    unittest_names,
)
from ._loops import ARMS, ENV_VAR, selected_arms

PACKAGE_DIR = Path(__file__).parent


def _harness_modules() -> list[str]:
    """The CPython modules the harness covers: ``test_<x>.py`` here, but this one."""
    names = [m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)])]
    return sorted(n for n in names if n.startswith("test_") and n != "test_harness")


@pytest.fixture(scope="module")
def covered() -> dict[str, object]:
    """CPython module name -> module, once every harness module has been imported."""
    out = {}
    for name in _harness_modules():
        module = importlib.import_module(f"{__package__}.{name}")
        if hasattr(module, "cpython"):
            out[name] = module.cpython
    if not out:
        pytest.skip("this Python has no test.test_asyncio (CPython's test suite)")
    return out


def _known_ids(covered: dict[str, object]) -> set[str]:
    """Every ``<module>.<Class>`` and ``<module>.<Class>.<test>`` an exclusion may name."""
    ids = set()
    for name, cpython in covered.items():
        classes = dict(cpython_test_classes(cpython))
        harness = importlib.import_module(f"{__package__}.{name}")
        for obj in vars(harness).values():
            suite_id = getattr(obj, "suite_id", None)
            if suite_id is not None:
                classes[suite_id.rpartition(".")[2]] = obj
        for cls_name, cls in classes.items():
            ids.add(f"{name}.{cls_name}")
            ids.update(f"{name}.{cls_name}.{test}" for test in unittest_names(cls))
    return ids


def test_every_class_is_accounted_for(covered: dict[str, object]) -> None:
    exclusions = load_exclusions()
    missing = []
    for name, cpython in covered.items():
        for cls_name, cls in cpython_test_classes(cpython).items():
            if not unittest_names(cls) or cls_name in ADAPTED.get(name, set()):
                continue
            test_id = f"{name}.{cls_name}"
            if not any(e.pattern == test_id for e in exclusions):
                missing.append(test_id)
    assert not missing, (
        "CPython test classes neither run by the harness nor excluded in exclusions.txt: "
        + ", ".join(missing)
    )


def test_every_exclusion_names_existing_tests(covered: dict[str, object]) -> None:
    ids = _known_ids(covered)
    stale = [
        f"exclusions.txt:{e.line}: {e.pattern}"
        for e in load_exclusions()
        if not any(e.matches(test_id) for test_id in ids)
    ]
    assert not stale, "exclusions that match no test: " + "; ".join(stale)


def test_exclusions_are_unique() -> None:
    patterns = [e.pattern for e in load_exclusions(every_python=True)]
    assert len(patterns) == len(set(patterns))


def test_exclusion_for_some_pythons(tmp_path: Path) -> None:
    path = tmp_path / "exclusions.txt"
    path.write_text("test_x.Y.test_new  python>=3.13  only there\n"
                    "test_x.Y.test_old python<3.14 gone since\n"
                    "test_x.Y.test_all  everywhere\n"
                    "test_x.Y.test_mid  python>=3.12,<3.14  in between\n")
    new, old, every, mid = load_exclusions(path, every_python=True)
    assert (new.pythons, new.reason) == ("python>=3.13", "only there")
    assert [new.applies(v) for v in ((3, 12), (3, 13), (3, 14))] == [False, True, True]
    assert [old.applies(v) for v in ((3, 13), (3, 14))] == [True, False]
    assert every.pythons is None and every.applies((3, 11))
    assert [mid.applies(v) for v in ((3, 11), (3, 12), (3, 13), (3, 14))] == [
        False, True, True, False]
    here = [e.pattern for e in load_exclusions(path)]
    assert here == [e.pattern for e in (new, old, every, mid) if e.applies()]
    path.write_text("test_x.Y.test_z python>3.13 typo\n")
    with pytest.raises(ValueError, match="expected python>=X.Y, python<X.Y"):
        load_exclusions(path)
    path.write_text("test_x.Y.test_z python>=3.13\n")
    with pytest.raises(ValueError, match="has no reason"):
        load_exclusions(path)


def test_exclusion_without_reason_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "exclusions.txt"
    bad.write_text("# comment\ntest_x.Y.test_z   \n")
    with pytest.raises(ValueError, match="test_x.Y.test_z.*no reason"):
        load_exclusions(bad)


def test_exclusion_patterns() -> None:
    whole_class = _harness.Exclusion("test_x.Cls", "why", 1)
    assert whole_class.matches("test_x.Cls.test_a")
    assert not whole_class.matches("test_x.Cls2.test_a")
    glob = _harness.Exclusion("test_x.Cls.test_ssl_*", "why", 2)
    assert glob.matches("test_x.Cls.test_ssl_connect")
    assert not glob.matches("test_x.Cls.test_connect")


def test_arm_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert [a.id for a in selected_arms()] == ["qloop-core", "qloop-fallback"]
    monkeypatch.setenv(ENV_VAR, "uvloop, asyncio")
    assert [a.id for a in selected_arms()] == ["uvloop", "asyncio"]
    monkeypatch.setenv(ENV_VAR, "tokio")
    with pytest.raises(ValueError, match="unknown loop.*tokio"):
        selected_arms()


def test_qloop_arms_skip_only_without_event_loop() -> None:
    # qloop's modules import; the arm is "missing" exactly when EventLoop is not exported
    for arm_id in ("qloop-core", "qloop-fallback"):
        arm = ARMS[arm_id]
        has_loop = hasattr(arm.module(), "EventLoop")
        assert (arm.missing_reason() is None) == has_loop
    assert ARMS["asyncio"].missing_reason() is None


def test_import_cpython_module_skips_when_absent() -> None:
    with pytest.raises(
        pytest.skip.Exception, match="no test.test_asyncio.test_nonexistent"
    ):
        import_cpython_module("test_nonexistent")
