#!/usr/bin/env bash
# Create the venv (if needed) and build the small bundles into OUT (default
# /tmp/m): default, roberta-tiny (int64 CumSum), roberta-tiny-i32 (int32 CumSum).
# The ~500 MB base-shaped model is not built here; see docs/plugins.md "Model bundles".
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-/tmp/m}"
VENV="${LLMA_VENV:-/var/cache/llma-sentiment/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import onnx, onnxruntime, tokenizers, vaderSentiment' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --only-binary=:all: -r "$HERE/requirements.txt"
fi
PY="$VENV/bin/python"
"$PY" "$HERE/build_default.py" --out "$OUT/default"
"$PY" "$HERE/build_roberta.py" --shape tiny --cumsum int64 --seed 0 --out "$OUT/roberta-tiny"
"$PY" "$HERE/build_roberta.py" --shape tiny --cumsum int32 --seed 0 --out "$OUT/roberta-tiny-i32"
