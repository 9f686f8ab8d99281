#!/usr/bin/env bash
# Label Studio's own environment, out of the edge install (about 1 GB, a minute): the tests start it on loopback.
# Idempotent: does nothing when .venv-label-studio/bin/label-studio is there. Never run `label-studio` without
# --port: even `label-studio --version` starts a server on 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir="${LABEL_STUDIO_ENV:-.venv-label-studio}"
if [ -x "$env_dir/bin/label-studio" ]; then
    echo "$env_dir: Label Studio already installed"
    exit 0
fi
python3 -m venv "$env_dir"
"$env_dir/bin/pip" install --quiet 'label-studio==1.23.*'
echo "$env_dir: Label Studio installed"
