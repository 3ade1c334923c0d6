#!/usr/bin/env bash
# Usage: scripts/deploy-check.sh BIN      (run by `make deploy-check`)
#
# `make install` into a temporary DESTDIR (PREFIX=/usr/local) with BIN as the binary, checks
# that every installed file is where the unit and the env file say, that the installed binary
# runs with the installed plugin and model, and checks the unit with `systemd-analyze verify`
# (instance @1) when systemd-analyze is there. Exits non-zero on any failure.
set -euo pipefail

BIN="${1:?usage: $0 BIN}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(mktemp -d "${TMPDIR:-/tmp}/llma-deploy.XXXXXX")"
trap 'rm -rf "$ROOT"' EXIT
PREFIX=/usr/local

make -s -C "$HERE/.." install PREFIX="$PREFIX" DESTDIR="$ROOT" INSTALL_BIN="$BIN" >/dev/null
unit="$ROOT$PREFIX/lib/systemd/system/llma-sentiment@.service"
for f in "$ROOT$PREFIX/bin/llma-sentiment" \
    "$ROOT$PREFIX/lib/llma-sentiment/plugins/llma_sentiment_plugin.wasm" \
    "$ROOT$PREFIX/share/llma-sentiment/models/default/model.onnx" \
    "$ROOT$PREFIX/etc/llma-sentiment/config.toml" "$ROOT$PREFIX/etc/llma-sentiment/worker.env" "$unit"; do
    [ -e "$f" ] || { echo "deploy-check: missing $f" >&2; exit 1; }
done
if grep -n '@[A-Z]*@' "$unit" "$ROOT$PREFIX/etc/llma-sentiment/worker.env"; then
    echo "deploy-check: unsubstituted placeholders" >&2
    exit 1
fi
# Every path the unit and the env file name exists in the installed tree.
for p in $(grep -ohE "$PREFIX/[A-Za-z0-9_./@%-]+" "$unit" "$ROOT$PREFIX/etc/llma-sentiment/worker.env" | sort -u); do
    case "$p" in *%i*) continue ;; esac
    [ -e "$ROOT$p" ] || { echo "deploy-check: the unit or env file names $p, which is not installed" >&2; exit 1; }
done
# The installed binary with the installed plugin and model, as the env file configures it.
(
    set -a
    # shellcheck disable=SC1091
    . "$ROOT$PREFIX/etc/llma-sentiment/worker.env"
    set +a
    export LLMA_SENTIMENT_PLUGIN="$ROOT$LLMA_SENTIMENT_PLUGIN" LLMA_SENTIMENT_MODEL_DIR="$ROOT$LLMA_SENTIMENT_MODEL_DIR"
    # A warm compile cache (DEPLOY_CHECK_CACHE_DIR) saves compiling the component again.
    export LLMA_SENTIMENT_CONFIG="$ROOT$PREFIX/etc/llma-sentiment/config.toml" LLMA_SENTIMENT_CACHE_DIR="${DEPLOY_CHECK_CACHE_DIR:-$ROOT/cache}"
    "$ROOT$PREFIX/bin/llma-sentiment" info >/dev/null
    "$ROOT$PREFIX/bin/llma-sentiment" config | grep -q 'exit_when_stuck = true'
) || { echo "deploy-check: the installed binary does not run with the installed files" >&2; exit 1; }
echo "deploy-check: install layout ok ($ROOT$PREFIX)"

if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that ExecStart exists: a copy of the unit pointing into the installed tree.
    check="$ROOT/verify/llma-sentiment@1.service"
    mkdir -p "$ROOT/verify"
    sed "s|$PREFIX/|$ROOT$PREFIX/|g" "$unit" >"$check"
    out="$(systemd-analyze verify "$check" 2>&1 || true)"
    # Outside a booted systemd (containers, CI) verify also reports about the host's own units.
    relevant="$(echo "$out" | grep -i 'llma-sentiment' || true)"
    if [ -n "$relevant" ]; then
        echo "$relevant" >&2
        echo "deploy-check: systemd-analyze verify found problems in the unit" >&2
        exit 1
    fi
    echo "deploy-check: systemd-analyze verify: no findings for llma-sentiment@1.service"
    echo "$out" | grep -v '^$' | sed 's/^/  (about the host, not the unit) /' | head -5 || true
else
    echo "deploy-check: systemd-analyze not installed here: unit not verified"
fi
