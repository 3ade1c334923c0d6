#!/usr/bin/env bash
# Throwaway ClickHouse servers for tests and CI, bound to loopback only.
#
# Usage:
#   scripts/clickhouse.sh install      install the server of the chosen flavour if missing
#   scripts/clickhouse.sh start DIR    start a server whose config, data, logs and pid live in DIR;
#                                      prints (and writes to DIR/env):
#                                        CLICKHOUSE_URL=http://127.0.0.1:PORT
#                                        CLICKHOUSE_HTTP_PORT=PORT
#                                        CLICKHOUSE_TCP_PORT=PORT
#                                        CLICKHOUSE_PID=PID
#   scripts/clickhouse.sh stop DIR     SIGTERM the server of DIR, SIGKILL after 10 s
#
# Several servers may run at once, each with its own DIR and free ports. DIR is created if
# missing; a DIR whose server is still running is refused. `start` installs nothing: run
# `install` first (it is instant when the server is already there). `start` also writes
# DIR/run, which starts the same server again (same ports, same data) in the foreground.
#
# Two flavours (CLICKHOUSE_FLAVOR):
#   debian   Debian 12's package, ClickHouse 18.16: no DateTime64, Bool, Map or JSON types.
#   modern   ClickHouse 26.9, the server inside PyPI's chdb-core (pinned in
#            scripts/requirements-clickhouse.txt), installed into the project's venv
#            (outside the clone, cached like the build dir) and served over real HTTP/TCP
#            by scripts/chdb-server.py.
# Environment:
#   CLICKHOUSE_FLAVOR          debian (default) or modern
#   CLICKHOUSE_START_TIMEOUT   seconds to wait for /ping (default 30)
#   LLMA_VENV                  the venv of the modern flavour (default /var/cache/llma-sentiment/venv)
#   CLICKHOUSE_TLS_CERT, CLICKHOUSE_TLS_KEY
#                              PEM certificate and key: the server also serves HTTPS on a free
#                              port; `start` then also prints CLICKHOUSE_HTTPS_PORT and
#                              CLICKHOUSE_HTTPS_URL=https://127.0.0.1:PORT
#   CLICKHOUSE_TLS_CA          with the two above: HTTPS clients must present a certificate
#                              signed by this CA (mutual TLS). Debian flavour only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=clickhouse.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

# Command that runs the server (an array: the single-binary build is `clickhouse server`).
SERVER_CMD=()
[ -z "${CLICKHOUSE_SERVER_BIN:-}" ] || SERVER_CMD=("$CLICKHOUSE_SERVER_BIN")

find_server() {
    if [ ${#SERVER_CMD[@]} -gt 0 ]; then return 0; fi
    if [ -x /usr/sbin/clickhouse-server ]; then
        SERVER_CMD=(/usr/sbin/clickhouse-server)
    elif command -v clickhouse-server >/dev/null 2>&1; then
        SERVER_CMD=("$(command -v clickhouse-server)")
    elif command -v clickhouse >/dev/null 2>&1; then
        SERVER_CMD=("$(command -v clickhouse)" server)
    else
        return 1
    fi
}

FLAVOR="${CLICKHOUSE_FLAVOR:-debian}"
VENV="${LLMA_VENV:-/var/cache/llma-sentiment/venv}"
MODERN_REQUIREMENTS="$HERE/requirements-clickhouse.txt"

# The pinned version: the line `chdb-core==X` of the requirements file.
modern_version() { sed -n 's/^chdb-core==//p' "$MODERN_REQUIREMENTS"; }

modern_installed() {
    [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null)" = "$(modern_version)" ]
}

cmd_install_modern() {
    if modern_installed; then
        echo "clickhouse.sh: chdb-core $(modern_version) already installed in $VENV" >&2
        return 0
    fi
    "$HERE/venv.sh" >/dev/null
    # --no-deps: the server needs none of the package's dataframe dependencies (pandas, pyarrow).
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps -r "$MODERN_REQUIREMENTS" >&2
    modern_installed || die "chdb-core $(modern_version) did not install into $VENV"
}

cmd_install() {
    if [ "$FLAVOR" = modern ]; then cmd_install_modern; return; fi
    if find_server && command -v clickhouse-client >/dev/null 2>&1; then
        echo "clickhouse.sh: already installed (${SERVER_CMD[*]})" >&2
        return 0
    fi
    apt_install clickhouse-server clickhouse-client
    # The package's postinst may try to start the system service; no systemd here, and
    # policy-rc.d usually denies it. Make sure no system-wide instance is left on 8123/9000.
    if [ -f /var/run/clickhouse-server/clickhouse-server.pid ]; then
        kill "$(cat /var/run/clickhouse-server/clickhouse-server.pid)" 2>/dev/null || true
    fi
    find_server || die "installation did not provide clickhouse-server"
}

# The HTTPS listener and its certificate (the TLS mode), or nothing.
tls_config() {
    local https="$1"
    [ -n "$https" ] || return 0
    local verify=none ca=""
    if [ -n "${CLICKHOUSE_TLS_CA:-}" ]; then
        verify=strict
        ca="<caConfig>$CLICKHOUSE_TLS_CA</caConfig>"
    fi
    cat <<EOF
    <https_port>$https</https_port>
    <openSSL>
        <server>
            <certificateFile>$CLICKHOUSE_TLS_CERT</certificateFile>
            <privateKeyFile>$CLICKHOUSE_TLS_KEY</privateKeyFile>
            $ca
            <verificationMode>$verify</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
EOF
}

write_config() {
    local dir="$1" http="$2" tcp="$3"
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
    cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Generated by scripts/clickhouse.sh for a throwaway test server. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <!-- No interserver_http_port / secure tcp / mysql ports; https only in TLS mode. -->
$(tls_config "$4")
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
    write_users "$dir"
}

# The `default` user without a password, from loopback only (both flavours read this file;
# tests add users to it and restart).
write_users() {
    local dir="$1"
    cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

# The modern server reads config.xml from its working directory; only the ports and the
# users are set, the rest are the server's defaults.
write_modern_config() {
    local dir="$1" http="$2" tcp="$3"
    mkdir -p "$dir/data" "$dir/log"
    cat >"$dir/config.xml" <<EOF
<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <users_config>$dir/users.xml</users_config>
</clickhouse>
EOF
    write_users "$dir"
}

# DIR/run: exec the server of DIR in the foreground (what `start` runs detached, and what a
# test runs to restart a stopped server on the same ports and data).
write_run() {
    local dir="$1"
    if [ "$FLAVOR" = modern ]; then
        printf '#!/bin/sh\ncd %q && exec %q %q %q\n' "$dir" "$VENV/bin/python" "$HERE/chdb-server.py" "$dir/data" >"$dir/run"
    else
        printf '#!/bin/sh\nexec %s--config-file=%q\n' "$(printf '%q ' "${SERVER_CMD[@]}")" "$dir/config.xml" >"$dir/run"
    fi
    chmod +x "$dir/run"
}

cmd_start() {
    case "$FLAVOR" in
        debian) find_server || die "clickhouse-server not installed; run: scripts/clickhouse.sh install" ;;
        modern) modern_installed || die "chdb-core $(modern_version) not installed; run: CLICKHOUSE_FLAVOR=modern scripts/clickhouse.sh install" ;;
        *) die "CLICKHOUSE_FLAVOR must be debian or modern, not $FLAVOR" ;;
    esac
    local dir
    dir="$(prepare_dir "${1:-}")"

    local timeout="${CLICKHOUSE_START_TIMEOUT:-30}"
    local http tcp pid https=""
    if [ -n "${CLICKHOUSE_TLS_CERT:-}${CLICKHOUSE_TLS_KEY:-}" ]; then
        [ "$FLAVOR" = debian ] || die "TLS mode (CLICKHOUSE_TLS_CERT/KEY) is served by the debian flavour only"
        [ -r "${CLICKHOUSE_TLS_CERT:-}" ] && [ -r "${CLICKHOUSE_TLS_KEY:-}" ] \
            || die "TLS mode needs both CLICKHOUSE_TLS_CERT and CLICKHOUSE_TLS_KEY, readable"
    fi
    # Ports are picked free and then bound by the server a moment later; on the rare race
    # with another process, retry with new ports.
    for _ in 1 2 3; do
        http="$(free_port)"
        tcp="$(free_port)"
        [ "$http" != "$tcp" ] || continue
        if [ -n "${CLICKHOUSE_TLS_CERT:-}" ]; then
            https="$(free_port)"
            [ "$https" != "$http" ] && [ "$https" != "$tcp" ] || continue
        fi
        if [ "$FLAVOR" = modern ]; then
            write_modern_config "$dir" "$http" "$tcp"
        else
            write_config "$dir" "$http" "$tcp" "$https"
        fi
        write_run "$dir"
        : >"$dir/log/stdout.log"
        # Runs fine as root (18.16 has no owner check). setsid: own process group, so a ^C on
        # the caller's terminal does not hit it and `stop` controls it alone.
        setsid "$dir/run" </dev/null >>"$dir/log/stdout.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        local deadline=$((SECONDS + timeout))
        while [ $SECONDS -lt $deadline ]; do
            if ! pid_alive "$pid"; then break; fi
            if [ "$(curl -s --max-time 2 "http://127.0.0.1:$http/ping" 2>/dev/null)" = "Ok." ] \
                && { [ -z "$https" ] || https_listening "$https"; }; then
                {
                    echo "CLICKHOUSE_URL=http://127.0.0.1:$http"
                    echo "CLICKHOUSE_HTTP_PORT=$http"
                    echo "CLICKHOUSE_TCP_PORT=$tcp"
                    if [ -n "$https" ]; then
                        echo "CLICKHOUSE_HTTPS_PORT=$https"
                        echo "CLICKHOUSE_HTTPS_URL=https://127.0.0.1:$https"
                    fi
                    echo "CLICKHOUSE_PID=$pid"
                    echo "CLICKHOUSE_FLAVOR=$FLAVOR"
                } >"$dir/env"
                cat "$dir/env"
                return 0
            fi
            sleep 0.2
        done
        retry_start "$pid" "$timeout" 2 'address already in use|Net Exception: Address' "$dir/log/"*.log || break
    done
    start_failed ClickHouse "$dir" "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" "$dir/log/clickhouse-server.log"
}

# The HTTPS listener accepts connections (whether a handshake succeeds is the client's to
# judge: with mutual TLS a client without a certificate is refused).
https_listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

server_main "$@"
