# kbchat app image (compose.yaml builds it). CPU torch for the bundled local embedder; with
# KBCHAT_EMBEDDING_BASE_URL set the replicas never load it (docs/scaling.md).
FROM python:3.11-slim-bookworm

# OCR (Tesseract with the English, Chinese, Japanese and Korean packs) and Office conversion, as
# scripts/install.sh installs them on a Debian host.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-tra tesseract-ocr-chi-sim tesseract-ocr-jpn \
        tesseract-ocr-kor libreoffice-core libreoffice-writer libreoffice-impress libreoffice-calc \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    TOKENIZERS_PARALLELISM=false PIP_NO_CACHE_DIR=1
COPY pyproject.toml constraints.txt README.md ./
COPY kbchat ./kbchat
# The CPU build of torch first, so the sentence-transformers dependency does not pull the CUDA one.
RUN pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && pip install -q -c constraints.txt ".[postgresql]"
COPY app.py chainlit.md chainlit_zh-TW.md ./
COPY .chainlit ./.chainlit
COPY public ./public
COPY personas ./personas

RUN useradd --create-home --uid 1000 kbchat && mkdir -p /srv/kbchat/shared /srv/kbchat/knowledge \
    && chown -R kbchat /srv/kbchat /app
USER kbchat
EXPOSE 8000
CMD ["chainlit", "run", "app.py", "--headless", "--host", "0.0.0.0", "--port", "8000"]
