"""What the distributions carry: the sdist ships docs/, LICENSE and the README; the metadata
(sdist and wheel) declares the MIT license and the two GLib extras.

CI builds the sdist and the wheel and points ``QLOOP_DIST_DIR`` at them: then these tests
inspect exactly those files (and fail if one is missing).  Without it the sdist is built
here (``python -m build --sdist --no-isolation``, about 2 s) when the build tools are
installed; the wheel test needs CI's wheel.
"""

from __future__ import annotations

import email.parser
import glob
import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST_DIR = os.environ.get("QLOOP_DIST_DIR")

EXTRAS = {
    "glib": "PyGObject>=3.51",
    "glib-legacy": "PyGObject<3.51,>=3.42",
}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> str:
    if DIST_DIR:
        found = glob.glob(os.path.join(DIST_DIR, "qloop-*.tar.gz"))
        assert len(found) == 1, f"expected one sdist in {DIST_DIR}, found {found}"
        return found[0]
    if not os.path.exists(os.path.join(ROOT, "setup.py")):
        pytest.skip("not a source checkout")
    missing = [m for m in ("build", "setuptools", "Cython") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"building an sdist here needs {', '.join(missing)} (CI sets QLOOP_DIST_DIR)")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), ROOT],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (found,) = glob.glob(os.path.join(out, "qloop-*.tar.gz"))
    return found


def parse_metadata(text: str):
    return email.parser.Parser().parsestr(text)


def requires_from_egg_info(text: str) -> list[str]:
    """Requires-Dist lines from an sdist's egg-info/requires.txt (older setuptools leave
    them out of the sdist's PKG-INFO)."""
    out, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line:
            out.append(f'{line}; extra == "{section}"' if section else line)
    return out


def check_metadata(meta, requires_txt: str | None = None) -> None:
    assert meta["License"] == "MIT"
    assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier", [])
    extras = set(meta.get_all("Provides-Extra", []))
    assert {"test", "glib", "glib-legacy"} <= extras, extras
    requires = meta.get_all("Requires-Dist", [])
    if not requires and requires_txt is not None:
        requires = requires_from_egg_info(requires_txt)
    for extra, requirement in EXTRAS.items():
        wanted = f'{requirement}; extra == "{extra}"'
        assert any(r.replace(" ", "") == wanted.replace(" ", "") for r in requires), (
            wanted, requires)


def test_sdist_ships_docs_license_and_readme(sdist):
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    docs_here = {
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))
    }
    assert "docs/README.md" in names
    assert docs_here <= names, sorted(docs_here - names)
    assert {"LICENSE", "README.md", "CONTRIBUTING.md", "qloop/py.typed",
            "qloop/__init__.pyi"} <= names
    assert not any(n.startswith("shared/") for n in names)


def test_sdist_metadata_declares_license_and_glib_extras(sdist):
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}

        def text(name: str) -> str | None:
            member = members.get(name)
            f = tar.extractfile(member) if member is not None else None
            return f.read().decode() if f is not None else None

        pkg_info = text("PKG-INFO")
        assert pkg_info is not None
        check_metadata(parse_metadata(pkg_info), text("qloop.egg-info/requires.txt"))


def test_wheel_metadata_declares_license_and_glib_extras():
    if not DIST_DIR:
        pytest.skip("needs the wheel CI built (QLOOP_DIST_DIR)")
    wheels = glob.glob(os.path.join(DIST_DIR, "qloop-*.whl"))
    assert wheels, f"no wheel in {DIST_DIR}"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
            check_metadata(parse_metadata(z.read(meta_name).decode()))
            assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE"))
                       for n in names), names
            assert "qloop/__init__.pyi" in names and "qloop/py.typed" in names


PLUGIN_ENTRY_POINT = "qloop.pytest_plugin = qloop.pytest_plugin"


def _entry_points_have_the_pytest_plugin(text: str | None) -> bool:
    """entry_points.txt declares qloop's pytest plugin in the pytest11 group."""
    section = ""
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "pytest11" and line.replace(" ", "") == \
                PLUGIN_ENTRY_POINT.replace(" ", ""):
            return True
    return False


def test_sdist_declares_the_pytest_plugin(sdist):
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        assert "qloop/pytest_plugin.py" in names
        f = tar.extractfile(names["qloop.egg-info/entry_points.txt"])
        assert f is not None
        assert _entry_points_have_the_pytest_plugin(f.read().decode())


def test_wheel_declares_the_pytest_plugin():
    if not DIST_DIR:
        pytest.skip("needs the wheel CI built (QLOOP_DIST_DIR)")
    for wheel in glob.glob(os.path.join(DIST_DIR, "qloop-*.whl")):
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            assert "qloop/pytest_plugin.py" in names
            (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
            assert _entry_points_have_the_pytest_plugin(z.read(ep).decode())
