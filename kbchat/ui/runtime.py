"""Process-wide objects of the app (settings, store, models, database) and per-chat state."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kbchat.knowledge import base_names
from kbchat.records.access import Access
from kbchat.records.accounts import Accounts, LoginLimiter
from kbchat.records.database import Database, open_database
from kbchat.records.history import History
from kbchat.records.personas import PersonaCache, PersonaRecords
from kbchat.search.base import Embedder, Reranker, Store
from kbchat.search.loaders import load_embedder, load_reranker, open_store
from kbchat.settings import Settings, offline_model_env
from kbchat.sharing.store import ShareStore

log = logging.getLogger("kbchat")
if not log.handlers:  # chainlit configures only its own logger; ours reports start-up sync and errors
    _h = logging.StreamHandler()
    _h.setFormatter(logging.Formatter("%(asctime)s kbchat %(levelname)s %(message)s"))
    log.addHandler(_h)
    log.setLevel(logging.INFO)
    log.propagate = False


@dataclass
class Core:
    """Process-wide objects, built once at start-up and shared by every chat."""

    settings: Settings
    persona_cache: PersonaCache                      # the personas of the database, re-read when they change
    store: Store
    embedder: Embedder
    reranker: Reranker | None
    db: Database
    accounts: Accounts
    history: History
    share_store: ShareStore
    access: Access                                   # groups, base access, audit log, quotas (the database)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    sync_status: str = "not started"

    @property
    def personas(self) -> dict:
        """The published personas chats may use now, default first (a change applies to the next chat)."""
        return self.persona_cache.current().personas

    @property
    def broken(self) -> dict:
        """Persona id -> why it is left out of the chat (e.g. it names a knowledge base that is missing)."""
        return self.persona_cache.current().broken


@dataclass
class ChatState:
    """Per-session state, kept outside cl.user_session so nothing large is persisted."""

    persona_id: str
    thread_id: str
    collection: str
    user: str | None = None                          # the signed-in user name
    uploads: dict = field(default_factory=dict)     # doc_hash -> display name
    history: list = field(default_factory=list)     # (role, text), no reasoning
    answers: dict = field(default_factory=dict)     # answer message id -> JSON-able record for sharing
    withheld_told: bool = False                      # the "bases not open to you" line was shown in this chat
    preview: object = None                           # the Persona an admin previews from the console (a draft too)

    @property
    def has_uploads(self) -> bool:
        return bool(self.uploads)


CORE: Core | None = None
CHATS: dict[str, ChatState] = {}
_CORE_LOCK = threading.Lock()


_SETTINGS: Settings | None = None


def core_settings() -> Settings:
    """The settings (read from the environment once per process)."""
    global _SETTINGS
    if _SETTINGS is None:
        offline_model_env()
        _SETTINGS = Settings()
    return _SETTINGS


def database() -> Database:
    """The database (opened before the models: login and history need it first)."""
    return open_database(core_settings())


def limiter() -> LoginLimiter:
    global _LIMITER
    if _LIMITER is None:
        s = core_settings()
        _LIMITER = LoginLimiter(s.login_max_failures, s.login_window_seconds)
    return _LIMITER


_LIMITER: LoginLimiter | None = None


def core() -> Core:
    """The process's Core, built on first use."""
    global CORE
    with _CORE_LOCK:
        if CORE is None:
            s = core_settings()
            db = database()
            records = PersonaRecords(db)
            records.seed(s.personas_dir)  # first start: the YAML files (a bad one: one ConfigError line)
            cache = PersonaCache(records, lambda: base_names(s))
            cache.current()  # logs each persona left out (a missing base) in one line
            embedder = load_embedder(s)
            store = open_store(s, embedder)
            store.collection(s.shared_collection)
            reranker = load_reranker(s)  # a reranking server, the local CrossEncoder, or None
            CORE = Core(s, cache, store, embedder, reranker, db, Accounts(db), History(db), ShareStore(db),
                        Access(db))
        return CORE


def reset() -> None:
    """Forget the Core and the settings (tests that change the environment)."""
    global CORE, _SETTINGS, _LIMITER
    from kbchat.records.database import close_databases

    with _CORE_LOCK:
        if CORE is not None:
            CORE.store.close()
        CORE = None
        _SETTINGS = None
        _LIMITER = None
        CHATS.clear()
    close_databases()
