#!/usr/bin/env bash
# Make sure there is a Chromium the driver can use, in the driver's own order of preference:
# SORA_BROWSER_PATH, Playwright's Chromium, a system chromium/google-chrome.
# Playwright's download does not work on every machine (closed networks, Debian as root is
# better served by its own package), so Debian's package is used when we are root on Debian.
# Also Xvfb, for headed runs on a machine without a screen (`login` is tested under it).
set -euo pipefail
py=${1:-.venv/bin/python}
debian_root=false
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && grep -qx 'ID=debian' /etc/os-release; then
    debian_root=true
fi

if ! command -v xvfb-run >/dev/null && $debian_root; then
    echo "xvfb: installing Debian's xvfb package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth >/dev/null
fi

if found=$("$py" -m sora_driver.browser 2>/dev/null); then
    echo "browser: $found"
    exit 0
fi
if $debian_root; then
    echo "browser: installing Debian's chromium package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
elif [ "$(id -u)" = 0 ]; then
    "$py" -m playwright install --with-deps chromium
else
    "$py" -m playwright install chromium
fi
echo "browser: $("$py" -m sora_driver.browser)"
