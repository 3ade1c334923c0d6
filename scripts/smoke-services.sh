#!/usr/bin/env bash
# `a && ok || bad` is intended; the env files are generated at run time.
# shellcheck disable=SC2015,SC1090,SC1091
# Usage: scripts/smoke-services.sh
#
# Self-check of scripts/clickhouse.sh and scripts/temporal.sh: installs both, starts two
# ClickHouse servers and one Temporal dev server side by side, queries each (clickhouse-client
# over TCP, curl over HTTP, `temporal workflow list` / `workflow start`), checks that every
# listening socket is on 127.0.0.1, stops everything and checks that no server process is left.
# Prints "N passed, N failed" at the end; exits non-zero on any failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/llma-smoke.XXXXXX")"
passed=0
failed=0

ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what="$1"; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

cleanup() {
    "$HERE/temporal.sh" stop "$WORK/t1" 2>/dev/null || true
    "$HERE/clickhouse.sh" stop "$WORK/ch1" 2>/dev/null || true
    "$HERE/clickhouse.sh" stop "$WORK/ch2" 2>/dev/null || true
}
trap cleanup EXIT

"$HERE/clickhouse.sh" install || { bad "clickhouse install"; exit 1; }
"$HERE/temporal.sh" install || { bad "temporal install"; exit 1; }

# Start the two ClickHouse servers concurrently, Temporal alongside.
"$HERE/clickhouse.sh" start "$WORK/ch1" >"$WORK/ch1.out" 2>&1 & p1=$!
"$HERE/clickhouse.sh" start "$WORK/ch2" >"$WORK/ch2.out" 2>&1 & p2=$!
"$HERE/temporal.sh" start "$WORK/t1" >"$WORK/t1.out" 2>&1 & p3=$!
wait $p1 && ok "clickhouse ch1 started" || { bad "clickhouse ch1 started"; cat "$WORK/ch1.out"; }
wait $p2 && ok "clickhouse ch2 started" || { bad "clickhouse ch2 started"; cat "$WORK/ch2.out"; }
wait $p3 && ok "temporal t1 started" || { bad "temporal t1 started"; cat "$WORK/t1.out"; }

pids=()
for d in ch1 ch2; do
    [ -f "$WORK/$d/env" ] || continue
    (
        set -a; . "$WORK/$d/env"; set +a
        v="$(clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" -q 'SELECT version()')" \
            && echo "$d: clickhouse-client version() = $v" || exit 1
        [ "$(curl -s "$CLICKHOUSE_URL/ping")" = "Ok." ] || exit 1
        # Each instance has its own data: create a table named after the instance.
        curl -sf --data-binary "CREATE TABLE only_$d (x UInt8) ENGINE = Memory" "$CLICKHOUSE_URL/" || exit 1
        n="$(curl -sf --data-binary "SELECT count() FROM system.tables WHERE name LIKE 'only_%'" "$CLICKHOUSE_URL/")"
        [ "$n" = 1 ] || { echo "$d sees $n only_* tables"; exit 1; }
    ) && ok "clickhouse $d answers over TCP and HTTP, isolated data" || bad "clickhouse $d queries"
    pids+=("$(cat "$WORK/$d/pid" 2>/dev/null)")
done

if [ -f "$WORK/t1/env" ]; then
    (
        set -a; . "$WORK/t1/env"; set +a
        "$TEMPORAL_BIN" workflow start --address "$TEMPORAL_ADDRESS" --namespace default \
            --task-queue smoke --type Smoke --workflow-id smoke-1 >/dev/null || exit 1
        "$TEMPORAL_BIN" workflow list --address "$TEMPORAL_ADDRESS" --namespace default | grep -q smoke-1
    ) && ok "temporal workflow start + list" || bad "temporal workflow start + list"
    pids+=("$(cat "$WORK/t1/pid" 2>/dev/null)")
fi

# Every socket the servers listen on must be loopback.
listeners="$(ss -Htlnp 2>/dev/null || true)"
nonloop=""
for pid in "${pids[@]}"; do
    [ -n "$pid" ] || continue
    nonloop+="$(echo "$listeners" | grep "pid=$pid," | awk '{print $4}' | grep -v '^127\.0\.0\.1:' || true)"
done
[ -z "$nonloop" ] && ok "all listeners on 127.0.0.1" || bad "non-loopback listeners: $nonloop"

"$HERE/temporal.sh" stop "$WORK/t1"
"$HERE/clickhouse.sh" stop "$WORK/ch1"
"$HERE/clickhouse.sh" stop "$WORK/ch2"
left=""
for pid in "${pids[@]}"; do
    [ -n "$pid" ] || continue
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    if [ -n "$state" ] && [ "$state" != Z ]; then left+=" $pid"; fi
done
[ -z "$left" ] && ok "no server process left after stop" || bad "processes left:$left"

rm -rf "$WORK"
echo "smoke-services: $passed passed, $failed failed"
[ "$failed" = 0 ]
