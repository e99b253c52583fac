#!/usr/bin/env bash
# Install kbchat with its test extras, Debian's chromium for the browser tests, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk) >/dev/null
fi
# nginx for tests/test_deploy.py: deploy/nginx.conf is checked by `nginx -t` and run in front of two backends
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  (apt-get update -qq && apt-get install -y -qq nginx-light) >/dev/null
fi
bash scripts/install.sh dev
. .venv/bin/activate
exec python -m pytest "$@"
