#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when it is missing (Playwright's own browser
# download cannot work here). Needs root or passwordless sudo; otherwise says so and exits 1.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ensure-chromium: /usr/bin/chromium missing and not root: install the 'chromium' package" >&2; exit 1
  fi
fi
command -v apt-get >/dev/null || { echo "ensure-chromium: no apt-get on this machine" >&2; exit 1; }
echo "ensure-chromium: installing Debian's chromium (once)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
