#!/usr/bin/env bash
# Debian's Chromium for the dashboard tests (test/dashboard*.test.ts drive it with playwright-core
# at /usr/bin/chromium; playwright's own browser download does not work here). Skips when present.
set -euo pipefail
if [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; then
  /usr/bin/chromium --version
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium
/usr/bin/chromium --version
