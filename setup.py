"""Build qloop: the compiled core ``qloop._core`` (Cython) plus the pure-Python package.

``QLOOP_NO_EXTENSIONS=1`` (or a non-CPython interpreter) builds a pure-Python install.
Otherwise a failed compile fails the build: there is no silent slow fallback.
Knobs: ``QLOOP_OPT_CFLAGS`` (extra compiler flags, shell-split), ``QLOOP_DEBUG_BUILD=1``
(-O0 -g3, line tracing, ``QLOOP_DEBUG``), and build_ext ``--cython-always``,
``--cython-annotate``, ``--cython-directives=k=v,...``.
"""

import os
import platform
import re
import shlex
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CYTHON_REQUIREMENT = "Cython>=3.1,<4"
NO_EXTENSIONS = bool(os.environ.get("QLOOP_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)
DEBUG_BUILD = bool(os.environ.get("QLOOP_DEBUG_BUILD"))


def read_version():
    with open(os.path.join(HERE, "qloop", "_version.py")) as f:
        match = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    if not match:
        raise RuntimeError("cannot find __version__ in qloop/_version.py")
    return match.group(1)


class build_ext(_build_ext):
    user_options = _build_ext.user_options + [
        ("cython-always", None, "run cythonize() even if a generated .c file exists"),
        ("cython-annotate", None, "produce an HTML annotation of the generated C"),
        ("cython-directives=", None, "Cython compiler directives, k=v[,k=v...]"),
    ]
    boolean_options = _build_ext.boolean_options + ["cython-always", "cython-annotate"]

    def initialize_options(self):
        super().initialize_options()
        self.cython_always = False
        self.cython_annotate = False
        self.cython_directives = None

    def finalize_options(self):
        self._cythonize()
        super().finalize_options()

    def _cythonize(self):
        try:
            import Cython
            from Cython.Build import cythonize
        except ImportError as exc:
            raise RuntimeError(
                f"qloop needs {CYTHON_REQUIREMENT} to build its compiled core "
                "(or set QLOOP_NO_EXTENSIONS=1 for a pure-Python install)"
            ) from exc
        try:
            from packaging.requirements import Requirement
        except ImportError:
            from setuptools._vendor.packaging.requirements import Requirement
        req = Requirement(CYTHON_REQUIREMENT)
        if Cython.__version__ not in req.specifier:
            raise RuntimeError(
                f"qloop requires {CYTHON_REQUIREMENT}, found Cython {Cython.__version__}"
            )
        directives = {
            "language_level": "3",
            "embedsignature": True,
            # signatures as CPython's own builtins carry them (__text_signature__), so
            # inspect.signature() and help() see them, with binding=False's fast calls
            "embedsignature.format": "clinic",
            # nothing here pickles: no __reduce_cython__/__setstate_cython__ in help()
            "auto_pickle": False,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            # plain C methods (METH_NOARGS/METH_O...): cheaper calls than cyfunctions
            "binding": False,
        }
        if DEBUG_BUILD:
            directives["linetrace"] = True
        if self.cython_directives:
            for item in self.cython_directives.split(","):
                key, _, value = item.partition("=")
                directives[key.strip()] = value.strip()
        self.distribution.ext_modules[:] = cythonize(
            self.distribution.ext_modules,
            compiler_directives=directives,
            annotate=self.cython_annotate,
            force=self.cython_always,
            compile_time_env={"QLOOP_DEBUG": DEBUG_BUILD},
        )


def extensions():
    if NO_EXTENSIONS:
        print("qloop: QLOOP_NO_EXTENSIONS set: building the pure-Python package only",
              file=sys.stderr)
        return []
    if not sys.platform.startswith("linux"):
        raise RuntimeError("qloop's compiled core needs Linux (epoll, eventfd, ppoll); "
                           "set QLOOP_NO_EXTENSIONS=1 for the pure-Python package")
    cflags = ["-O2"]
    macros = []
    if DEBUG_BUILD:
        cflags = ["-O0", "-g3", "-UNDEBUG"]
        macros = [("CYTHON_TRACE_NOGIL", "1"), ("QLOOP_DEBUG", "1")]
    cflags += glib_cflags(macros)
    cflags += shlex.split(os.environ.get("QLOOP_OPT_CFLAGS", ""))
    return [
        Extension(
            "qloop._core",
            ["qloop/_core.pyx"],
            include_dirs=["qloop/includes"],
            extra_compile_args=cflags,
            define_macros=macros,
            libraries=["dl"],
        )
    ]


def glib_cflags(macros):
    """Compile the GLib glue against glib.h when pkg-config finds it (type-checked against
    the real prototypes).  GLib itself is loaded at run time either way, so neither the
    build nor the wheel depends on it."""
    import subprocess

    try:
        out = subprocess.run(["pkg-config", "--cflags", "glib-2.0"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        print("qloop: glib-2.0 not found by pkg-config: building the GLib glue without glib.h",
              file=sys.stderr)
        return []
    macros.append(("QLOOP_HAVE_GLIB_H", "1"))
    return shlex.split(out)


setup(
    version=read_version(),
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext},
)
