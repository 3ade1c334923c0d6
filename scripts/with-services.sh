#!/usr/bin/env bash
# Usage: scripts/with-services.sh COMMAND [ARGS...]
#
# Starts a throwaway ClickHouse and a Temporal dev server (installing them if needed), exports
# CLICKHOUSE_URL, CLICKHOUSE_HTTP_PORT, CLICKHOUSE_TCP_PORT, TEMPORAL_ADDRESS,
# TEMPORAL_NAMESPACE, TEMPORAL_BIN (and the other lines of each DIR/env), runs COMMAND, then
# stops both servers whatever happens and exits with COMMAND's status.
# State lives in a fresh directory under ${TMPDIR:-/tmp}, removed at the end unless
# LLMA_KEEP_SERVICE_DIR=1 (handy to read the server logs after a failure).
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/llma-services.XXXXXX")"

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    "$HERE/temporal.sh" stop "$WORK/temporal" || true
    "$HERE/clickhouse.sh" stop "$WORK/clickhouse" || true
    if [ "${LLMA_KEEP_SERVICE_DIR:-0}" = 1 ]; then
        echo "with-services.sh: service logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$HERE/clickhouse.sh" install
"$HERE/temporal.sh" install >/dev/null
"$HERE/clickhouse.sh" start "$WORK/clickhouse" >&2
"$HERE/temporal.sh" start "$WORK/temporal" >&2

set -a
# shellcheck disable=SC1091
. "$WORK/clickhouse/env"
# shellcheck disable=SC1091
. "$WORK/temporal/env"
set +a

status=0
"$@" || status=$?
exit "$status"
