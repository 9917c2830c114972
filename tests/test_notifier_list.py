"""NotifierList (docs/notifiers.md; decisions.md: snapshot iteration, ValueError on unknown
remove)."""

from __future__ import annotations

import pytest


@pytest.fixture
def nl(qloop_module):
    return qloop_module.NotifierList()


def recorder(log, name):
    def cb(data):
        log.append((name, data))

    return cb


def test_notify_empty_list(nl):
    nl.notify()
    nl.notify("x")


def test_lifo_order_and_data(nl):
    log = []
    for name in "abc":
        nl.add(recorder(log, name))
    nl.notify(42)
    assert log == [("c", 42), ("b", 42), ("a", 42)]


def test_default_data_is_none(nl):
    log = []
    nl.add(recorder(log, "a"))
    nl.notify()
    assert log == [("a", None)]


def test_remove(nl):
    log = []
    a, b, c = (recorder(log, n) for n in "abc")
    for cb in (a, b, c):
        nl.add(cb)
    nl.remove(b)
    nl.notify(1)
    assert log == [("c", 1), ("a", 1)]


def test_remove_unknown_raises_value_error(nl):
    with pytest.raises(ValueError):
        nl.remove(lambda data: None)
    cb = lambda data: None
    nl.add(cb)
    nl.remove(cb)
    with pytest.raises(ValueError):
        nl.remove(cb)


def test_self_removal_during_notify(nl):
    log = []

    def selfish(data):
        log.append(("selfish", data))
        nl.remove(selfish)

    nl.add(recorder(log, "a"))
    nl.add(selfish)
    nl.add(recorder(log, "c"))
    nl.notify(1)
    assert log == [("c", 1), ("selfish", 1), ("a", 1)]
    log.clear()
    nl.notify(2)
    assert log == [("c", 2), ("a", 2)]


def test_removing_later_callback_during_notify_skips_it(nl):
    log = []
    a = recorder(log, "a")
    b = recorder(log, "b")

    def remover(data):
        log.append(("remover", data))
        nl.remove(b)

    nl.add(a)
    nl.add(b)
    nl.add(remover)
    nl.notify(1)
    assert log == [("remover", 1), ("a", 1)]  # a is still called (snapshot), b is not


def test_added_during_notify_not_called_this_pass(nl):
    log = []
    late = recorder(log, "late")

    def adder(data):
        log.append(("adder", data))
        if len(log) == 1:
            nl.add(late)

    nl.add(adder)
    nl.notify(1)
    assert log == [("adder", 1)]
    nl.notify(2)
    assert log == [("adder", 1), ("late", 2), ("adder", 2)]


def test_same_list_notified_again_is_independent(nl):
    log = []
    nl.add(recorder(log, "a"))
    nl.notify(1)
    nl.notify(2)
    assert log == [("a", 1), ("a", 2)]
