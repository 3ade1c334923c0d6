#!/usr/bin/env bash
# Usage: scripts/venv.sh [REQUIREMENTS_FILE...]
#
# Idempotently creates the Python virtualenv at ${LLMA_VENV:-/var/cache/llma-sentiment/venv}
# and pip-installs each given requirements file into it. Each install is recorded in a stamp
# file keyed by the sha256 of the requirements file's contents (and the venv's Python version),
# so a rerun with unchanged requirements does nothing and returns instantly.
#
# Prints the venv path on the last line of stdout (VENV=...); progress goes to stderr.
# Environment:
#   LLMA_VENV    venv location (default /var/cache/llma-sentiment/venv)
#   LLMA_PYTHON  interpreter used to create the venv (default: python3)
set -euo pipefail

VENV="${LLMA_VENV:-/var/cache/llma-sentiment/venv}"
PYTHON="${LLMA_PYTHON:-python3}"

log() { echo "venv.sh: $*" >&2; }

mkdir -p "$(dirname "$VENV")"

# Serialise concurrent invocations (e.g. parallel CI steps) on the same venv.
exec 9>"$VENV.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating venv at $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || \
        log "warning: could not upgrade pip (continuing)"
fi

pyver="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
mkdir -p "$VENV/.stamps"

for req in "$@"; do
    if [ ! -f "$req" ]; then
        log "requirements file not found: $req"
        exit 2
    fi
    # One stamp per requirements file (keyed by its absolute path), named by a hash of its
    # contents, so that editing the file triggers exactly one reinstall.
    key="$(basename "$req")-$(readlink -f "$req" | sha256sum | cut -c1-8)"
    hash="$( { echo "py$pyver"; cat "$req"; } | sha256sum | cut -c1-16)"
    stamp="$VENV/.stamps/$key.$hash"
    if [ -f "$stamp" ]; then
        continue
    fi
    log "installing $req into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -r "$req" >&2
    rm -f "$VENV/.stamps/$key".*
    touch "$stamp"
done

echo "VENV=$VENV"
