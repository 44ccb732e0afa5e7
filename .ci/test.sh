#!/usr/bin/env bash
# The whole test suite, from nothing: finds redis-server, or installs it
# (Debian/Ubuntu, as root) when it is missing, then runs every test.
# The tests start and kill their own redis-server processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_SERVER:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing: installing Debian's redis-server package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (apt-get install -y redis-server, brew install redis)" >&2
    echo "or point REDIS_SERVER at the binary, then run this again." >&2
    exit 1
  fi
fi
# The tests start their own servers; a packaged service is not needed.
redis-server --version

cargo test --workspace
cargo test --features metrics --test metrics
