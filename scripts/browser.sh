#!/usr/bin/env bash
# A Chromium for the console's browser tests (Playwright drives it): the system's when there is one, else Playwright's
# own download (a laptop with the internet), else Debian's package (apt-get, as root: these machines cannot fetch
# Playwright's). Idempotent: does nothing once one is there. tests/helpers/browser.py finds the same ones.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "browser: $(command -v "$name")"
        exit 0
    fi
done
if timeout 300 .venv/bin/python -m playwright install chromium >/dev/null 2>&1; then
    echo "browser: Playwright's Chromium"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q chromium >/dev/null && echo "browser: $(command -v chromium) (apt-get)" && exit 0
fi
echo "no Chromium for the browser tests: install one (apt-get install chromium, or .venv/bin/python -m playwright install chromium)" >&2
exit 1
