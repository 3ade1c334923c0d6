# Shared by scripts/clickhouse.sh and scripts/temporal.sh (sourced; the caller
# sets SCRIPT_NAME for messages and `set -euo pipefail`).

die() { echo "$SCRIPT_NAME: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# True while PID exists and is not a zombie (orphans are reaped lazily on this machine).
pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [ "$state" != "Z" ]
}

# stop_server DIR: SIGTERM the server whose pid is in DIR/pid, SIGKILL after 10 s.
stop_server() {
    local dir="${1:-}"
    [ -n "$dir" ] || die "usage: $SCRIPT_NAME stop DIR"
    if [ ! -f "$dir/pid" ]; then
        echo "$SCRIPT_NAME: no pid file in $dir; nothing to stop" >&2
        return 0
    fi
    local pid
    pid="$(cat "$dir/pid")"
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then
            echo "$SCRIPT_NAME: pid $pid still alive after 10 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                pid_alive "$pid" || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$dir/pid"
}
