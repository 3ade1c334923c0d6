#!/usr/bin/env bash
# promtool, from Debian's prometheus package, to check the alert rules in deploy/prometheus.
#
# Usage:
#   scripts/promtool.sh install   apt-install prometheus (it brings promtool) if promtool is missing;
#                                 stops the packaged server if the package started one
#   scripts/promtool.sh check     promtool check rules + test rules on deploy/prometheus
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=promtool.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

cmd_install() {
    if command -v promtool >/dev/null 2>&1; then
        return 0
    fi
    apt_install prometheus
    # Nothing but our own servers should listen: where the package's service started, stop it.
    if [ -f /run/prometheus/prometheus.pid ]; then
        kill "$(cat /run/prometheus/prometheus.pid)" 2>/dev/null || true
    fi
    pkill -x prometheus 2>/dev/null || true
    command -v promtool >/dev/null 2>&1 || die "installation did not provide promtool"
}

cmd_check() {
    command -v promtool >/dev/null 2>&1 || die "promtool not installed; run: scripts/promtool.sh install"
    local rules="$HERE/../deploy/prometheus"
    promtool check rules "$rules/alerts.yml"
    (cd "$rules" && promtool test rules alerts_test.yml)
}

case "${1:-}" in
    install) cmd_install ;;
    check) cmd_check ;;
    *) echo "usage: $0 install | check" >&2; exit 2 ;;
esac
