# Shared by scripts/clickhouse.sh, scripts/redis.sh and scripts/temporal.sh (sourced; the caller
# sets SCRIPT_NAME for messages and `set -euo pipefail`).

die() { echo "$SCRIPT_NAME: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# apt_install PKG...: install Debian packages, refreshing the package lists
# only when apt does not know the first package yet (or the install failed).
# Two scripts installing at once (a test starts ClickHouse and Redis in
# parallel on a fresh machine) take turns on a lock of their own, and any
# other apt holding dpkg's lock (the system's daily timer) is waited for;
# both waits are bounded by APT_LOCK_TIMEOUT seconds (default 600).
apt_install() {
    local timeout="${APT_LOCK_TIMEOUT:-600}"
    local apt=(apt-get -q -o "DPkg::Lock::Timeout=$timeout")
    export DEBIAN_FRONTEND=noninteractive
    (
        if command -v flock >/dev/null 2>&1; then
            flock -w "$timeout" 9 || die "another package install held /var/lock/llma-sentiment-apt.lock for $timeout s"
        fi
        if ! apt-cache show "$1" >/dev/null 2>&1; then
            "${apt[@]}" update >&2
        fi
        if ! "${apt[@]}" install -y --no-install-recommends "$@" >&2; then
            "${apt[@]}" update >&2
            "${apt[@]}" install -y --no-install-recommends "$@" >&2
        fi
    ) 9>/var/lock/llma-sentiment-apt.lock
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

# prepare_dir DIR: creates DIR, refuses it while its server still runs, clears its pid and env
# files; prints DIR as an absolute path.
prepare_dir() {
    local dir="${1:-}"
    [ -n "$dir" ] || die "usage: $SCRIPT_NAME start DIR"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ -f "$dir/pid" ] && pid_alive "$(cat "$dir/pid")"; then
        die "a server is already running for $dir (pid $(cat "$dir/pid"))"
    fi
    rm -f "$dir/pid" "$dir/env"
    echo "$dir"
}

# retry_start PID TIMEOUT GRACE PATTERN LOG...: a server that did not come up. Still running
# after TIMEOUT s: stopped (SIGTERM, SIGKILL after GRACE s), no retry (status 1). Exited
# with a log matching PATTERN (a port taken between picking and binding it): retry (status 0).
retry_start() {
    local pid="$1" timeout="$2" grace="$3" pattern="$4"
    shift 4
    if pid_alive "$pid"; then
        echo "$SCRIPT_NAME: server did not come up within ${timeout}s" >&2
        kill -TERM "$pid" 2>/dev/null || true
        sleep "$grace"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    wait "$pid" 2>/dev/null || true
    if grep -qiE "$pattern" "$@" 2>/dev/null; then
        echo "$SCRIPT_NAME: port clash, retrying with new ports" >&2
        return 0
    fi
    return 1
}

# start_failed WHAT DIR LOG...: the start of WHAT in DIR failed for good: prints the tail of
# every non-empty LOG and exits 1.
start_failed() {
    local what="$1" dir="$2"
    shift 2
    rm -f "$dir/pid"
    echo "$SCRIPT_NAME: failed to start $what in $dir; log tail:" >&2
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "==> $f <==" >&2
        tail -n 40 "$f" >&2
    done
    exit 1
}

# server_main ARGS...: the command line every server script takes (it defines cmd_install and
# cmd_start): install | start DIR | stop DIR.
server_main() {
    case "${1:-}" in
        install) cmd_install ;;
        start) shift; cmd_start "$@" ;;
        stop) shift; stop_server "$@" ;;
        *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
    esac
}
