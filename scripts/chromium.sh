#!/usr/bin/env bash
# The browser the page tests drive (host/tests/view_browser.rs): Debian's headless-capable
# Chromium and its WebDriver server, plus the Python WebDriver client in the project's venv.
#
# Usage:
#   scripts/chromium.sh install   apt-install chromium + chromium-driver if missing, and
#                                 pip-install scripts/requirements-browser.txt into the venv;
#                                 prints CHROMIUM=... and CHROMEDRIVER=... on stdout
#
# Idempotent: instant when both are there (apt is not asked again; venv.sh keeps a stamp).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=chromium.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

cmd_install() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        apt_install chromium chromium-driver
    fi
    command -v chromium >/dev/null 2>&1 || die "installation did not provide chromium"
    command -v chromedriver >/dev/null 2>&1 || die "installation did not provide chromedriver"
    "$HERE/venv.sh" "$HERE/requirements-browser.txt" >/dev/null
    echo "CHROMIUM=$(command -v chromium)"
    echo "CHROMEDRIVER=$(command -v chromedriver)"
}

case "${1:-}" in
    install) cmd_install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
