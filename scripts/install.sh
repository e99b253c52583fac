#!/usr/bin/env bash
# Install kbchat into ./.venv. torch goes in first so pip takes the CPU build (a local wheel on
# this machine type) instead of fetching the multi-GB CUDA build as a sentence-transformers dep.
# constraints.txt pins every version that was tested together, so pip never backtracks.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
stamp=".venv/.kbchat-installed${extra:+-$extra}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  pip install -q "torch==2.13.0"   # resolves to 2.13.0+cpu from the machine's local wheel folder
  pip install -q -c constraints.txt -e ".${extra:+[$extra]}"
  touch "$stamp"
fi
