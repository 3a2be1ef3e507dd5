#!/usr/bin/env bash
# Install the headless browser the credential-form browser test drives (tests/test_forms_browser.py).
# Playwright is pointed at Debian's own `chromium` package instead of `playwright install`: that keeps
# every download on the Debian/PyPI/npm registries, and apt keeps the browser patched with the system.
# Idempotent: when /usr/bin/chromium exists, nothing is installed and only the version is checked.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "error: $CHROMIUM is missing and this script is not running as root, so it cannot apt-get it." >&2
        echo "       Install Debian's chromium package yourself, then re-run:" >&2
        echo "         sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" >&2
        exit 1
    fi
    echo "installing Debian's chromium package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium
fi

# A broken install (missing shared library, say) dies here rather than in the middle of a test.
# stderr is dropped on success: Debian's launcher sources /etc/chromium.d/dev-shm, which prints a
# harmless "[: unexpected operator" when /dev/shm is mounted twice (as in some containers).
if ! version="$("$CHROMIUM" --version 2>/dev/null)" || [[ "$version" != Chromium* ]]; then
    echo "error: $CHROMIUM --version failed:" >&2
    "$CHROMIUM" --version >&2 || true
    exit 1
fi
echo "browser: $CHROMIUM ($version)"
