#!/usr/bin/env bash
# Install kbchat into ./.venv. torch goes in first so pip takes the CPU build (a local wheel on
# this machine type) instead of fetching the multi-GB CUDA build as a sentence-transformers dep.
# constraints.txt pins every version that was tested together, so pip never backtracks.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

# System tools for scanned pages (Tesseract + the English, Chinese, Japanese and Korean packs) and
# Office files (LibreOffice headless), installed with apt-get on Debian/Ubuntu when missing.
sys_pkgs="tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-tra tesseract-ocr-chi-sim tesseract-ocr-jpn
tesseract-ocr-kor libreoffice-core libreoffice-writer libreoffice-impress libreoffice-calc"
missing=""
for p in $sys_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="-"; fi
  if [ "$sudo" = "-" ]; then
    echo "kbchat: OCR / Office support needs: apt-get install$missing (run it as root)" >&2
  else
    ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing) >/dev/null \
      || echo "kbchat: could not install$missing; scanned pages / Office files will be skipped with a note" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
stamp=".venv/.kbchat-installed${extra:+-$extra}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  pip install -q "torch==2.13.0"   # resolves to 2.13.0+cpu from the machine's local wheel folder
  pip install -q -c constraints.txt -e ".${extra:+[$extra]}"
  touch "$stamp"
fi
