#!/usr/bin/env bash
# Debian's Chromium for the portal's browser tests (Playwright drives it; `playwright install`
# downloads a browser build, which this machine cannot fetch). Idempotent: returns at once when
# /usr/bin/chromium is there.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# An old or empty package list may not know chromium yet.
$SUDO apt-get install -y --no-install-recommends chromium \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium; }
/usr/bin/chromium --version
