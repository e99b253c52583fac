"""BM25 keyword index over passages (the only tantivy importer).

Text is analysed in Python (lower-cased Latin words; Chinese converted to Simplified and segmented by jieba;
kana/Hangul as character bigrams) and indexed pre-tokenised.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
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
# A Latin/digit word stops where CJK begins: "\\w" also matches Han characters, so "GPU與雲端主機" or
# "108年10月上線" used to become one token that matched nothing.
_TOKEN = re.compile(f"([{_CJK_RANGES}]+)|((?:(?![{_CJK_RANGES}])[^\\W_])+)")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile("[\u3040-\u30ff\uac00-\ud7af\u1100-\u11ff]")
_MAX_TOKEN = 40
# What analyze() produces; an index written by another version is rebuilt from the catalog on open
# (1: CJK character bigrams; 2: t2s + jieba words, Latin words split from CJK).
ANALYZER_VERSION = "2"
_MARKER = "kbchat-analyzer"
# Present while a window's adds are held uncommitted (LexicalIndex.window): an index opened with it is stale.
_PENDING = "kbchat-pending-commit"

_t2s = None
_jieba = None
_load_lock = threading.Lock()


_warming: threading.Thread | None = None


def warm_up() -> None:
    """Load OpenCC's tables and jieba's dictionary (1-2 s the first time in a process) in a daemon thread,
    once per process, so that the first document written or question searched does not wait for them while
    the process is still loading its embedding model (Store and PgStore call this when opened)."""
    global _warming
    with _load_lock:
        if _warming is not None or (_t2s is not None and _jieba is not None):
            return
        _warming = threading.Thread(target=analyze, args=("預熱 warm-up 预热",), name="kbchat-analyzer-warm-up",
                                    daemon=True)
    _warming.start()


def to_simplified(text: str) -> str:
    """Traditional Chinese characters and phrases as Simplified (OpenCC t2s); other text unchanged."""
    global _t2s
    if _t2s is None:
        with _load_lock:
            if _t2s is None:
                import opencc

                _t2s = opencc.OpenCC("t2s")
    return _t2s.convert(text)


_s2t = None


def chinese_script(text: str) -> str | None:
    """"Hant" or "Hans" when ``text`` holds characters of only one Chinese script (OpenCC: characters that
    t2s or s2t would change), else None (no Han, both, or only characters the two scripts share)."""
    global _s2t
    han = "".join(_HAN.findall(text))
    if not han:
        return None
    if _s2t is None:
        with _load_lock:
            if _s2t is None:
                import opencc

                _s2t = opencc.OpenCC("s2t")
    trad = sum(a != b for a, b in zip(han, to_simplified(han)))
    simp = sum(a != b for a, b in zip(han, _s2t.convert(han)))
    if trad > simp:
        return "Hant"
    if simp > trad:
        return "Hans"
    return None


def chinese_words(run: str) -> list[str]:
    """jieba's words of a run of Han characters (dictionary + HMM for unknown words)."""
    global _jieba
    if _jieba is None:
        with _load_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()  # ~1 s the first time in a process (then a cached prefix dict)
                _jieba = jieba
    return [w for w in _jieba.cut(run, HMM=True) if w.strip()]


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def analyze(text: str) -> list[str]:
    """Tokens for BM25: lower-cased Latin words/numbers; Chinese as jieba words of its Simplified form
    (so zh-TW and zh-CN text meet); Japanese kana and Korean runs as character bigrams."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if _HAN.search(text):
        text = to_simplified(text)
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            if _KANA_HANGUL.search(cjk):  # jieba is a Chinese segmenter
                out.extend(_bigrams(cjk))
            else:
                out.extend(chinese_words(cjk))
        elif word and len(word) <= _MAX_TOKEN:
            out.append(word)
    return out


# Question words and particles: in a question ("...的公式是什么？", "...是多少？") they match long passages
# full of the same function words and outvote the one named thing asked about. Queries are already
# Simplified (analyze converts), so one list serves zh-CN and zh-TW.
_QUERY_STOP_CHARS = set("的了吗呢吧么啊呀哪怎")
_QUERY_STOP = {
    "什么", "多少", "如何", "哪些", "哪个", "为什么", "是否", "请问", "怎样", "怎么", "可以", "一下",
    "这个", "那个", "这本", "一个",
}


def analyze_query(text: str) -> list[str]:
    """Tokens of a question: analyze() without CJK question words and particles (when others remain)."""
    tokens = analyze(text)
    kept = [t for t in tokens
            if not (_HAN.match(t) and (t in _QUERY_STOP or any(ch in _QUERY_STOP_CHARS for ch in t)))]
    return kept or tokens


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
        if not exists:
            self._write_marker()
        # The writer (and its lock) is taken only while adding or deleting, so another process
        # (the CLI beside a running app) can always search, and write when nobody else is writing.
        self._writer = None
        self._win = None  # the writer windows hold (window()), used by add() and delete_doc() meanwhile
        self._depth = 0  # windows open on it
        # Every write of this process goes through this lock: a window's writer and a lone add's never overlap.
        self._win_lock = threading.RLock()

    @contextlib.contextmanager
    def window(self):
        """Hold one writer for the adds and deletes of several documents, committed once at the end (an
        ingest window: one commit instead of one per document; each commit also waits for segment merges).
        Until then searches see the index as it was. Windows of several threads of this process share the
        writer: each commits what was added so far when it ends, the last one releases the writer. A marker
        file says a commit is pending: an index opened while it is there (a crash) is stale, so the catalog
        rebuilds it. What was added is committed even when a window ends with an error (those documents'
        catalog rows may be active already)."""
        with self._win_lock:
            if self._win is None:
                self._win = self._write()
                (self.path / _PENDING).write_text("1\n", encoding="utf-8")
            self._depth += 1
        try:
            yield
        finally:
            with self._win_lock:
                self._depth -= 1
                writer = self._win
                try:
                    writer.commit()
                finally:
                    if self._depth == 0:
                        self._win = None
                        self._release(writer)
                        (self.path / _PENDING).unlink(missing_ok=True)
                self._index.reload()

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

    def _write_marker(self) -> None:
        (self.path / _MARKER).write_text(ANALYZER_VERSION + "\n", encoding="utf-8")

    def stale(self) -> bool:
        """Whether the index holds passages analysed by another analyzer version, or lacks a window's
        passages (a crash before its commit): rebuild it."""
        if (self.path / _PENDING).exists():
            return True
        try:
            version = (self.path / _MARKER).read_text(encoding="utf-8").strip()
        except OSError:
            version = "1"  # written before the marker existed
        if version == ANALYZER_VERSION:
            return False
        if len(self) == 0:
            self._write_marker()
            return False
        return True

    def rebuild(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Replace every indexed passage with (passage_id, doc_hash, text) ``rows``, in one commit."""
        docs = [tantivy.Document(id=pid, doc=doc_hash, body=" ".join(analyze(text)))
                for pid, doc_hash, text in rows]
        with self._win_lock:
            writer = self._write()
            try:
                writer.delete_all_documents()
                for d in docs:
                    writer.add_document(d)
                writer.commit()
            finally:
                self._release(writer)
            self._index.reload()
            self._write_marker()
            (self.path / _PENDING).unlink(missing_ok=True)

    def add(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Index (passage_id, doc_hash, text) rows and commit once (at a window's end inside one)."""
        docs = [tantivy.Document(id=pid, doc=doc_hash, body=" ".join(analyze(text)))
                for pid, doc_hash, text in rows]
        if not docs:
            return
        self._apply(lambda w: [w.add_document(d) for d in docs])

    def delete_doc(self, doc_hash: str) -> None:
        """Remove every passage of one document and commit (at a window's end inside one)."""
        self._apply(lambda w: w.delete_documents_by_term("doc", doc_hash))

    def _apply(self, write) -> None:
        """Run ``write(writer)``: on the open window's writer (committed when it ends), or on a writer of its
        own, committed now."""
        with self._win_lock:
            if self._win is not None:
                write(self._win)
                return
            writer = self._write()
            try:
                write(writer)
                writer.commit()
            finally:
                self._release(writer)
            self._index.reload()

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 search: OR of the query's analysed terms; (passage_id, score) best first."""
        terms = list(dict.fromkeys(analyze_query(query)))
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
        # Equal scores (passages with the same words) go to the smaller id, as the PostgreSQL store ranks them
        # (pgpostings.ranked): tantivy orders them by where they sit in its segments, which a rebuild changes.
        # A tie that the limit cuts through is read whole first (a few more hits, doubled until it ends).
        limit = k + 16
        while True:
            hits = searcher.search(q, limit).hits
            if len(hits) < limit or hits[-1][0] != hits[k - 1][0]:
                break
            limit *= 2
        found = [(searcher.doc(addr)["id"][0], float(score)) for score, addr in hits]
        found.sort(key=lambda x: (-x[1], x[0]))
        return found[:k]

    def doc_freqs(self, terms: list[str]) -> tuple[int, dict[str, int]]:
        """(indexed passages, {term: passages holding it})."""
        self._index.reload()
        searcher = self._index.searcher()
        return searcher.num_docs, {t: searcher.doc_freq("body", t) for t in terms}

    def __len__(self) -> int:
        """Number of indexed passages."""
        self._index.reload()
        return self._index.searcher().num_docs

    def close(self) -> None:
        """Nothing to release: the writer is held only during add/delete."""
        self._writer = None
