#!/usr/bin/env bash
# A throwaway Kafka-compatible broker (nisshi, crates.io) for tests and demos, loopback only.
#
# Usage:
#   scripts/kafka.sh install      cargo-install nisshi (pinned) into the tools cache if missing
#   scripts/kafka.sh start DIR    start a broker whose data, log and pid live in DIR; prints
#                                 (and writes to DIR/env):
#                                   KAFKA_BROKERS=127.0.0.1:PORT
#                                   KAFKA_PID=PID
#   scripts/kafka.sh stop DIR     SIGTERM the broker of DIR, SIGKILL after 10 s
#
# Debian has no broker, only clients. nisshi 0.8.1 (Apache-2.0, the renamed successor of
# tansu) speaks the Kafka protocol with consumer groups; librdkafka (the `rdkafka` crate,
# bundled) talks to it. A cold install compiles it (~15 min on 2 cores), so it goes into a
# cache dir outside the clone, like the build dir, and is skipped when the pinned version is
# there. Its `rama` dependency declares rustc 1.96; it builds and runs on 1.95, hence
# --ignore-rust-version.
# Environment:
#   LLMA_TOOLS_DIR        install root (default /var/cache/llma-sentiment/tools; the binary is bin/nisshi)
#   KAFKA_START_TIMEOUT   seconds to wait for the port (default 15)
#   KAFKA_TLS_CERT, KAFKA_TLS_KEY   PEM certificate chain and PKCS#8 key: the listener speaks TLS only
#   KAFKA_SCRAM_USERS     "name:password ...": SCRAM-SHA-512 (and -256) users; the broker then
#                         requires a SASL login (nisshi's --authentication)
#   KAFKA_TOPICS          "name:partitions ...": topics made before a TLS or login-only broker
#                         starts (nisshi's own CLI speaks plaintext without a login)
# A TLS or login-only broker keeps its users and topics in DIR/broker.db (SQLite): they are
# written through a plaintext broker on the same port first, which is then replaced.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=kafka.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

NISSHI_VERSION=0.8.1
TOOLS="${LLMA_TOOLS_DIR:-/var/cache/llma-sentiment/tools}"
NISSHI="$TOOLS/bin/nisshi"

installed() { [ -x "$NISSHI" ] && "$NISSHI" --version 2>/dev/null | grep -q "$NISSHI_VERSION"; }

cmd_install() {
    if installed; then
        echo "kafka.sh: nisshi $NISSHI_VERSION already installed in $TOOLS" >&2
        return 0
    fi
    mkdir -p "$TOOLS"
    # One install at a time (parallel test binaries on a fresh machine).
    exec 8>"$TOOLS/.nisshi.lock"
    flock 8
    installed && return 0
    echo "kafka.sh: installing nisshi $NISSHI_VERSION into $TOOLS (a cold build takes ~15 min)" >&2
    # Its own target dir under the tools cache: never the project's build dir.
    CARGO_TARGET_DIR="$TOOLS/target" CARGO_BUILD_BUILD_DIR="$TOOLS/target" \
        cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version --root "$TOOLS" >&2
    installed || die "nisshi $NISSHI_VERSION did not install into $TOOLS"
    rm -rf "$TOOLS/target"
}

cmd_start() {
    installed || die "nisshi not installed; run: scripts/kafka.sh install"
    local dir
    dir="$(prepare_dir "${1:-}")"
    local timeout="${KAFKA_START_TIMEOUT:-15}"
    local port pid
    mkdir -p "$dir/log"
    local secure="" storage="memory://nisshi/" extra=()
    if [ -n "${KAFKA_TLS_CERT:-}${KAFKA_SCRAM_USERS:-}" ]; then
        secure=1
        storage="sqlite://broker.db"
    fi
    if [ -n "${KAFKA_TLS_CERT:-}" ]; then
        [ -n "${KAFKA_TLS_KEY:-}" ] || die "KAFKA_TLS_CERT needs KAFKA_TLS_KEY"
        extra+=(--cert "$KAFKA_TLS_CERT" --key "$KAFKA_TLS_KEY")
    fi
    [ -z "${KAFKA_SCRAM_USERS:-}" ] || extra+=(--authentication)
    for _ in 1 2 3; do
        port="$(free_port)"
        : >"$dir/log/stdout.log"
        printf '#!/bin/sh\ncd %q && exec %q broker --listener-url tcp://127.0.0.1:%s --advertised-listener-url tcp://127.0.0.1:%s --storage-engine %s --group-initial-rebalance-delay 100ms "$@"\n' \
            "$dir" "$NISSHI" "$port" "$port" "$storage" >"$dir/run"
        chmod +x "$dir/run"
        if [ -n "$secure" ]; then
            seed_broker "$dir" "$port" "$timeout" || continue
        fi
        setsid "$dir/run" "${extra[@]}" </dev/null >>"$dir/log/stdout.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        local deadline=$((SECONDS + timeout))
        while [ $SECONDS -lt $deadline ]; do
            pid_alive "$pid" || break
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                { echo "KAFKA_BROKERS=127.0.0.1:$port"; echo "KAFKA_PID=$pid"; } >"$dir/env"
                cat "$dir/env"
                return 0
            fi
            sleep 0.1
        done
        retry_start "$pid" "$timeout" 2 'address already in use|Address in use' "$dir/log/stdout.log" || break
    done
    start_failed nisshi "$dir" "$dir/log/stdout.log"
}

# seed_broker DIR PORT TIMEOUT: the users and topics of a TLS or login-only broker, written
# through a plaintext broker on DIR/broker.db and PORT, stopped afterwards.
seed_broker() {
    local dir="$1" port="$2" timeout="$3" pid ok=""
    rm -f "$dir"/broker.db*
    setsid "$dir/run" </dev/null >>"$dir/log/seed.log" 2>&1 &
    pid=$!
    # Stopped below like any broker of DIR (and by `stop DIR` if this dies first).
    echo "$pid" >"$dir/pid"
    local deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ] && pid_alive "$pid"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
        sleep 0.1
    done
    if [ -n "$ok" ]; then
        local entry
        for entry in ${KAFKA_SCRAM_USERS:-}; do
            for mech in scram512 scram256; do
                "$NISSHI" user create --broker "tcp://127.0.0.1:$port" --mechanism "$mech" "${entry%%:*}" "${entry#*:}" >>"$dir/log/seed.log" 2>&1 || ok=""
            done
        done
        for entry in ${KAFKA_TOPICS:-}; do
            "$NISSHI" topic create --silent --broker "tcp://127.0.0.1:$port" --partitions "${entry#*:}" "${entry%%:*}" >>"$dir/log/seed.log" 2>&1 || ok=""
        done
    fi
    stop_server "$dir"
    [ -n "$ok" ] || { echo "kafka.sh: seeding the broker on port $port failed:" >&2; tail -20 "$dir/log/seed.log" >&2; return 1; }
}

server_main "$@"
