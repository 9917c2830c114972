"""qloop's pytest plugin (``qloop.pytest_plugin``) and the pytest-asyncio / anyio recipes of
docs/virtual-time.md, each run in an inner pytest session (a subprocess, on the
implementation under test) and in this session (the live implementation)."""

from __future__ import annotations

import asyncio
import os
import textwrap

import pytest

import qloop

# where the qloop under test lives (the source tree, or site-packages in CI's wheel test)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(qloop.__file__)))


@pytest.fixture
def inner(pytester, qloop_module, monkeypatch):
    """Run an inner pytest session on the implementation under test: ``inner(files, *args)``
    returns its RunResult."""
    monkeypatch.setenv("PYTHONPATH", ROOT)
    if qloop_module.__name__ == "qloop._fallback":
        monkeypatch.setenv("QLOOP_NO_EXTENSIONS", "1")
    else:
        monkeypatch.delenv("QLOOP_NO_EXTENSIONS", raising=False)
        monkeypatch.setenv("QLOOP_REQUIRE_EXTENSIONS", "1")

    def run_inner(files: dict, *args: str):
        pytester.makepyfile(**{k: textwrap.dedent(v) for k, v in files.items()})
        return pytester.runpytest_subprocess("-p", "qloop.pytest_plugin", "-p",
                                             "no:cacheprovider", "-q", *args)

    return run_inner


EXPECTED_IMPLEMENTATION = """
import qloop, os
def test_implementation():
    assert qloop.IMPLEMENTATION == ("fallback" if os.environ.get("QLOOP_NO_EXTENSIONS")
                                    else "core")
"""


def test_the_marker_runs_a_test_in_virtual_time(inner):
    result = inner({"test_marker": """
        import asyncio
        import pytest
        import qloop

        @pytest.mark.qloop_virtual_time
        async def test_an_hour(qloop_clock):
            assert qloop_clock.time() == 0.0
            await asyncio.sleep(3600)
            assert qloop_clock.time() == 3600.0
            assert asyncio.get_running_loop().virtual_time

        @pytest.mark.qloop_virtual_time(start=100.0, autojump=False)
        async def test_manual(qloop_clock, qloop_virtual_loop):
            assert qloop_clock.loop is qloop_virtual_loop
            assert not qloop_clock.autojump
            task = asyncio.ensure_future(asyncio.sleep(10))
            assert await qloop_clock.advance(9) == 109.0
            assert not task.done()
            assert await qloop.advance(1) == 110.0
            assert task.done()

        @pytest.mark.qloop_virtual_time
        async def test_leftover_tasks_are_cancelled():
            asyncio.ensure_future(asyncio.sleep(10**6))

        def test_the_clock_mode_is_restored():
            assert not qloop.clock_is_manual()
    """, "test_impl": EXPECTED_IMPLEMENTATION})
    result.assert_outcomes(passed=5)


def test_deadlocks_and_misuse_are_reported(inner):
    result = inner({"test_misuse": """
        import asyncio
        import pytest

        @pytest.mark.qloop_virtual_time
        async def test_stuck():
            await asyncio.get_running_loop().create_future()

        @pytest.mark.qloop_virtual_time
        def test_not_async():
            pass

        @pytest.mark.qloop_virtual_time(speed=2)
        async def test_bad_keyword():
            pass

        @pytest.mark.qloop_virtual_time
        @pytest.mark.asyncio
        async def test_claimed_twice():
            pass

        def test_no_loop(qloop_clock):
            with pytest.raises(RuntimeError, match="no virtual-time qloop event loop"):
                qloop_clock.time()
    """})
    result.assert_outcomes(failed=1, errors=3, passed=1)
    result.stdout.fnmatch_lines_random([
        "*VirtualTimeDeadlock*would wait forever*",
        "*test_misuse.py:6 in test_stuck*",
        "*test_not_async*marks an async def test*",
        "*takes only the keywords autojump, start, autojump_after*",
        "*qloop_virtual_time and @pytest.mark.asyncio both claim this test*",
    ])


PYTEST_ASYNCIO_CONFTEST = """
import functools
import qloop

def pytest_asyncio_loop_factories(config, item):
    return {"qloop-virtual": functools.partial(qloop.new_event_loop, virtual_time=True)}
"""


def test_pytest_asyncio_recipe(inner):
    pytest.importorskip("pytest_asyncio", minversion="1.5")  # its loop-factory hook
    result = inner({"conftest": PYTEST_ASYNCIO_CONFTEST, "test_recipe": """
        import asyncio
        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture
        async def started():
            loop = asyncio.get_running_loop()
            await asyncio.sleep(60)
            return loop.time()

        @pytest.mark.asyncio
        async def test_virtual(started, qloop_clock):
            assert started == 60.0
            t0 = qloop_clock.time()
            await asyncio.wait_for(asyncio.sleep(600), 601)
            assert qloop_clock.time() == t0 + 600
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.Event().wait(), 3600)
            assert qloop_clock.time() == t0 + 4200
    """, "test_impl": EXPECTED_IMPLEMENTATION})
    result.assert_outcomes(passed=2)


def test_anyio_recipe(inner):
    pytest.importorskip("anyio")
    result = inner({"conftest": """
        import functools
        import pytest
        import qloop

        @pytest.fixture
        def anyio_backend():
            return ("asyncio", {"loop_factory": functools.partial(qloop.new_event_loop,
                                                                 virtual_time=True)})
    """, "test_recipe": """
        import anyio
        import pytest

        @pytest.mark.anyio
        async def test_virtual(qloop_clock):
            await anyio.sleep(3600)
            assert qloop_clock.time() == 3600.0
            with anyio.move_on_after(30) as scope:
                await anyio.sleep_forever()
            assert scope.cancelled_caught
            assert qloop_clock.time() == 3630.0
    """, "test_impl": EXPECTED_IMPLEMENTATION})
    result.assert_outcomes(passed=2)


# ---------------------------------------------------------------------------------------------
# the plugin in this session (registered by tests/conftest.py), on the live implementation


@pytest.mark.qloop_virtual_time(start=10.0)
async def test_marker_in_this_session(qloop_clock, qloop_virtual_loop):
    assert asyncio.get_running_loop() is qloop_virtual_loop
    assert type(qloop_virtual_loop).__module__ == f"qloop._{qloop.IMPLEMENTATION}"
    await asyncio.sleep(5)
    assert qloop_clock.time() == 15.0
    assert await qloop_clock.advance(5) == 20.0
