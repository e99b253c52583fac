"""Domain errors of the core, each with a one-line, user-facing message.

KbchatError
├── ConfigError            bad settings or persona files
├── IngestError            one file could not be indexed (the file name and the reason)
├── EmbedderMismatch       a collection was built with another embedding model
├── StoreBusy              another process holds the write lock of a collection
├── FinetuneError          a fine-tuning step cannot go on (too few pairs, not a causal LM, no chat
│                          template, out of memory, the finetune extra missing; kbchat.finetune)
├── ModelServerError       an embedding / reranking server is down, refuses the key, lacks the model,
│                          times out or answers with vectors of the wrong dimension (kbchat.search.remote)
└── LLMError               the language model could not answer; ``hits`` keeps what was retrieved
    ├── LLMUnreachable     connection refused / DNS / network
    ├── LLMAuthError       401 / 403
    ├── LLMModelNotFound   404 or "model not found"
    ├── LLMTimeout         no answer in time
    └── LLMStreamCut       the stream ended before the answer was complete
Edges translate them: a chat message in kbchat/ui/ (kbchat.messages.error_text), exit 1 without traceback in the CLI.

An error may carry ``key`` and ``params``: a line of ``kbchat.messages`` that says the same in the
user's UI language (``kbchat.messages.error_text``); ``str(err)`` stays the English line.
"""

from __future__ import annotations


class KbchatError(Exception):
    """Base class; ``str(err)`` is one line a user can read."""

    def __init__(self, message: str, *, key: str | None = None, params: dict | None = None):
        super().__init__(" ".join(str(message).split()))
        self.key = key
        self.params = dict(params or {})

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(KbchatError):
    """Invalid configuration (settings, persona YAML)."""


class IngestError(KbchatError):
    """A file could not be ingested. ``file`` is its display name, ``reason`` the short cause."""

    def __init__(self, file: str, reason: str):
        self.file = file
        self.reason = reason
        super().__init__(f"{file}: {reason}")


class EmbedderMismatch(KbchatError):
    """The collection records another embedding model or dimension than the one in use."""


class StoreBusy(KbchatError):
    """Another process is writing to the same collection."""


class ModelServerError(KbchatError):
    """An embedding or reranking server failed; the message names the server, the cause and the setting."""


class LLMError(KbchatError):
    """The language model failed. ``hits`` holds the retrieved passages for a search-only answer."""

    def __init__(self, message: str, hits: list | None = None, *, key: str | None = None,
                 params: dict | None = None):
        super().__init__(message, key=key, params=params)
        self.hits = list(hits or [])


class LLMUnreachable(LLMError):
    """The endpoint could not be reached."""


class LLMAuthError(LLMError):
    """The endpoint refused the API key."""


class LLMModelNotFound(LLMError):
    """The endpoint does not serve the configured model."""


class LLMTimeout(LLMError):
    """The endpoint did not answer in time."""


class LLMStreamCut(LLMError):
    """The answer stream stopped before it was complete."""


class FinetuneError(KbchatError):
    """A fine-tuning step cannot go on: too few approved pairs, a base folder that is not a causal LM, a
    tokenizer without a chat template, out of memory, a missing optional package (kbchat.finetune)."""
