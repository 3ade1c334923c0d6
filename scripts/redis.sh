#!/usr/bin/env bash
# Throwaway Redis servers for tests, CI and the demos, bound to loopback only.
#
# Usage:
#   scripts/redis.sh install      apt-install redis-server (and redis-tools' redis-cli) if missing
#   scripts/redis.sh start DIR    start a server whose working dir, log and pid live in DIR;
#                                 prints (and writes to DIR/env):
#                                   REDIS_URL=redis://127.0.0.1:PORT
#                                   REDIS_PORT=PORT
#                                   REDIS_PID=PID
#   scripts/redis.sh stop DIR     SIGTERM the server of DIR, SIGKILL after 10 s
#
# No persistence (no RDB snapshots, no AOF): the result cache is a cache. Several servers may run
# at once, each with its own DIR and free port. `start` installs nothing: run `install` first
# (instant when the server is there).
# Environment:
#   REDIS_START_TIMEOUT   seconds to wait for PONG (default 10)
#   REDIS_EXTRA_ARGS      extra redis-server arguments (word-split), e.g. "--maxmemory 64mb"
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=redis.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

cmd_install() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        echo "redis.sh: already installed ($(command -v redis-server))" >&2
        return 0
    fi
    apt_install redis-server redis-tools
    # Where policy-rc.d lets the package start the system service, stop it: nothing but our own
    # servers should listen.
    if [ -f /run/redis/redis-server.pid ]; then
        kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
    fi
    command -v redis-server >/dev/null 2>&1 || die "installation did not provide redis-server"
}

cmd_start() {
    command -v redis-server >/dev/null 2>&1 || die "redis-server not installed; run: scripts/redis.sh install"
    local dir
    dir="$(prepare_dir "${1:-}")"
    local timeout="${REDIS_START_TIMEOUT:-10}"
    local port pid
    for _ in 1 2 3; do
        port="$(free_port)"
        : >"$dir/redis.log"
        # setsid: own process group, so a ^C on the caller's terminal does not hit it.
        # shellcheck disable=SC2086
        setsid redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
            --save '' --appendonly no --dir "$dir" --logfile "$dir/redis.log" --daemonize no \
            ${REDIS_EXTRA_ARGS:-} </dev/null >>"$dir/redis.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        local deadline=$((SECONDS + timeout))
        while [ $SECONDS -lt $deadline ]; do
            pid_alive "$pid" || break
            if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
                {
                    echo "REDIS_URL=redis://127.0.0.1:$port"
                    echo "REDIS_PORT=$port"
                    echo "REDIS_PID=$pid"
                } >"$dir/env"
                cat "$dir/env"
                return 0
            fi
            sleep 0.1
        done
        retry_start "$pid" "$timeout" 1 'address already in use' "$dir/redis.log" || break
    done
    start_failed Redis "$dir" "$dir/redis.log"
}

server_main "$@"
