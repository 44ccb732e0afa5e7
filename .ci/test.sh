#!/usr/bin/env bash
# The whole test suite, from nothing: finds redis-server, redis-cli and
# openssl, or installs them (Debian/Ubuntu, as root) when they are missing,
# then runs every test. The tests start and kill their own redis-server
# processes (single nodes, a 3+3 cluster, a TLS server) on free ports, and
# make their TLS certificates with openssl.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_SERVER:-}" ]; then
  missing+=(redis-server)
fi
if ! command -v redis-cli >/dev/null 2>&1 && [ -z "${REDIS_SERVER:-}" ]; then
  missing+=(redis-tools)
fi
if ! command -v openssl >/dev/null 2>&1; then
  missing+=(openssl)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}: installing Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}: install them (apt-get install -y redis-server redis-tools openssl," >&2
    echo "brew install redis openssl), or point REDIS_SERVER at redis-server, then run this again." >&2
    exit 1
  fi
fi
# The tests start their own servers; a packaged service is not needed.
redis-server --version

cargo test --workspace
cargo test --features metrics --test metrics
# Another framework through a response newtype: its own workspace, this target.
cargo test --manifest-path examples/actix/Cargo.toml --target-dir target
