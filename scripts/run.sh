#!/usr/bin/env bash
# Install kbchat if needed, then start the Chainlit app on http://127.0.0.1:${KBCHAT_PORT:-8000}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False
# CI=true would switch `chainlit run` into its CI mode (fake OpenAI key): never wanted here.
exec env -u CI -u WATCH -u DEBUG -u HEADLESS -u NO_CACHE \
  chainlit run app.py --headless --host "${KBCHAT_HOST:-127.0.0.1}" --port "${KBCHAT_PORT:-8000}" "$@"
