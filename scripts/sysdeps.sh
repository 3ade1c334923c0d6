#!/usr/bin/env bash
# The Debian packages a build of the host links against, installed when missing:
# libssl-dev (librdkafka's TLS and SCRAM for `schedule`, which it does through OpenSSL
# only) and pkg-config (how openssl-sys finds it). gcc, make and perl (librdkafka's own
# build) come with the Rust toolchain's usual build-essential.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=sysdeps.sh
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; then
    exit 0
fi
echo "sysdeps.sh: installing libssl-dev and pkg-config (librdkafka's TLS)" >&2
apt_install libssl-dev pkg-config
pkg-config --exists openssl || die "libssl-dev installed, but pkg-config does not find openssl"
