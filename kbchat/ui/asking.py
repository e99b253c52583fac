"""The answer path the chat and the HTTP API share: which collections a user's question searches (the
persona's bases they may read, asked of the database each time, plus a chat's own uploads), the search, the
prompt, and the answer record every answer leaves (usage figures, follow-ups after a resume, Share). No
Chainlit here: kbchat/ui/handlers.py streams into the chat, kbchat/ui/api/ into HTTP responses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kbchat import answer as ans
from kbchat.knowledge import collection_name
from kbchat.sharing.store import SharedQA
from kbchat.ui import access
from kbchat.ui.runtime import Core

HISTORY_TURNS = 6


@dataclass
class Retrieved:
    """What one question searched and found."""

    hits: list
    base_colls: list[str]                      # the knowledge-base collections searched (usage figures)
    withheld: list[str] = field(default_factory=list)   # the persona's bases the user may not read


def retrieve(c: Core, user: str | None, persona, question: str, *, history: list, k: int, reranker,
             uploads: str | None = None) -> Retrieved:
    """Search for ``question`` (sync: run it in a thread): ``uploads`` (a chat's own collection, when it has
    uploads) and the persona's bases ``user`` may read; the rest are never searched, so the top k comes only
    from what they may read. Raises KbchatError when the search fails."""
    from kbchat.search.retrieve import search

    bases = persona.knowledge if persona.retrieval.use_shared_knowledge else []
    readable, withheld = access.searchable_bases(c, user, bases) if bases else ([], [])
    base_colls = [collection_name(b, c.settings) for b in readable]
    names = ([uploads] if uploads else []) + base_colls
    if not names:
        return Retrieved([], base_colls, withheld)
    colls = [c.store.collection(n) for n in names]
    hits = search(colls, c.embedder, question, history=history, k=k, candidate_k=c.settings.candidate_k,
                  reranker=reranker)
    return Retrieved(hits, base_colls, withheld)


def prompt(persona, question: str, hits: list, history: list, *, reasoning: bool, style: str) -> list:
    """The LLM messages: the persona's voice, its examples, the last turns and the numbered passages."""
    return ans.build_messages(question, hits, system_prompt=persona.system_prompt(),
                              few_shot=persona.few_shot(),
                              history=history[-2 * HISTORY_TURNS:], reasoning=reasoning, style=style)


def sources(hits: list, citations: list) -> list[dict]:
    """The cited passages of an answer record, each with the collection it came from (the review view and
    `kbchat export --as` decide from it who may see the passage)."""
    def one(n, h):
        return {"n": n, "file": h.source, "page": h.page, "page_label": h.page_label, "text": h.text,
                "collection": h.collection}

    return [one(ci.n, ci.hit) for ci in citations] or [one(i, h) for i, h in enumerate(hits, 1)]


def usage_fields(user: str | None, lang: str, bases: list[str], hits: list, started: float,
                 first_token: float | None, error, via: str = "chat") -> dict:
    """What the usage figures read from an answer record: who asked (per-user figures are admin-only), in
    which language, through what (``chat`` or ``api``), which knowledge-base collections were searched,
    latency, and whether the answer fell back to search-only (the LLM failed) or found nothing to stand on
    (`not_covered`: no passage, or none above the relevance floor)."""
    done = time.monotonic()
    return {"user": user, "lang": lang, "via": via, "bases": list(bases),
            "asked_at": datetime.now(timezone.utc).isoformat(),
            "first_token_ms": round((first_token - started) * 1000) if first_token else None,
            "total_ms": round((done - started) * 1000), "search_only": error is not None,
            "not_covered": not_covered(hits)}


def not_covered(hits: list) -> bool:
    """No passage found, or the closest ones are below the relevance floor (Hit.covered False)."""
    return not hits or getattr(hits[0], "covered", None) is False


def share_record(c: Core, answer_id: str, rec: dict, user: str | None) -> SharedQA:
    """The SharedQA a consented Share of answer ``answer_id`` stores (chat button or API call)."""
    persona = c.personas.get(rec.get("persona_id") or "")
    return SharedQA(
        user=user, persona_id=rec.get("persona_id") or "",
        persona_prompt=persona.system_prompt() if persona else "", question=rec["question"],
        answer=rec["answer"], reasoning=rec.get("reasoning", ""), sources=rec.get("sources", []),
        model=rec.get("model") or c.settings.llm_model, settings=rec.get("settings", {}),
        answer_key=answer_id,
    )


__all__ = ["HISTORY_TURNS", "Retrieved", "prompt", "retrieve", "share_record", "sources", "usage_fields"]
