"""Shared helpers of the bench/ scripts: corpus generation, the naive LangChain pipeline, timing, RSS, tables.

Not a test module and not part of the kbchat package. Every script sets the offline environment first.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "pdf"
QUESTIONS = SHARED / "eval" / "questions-dev.jsonl"
WORK = Path(os.environ.get("KBCHAT_BENCH_DIR", "/tmp/kbchat-bench"))

NAIVE_CHUNK_SIZE, NAIVE_CHUNK_OVERLAP = 1000, 100
NAIVE_NOTE = ("naive pipeline: PyPDFLoader (langchain-community 0.4.2, pypdf 7.1) -> "
              "RecursiveCharacterTextSplitter(1000, 100) -> HuggingFaceEmbeddings from langchain-community "
              "(langchain-huggingface cannot be installed next to huggingface-hub 2.4; the community class "
              "is the same sentence-transformers call) -> langchain-chroma Chroma.from_documents / "
              "similarity_search, same bundled all-MiniLM-L6-v2 model")

import logging  # noqa: E402

logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # pypdf logs every odd font/cmap of the corpus
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated.*")
warnings.filterwarnings("ignore", category=FutureWarning)


# ---------------------------------------------------------------- environment / processes

def child_env(**extra) -> dict:
    """Environment for child processes: offline, no CI mode, no developer KBCHAT_* settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "DEBUG", "WATCH", "HEADLESS", "NO_CACHE", "CHAINLIT_APP_ROOT")
           and not k.startswith("KBCHAT_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tree_rss(pid: int) -> int:
    """RSS in bytes of a process and all its descendants."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) so a phase's own peak can be read (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss() -> int:
    """Peak RSS (VmHWM) of this process in bytes since start or the last reset_peak_rss()."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_line() -> str:
    import platform

    load = os.getloadavg()
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    simd = ",".join(f for f in ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags)
    return (f"machine: {os.cpu_count()} CPUs ({simd or 'no AVX-512/AMX flags'}), Python "
            f"{platform.python_version()}, load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
            "(1/5/15 min)")


# ---------------------------------------------------------------- numbers and tables

def pct(values, q: float) -> float:
    """q-th percentile (0-100), linear interpolation."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    if len(vals) == 1:
        return vals[0]
    pos = (len(vals) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MB"


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-markdown table."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


# ---------------------------------------------------------------- corpora

def corpus_pdfs(folder: Path = CORPUS) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() == ".pdf")


def real_page_texts(folder: Path = CORPUS) -> list[str]:
    """Text of every non-empty page of the real corpus (PyMuPDF)."""
    import pymupdf

    texts = []
    for pdf in corpus_pdfs(folder):
        with pymupdf.open(pdf) as doc:
            for page in doc:
                t = page.get_text().strip()
                if len(t) > 80:
                    texts.append(t)
    return texts


def write_pdf(path: Path, texts: list[str]) -> None:
    """A PDF with one page per text (A4, 8 pt, a CJK-capable built-in font)."""
    import pymupdf

    doc = pymupdf.open()
    for t in texts:
        page = doc.new_page(width=595, height=842)
        for size in (8, 6.5, 5, 4, 3):  # insert_textbox writes nothing when the text does not fit
            if page.insert_textbox(pymupdf.Rect(30, 30, 565, 812), t[:6000], fontsize=size,
                                   fontname="china-s") >= 0:
                break
    doc.save(path, garbage=0, deflate=True)
    doc.close()


def generate_corpus(pages: int, *, pages_per_file: int = 100, seed: int = 0, out: Path | None = None) -> Path:
    """A folder of generated PDFs totalling ``pages`` pages: real corpus pages, shuffled and repeated.

    Cached under WORK by size and seed. Each file holds a different random draw, so no two files share
    a hash (kbchat would skip a duplicate file).
    """
    out = out or WORK / f"gen-{pages}p-s{seed}"
    marker = out / ".complete"
    if marker.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    texts = real_page_texts()
    rng = random.Random(seed)
    left, i = pages, 0
    while left > 0:
        n = min(pages_per_file, left)
        write_pdf(out / f"generated-{i:03d}.pdf", [rng.choice(texts) for _ in range(n)])
        left -= n
        i += 1
    marker.write_text(str(pages))
    return out


def warmup_texts(n: int = 96) -> list[str]:
    """Passages of 40-1,200 characters cut from real pages: a warm-up that meets every sequence length
    (bf16/oneDNN builds kernels per input shape on first use)."""
    pages = real_page_texts()
    rng = random.Random(7)
    out = []
    for i in range(n):
        t = " ".join(rng.choice(pages).split())
        length = 40 + (i * 1160) // max(1, n - 1)
        start = rng.randrange(max(1, len(t) - length))
        out.append(t[start:start + length])
    return out


def count_pages(pdfs: list[Path]) -> int:
    import pymupdf

    n = 0
    for p in pdfs:
        with pymupdf.open(p) as d:
            n += d.page_count
    return n


# ---------------------------------------------------------------- the naive LangChain pipeline

def naive_embeddings():
    """HuggingFaceEmbeddings on the bundled all-MiniLM-L6-v2 folder (tutorial defaults otherwise)."""
    from langchain_community.embeddings import HuggingFaceEmbeddings

    from kbchat.settings import Settings

    return HuggingFaceEmbeddings(model_name=Settings().embedder_path())


def naive_load_split(pdfs: list[Path]):
    """PyPDFLoader per file, then RecursiveCharacterTextSplitter(1000, 100): (pages, splits)."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = []
    for p in pdfs:
        docs.extend(PyPDFLoader(str(p)).load())
    splitter = RecursiveCharacterTextSplitter(chunk_size=NAIVE_CHUNK_SIZE, chunk_overlap=NAIVE_CHUNK_OVERLAP)
    return docs, splitter.split_documents(docs)


def naive_ingest(pdfs: list[Path], emb, persist_dir: Path, collection: str = "naive"):
    """The cookbook pipeline end to end: returns (pages, passages, vectorstore)."""
    from langchain_chroma import Chroma

    docs, splits = naive_load_split(pdfs)
    db = Chroma.from_documents(splits, emb, persist_directory=str(persist_dir), collection_name=collection)
    return len(docs), len(splits), db


def naive_hits(db, question: str, k: int = 5) -> list[dict]:
    """similarity_search results in the {source, page, text} form kbchat.evaluate.score reads."""
    out = []
    for d in db.similarity_search(question, k=k):
        m = d.metadata or {}
        out.append({"source": Path(str(m.get("source", ""))).name, "page": int(m.get("page", 0)) + 1,
                    "text": d.page_content})
    return out


# ---------------------------------------------------------------- kbchat

def kbchat_settings(**overrides):
    from kbchat.settings import Settings

    return Settings(**overrides)


def kbchat_ingest(pdfs: list[Path], embedder, data_dir: Path, settings, multilingual=None) -> tuple[int, int, object]:
    """What `kbchat ingest` does, in-process with a loaded embedder (and the multilingual encoder, which
    `kbchat ingest` runs by default): (pages, passages, store)."""
    from kbchat.documents.passages import read_ahead
    from kbchat.documents.pdf import read_pdf
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.base import add_many

    store = EmbeddedStore(data_dir, embedder, multilingual)
    coll = store.collection(settings.shared_collection)
    pages = passages = 0

    def read(p):
        return read_pdf(p, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)

    items = ((str(Path(p).resolve()), doc) for p, doc in read_ahead(pdfs, read))  # as the CLI does
    for _key, doc, res in add_many(coll, items, origin="cli"):
        if isinstance(res, Exception):
            raise res
        pages += doc.pages
        if res.status in ("added", "replaced"):
            passages += len(doc.passages)
    return pages, passages, store


def kbchat_passage_texts(pdfs: list[Path], settings) -> list[str]:
    """What kbchat embeds for these PDFs: each passage's retrieval text (context line + text)."""
    from kbchat.documents.pdf import read_pdf
    from kbchat.documents.passages import retrieval_text

    texts = []
    for p in pdfs:
        texts += [retrieval_text(x) for x in read_pdf(p, chunk_size=settings.chunk_size,
                                                      chunk_overlap=settings.chunk_overlap).passages]
    return texts


def load_questions() -> list[dict]:
    from kbchat.evaluate import load_questions as lq

    return lq(QUESTIONS)


def score(questions, results, k=5) -> dict:
    """kbchat.evaluate.score (same logic as shared/eval/score.py)."""
    from kbchat.evaluate import score as s

    return s(questions, results, k)


def now() -> float:
    return time.perf_counter()


_SAFE = re.compile(r"[^a-zA-Z0-9]+")


def slug(s: str) -> str:
    return _SAFE.sub("-", s).strip("-").lower()
