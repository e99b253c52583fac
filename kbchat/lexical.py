"""BM25 keyword index over passages (the only tantivy importer).

Text is analysed in Python (lower-cased Latin words, CJK character bigrams) and indexed pre-tokenised.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterable

import tantivy

from kbchat.errors import StoreBusy

_CJK_RANGES = (
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\u1100-\u11ff"  # Hangul Jamo
)
_TOKEN = re.compile(f"([{_CJK_RANGES}]+)|([^\\W_]+)")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MAX_TOKEN = 40
# Experiment switch (bigram | words | both | both3 | bothp), t2s on/off.
MODE = "bigram"
T2S = False

_t2s = None
_jieba = None


def _to_simplified(text: str) -> str:
    global _t2s
    if _t2s is None:
        import opencc

        _t2s = opencc.OpenCC("t2s")
    return _t2s.convert(text)


def _words(run: str) -> list[str]:
    global _jieba
    if _jieba is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba = jieba
    return [w for w in _jieba.cut(run, HMM=True) if w.strip()]


def analyze(text: str) -> list[str]:
    """Tokens for BM25: lower-cased Latin words/numbers; CJK runs as overlapping character bigrams."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if T2S and _HAN.search(text):
        text = _to_simplified(text)
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            if MODE != "words":
                if len(cjk) == 1:
                    out.append(cjk)
                else:
                    out.extend(cjk[i : i + 2] for i in range(len(cjk) - 1))
            if MODE != "bigram" and _HAN.search(cjk):
                ws = _words(cjk)
                if MODE == "words":
                    out.extend(ws)
                elif MODE == "both3":
                    out.extend(w for w in ws if len(w) >= 3)
                elif MODE == "both":
                    out.extend(w for w in ws if len(w) >= 2)
                elif MODE == "bothp":
                    out.extend("~" + w for w in ws if len(w) >= 2)
        elif word and len(word) <= _MAX_TOKEN:
            out.append(word)
    return out


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_text_field("doc", stored=False, tokenizer_name="raw")
    sb.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
    return sb.build()


class LexicalIndex:
    """A persisted tantivy index of passages; holds the single writer while open."""

    def __init__(self, path: Path):
        """Create or open the index in folder ``path``; raises StoreBusy if another process writes it."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._schema = _schema()
        exists = tantivy.Index.exists(str(self.path))
        self._index = tantivy.Index(self._schema, path=str(self.path), reuse=exists)
        # The writer (and its lock) is taken only while adding or deleting, so another process
        # (the CLI beside a running app) can always search, and write when nobody else is writing.
        self._writer = None

    def _write(self):
        """Take the single writer; raises StoreBusy if another process holds it."""
        try:
            return self._index.writer(heap_size=15_000_000, num_threads=1)
        except Exception as exc:  # tantivy raises ValueError on LockBusy
            if "lock" in str(exc).lower():
                raise StoreBusy(
                    f"the keyword index at {self.path} is being written by another kbchat process; "
                    "try again when it has finished"
                ) from exc
            raise

    @staticmethod
    def _release(writer) -> None:
        try:
            writer.wait_merging_threads()  # also drops the writer and its lock
        except Exception:
            pass

    def add(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Index (passage_id, doc_hash, text) rows and commit once."""
        docs = [tantivy.Document(id=pid, doc=doc_hash, body=" ".join(analyze(text)))
                for pid, doc_hash, text in rows]
        if not docs:
            return
        writer = self._write()
        try:
            for d in docs:
                writer.add_document(d)
            writer.commit()
        finally:
            self._release(writer)
        self._index.reload()

    def delete_doc(self, doc_hash: str) -> None:
        """Remove every passage of one document and commit."""
        writer = self._write()
        try:
            writer.delete_documents_by_term("doc", doc_hash)
            writer.commit()
        finally:
            self._release(writer)
        self._index.reload()

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 search: OR of the query's analysed terms; (passage_id, score) best first."""
        terms = list(dict.fromkeys(analyze(query)))
        if not terms or k <= 0:
            return []
        q = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "body", t))
                for t in terms
            ]
        )
        self._index.reload()
        searcher = self._index.searcher()
        result = searcher.search(q, k)
        return [(searcher.doc(addr)["id"][0], float(score)) for score, addr in result.hits]

    def __len__(self) -> int:
        """Number of indexed passages."""
        self._index.reload()
        return self._index.searcher().num_docs

    def close(self) -> None:
        """Nothing to release: the writer is held only during add/delete."""
        self._writer = None
