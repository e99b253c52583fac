"""The OpenAI-compatible chat API: ``GET /v1/models`` (the personas the key's user may use) and ``POST
/v1/chat/completions`` (``model`` = a persona id), answered by the chat's own path (kbchat/ui/asking.py):
the persona's bases the user may read, its voice, the configured LLM, ``[n]`` markers and a ``citations``
list (an extension field standard clients ignore). Each call is a thread of its user, labelled API, so it
shows in their history and its answer can be shared (``POST /api/v1/answers/{id}/share``)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kbchat import answer as ans
from kbchat.errors import KbchatError, LLMError
from kbchat.knowledge import base_of_collection
from kbchat.messages import error_text, t
from kbchat.ui import access, asking, runtime
from kbchat.ui.api.gate import ApiError, Caller, needs
from kbchat.ui.routes import base_url, shared_url

MAX_QUESTION_CHARS = 8000

router = APIRouter()


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The fields kbchat reads; the others OpenAI defines are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=128)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON: {err}", code="invalid_json") from None


def parse_request(data: Any, max_messages: int) -> ChatRequest:
    """The request, checked: one ApiError line for anything wrong with it."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    msgs = data.get("messages")
    if isinstance(msgs, list) and len(msgs) > max_messages:
        raise ApiError(
            400,
            f"too many messages ({len(msgs)}, limit {max_messages})",
            code="too_many_messages",
            param="messages",
        )
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        raise ApiError(
            400, f"{where}: {first.get('msg', 'invalid')}", code="invalid_value", param=where
        ) from None
    last = req.messages[-1]
    if last.role != "user" or not last.text().strip():
        raise ApiError(
            400, "the last message must be the user's question", code="invalid_value", param="messages"
        )
    if len(last.text()) > MAX_QUESTION_CHARS:
        raise ApiError(
            400,
            f"the question is too long ({len(last.text())} characters, limit {MAX_QUESTION_CHARS})",
            code="invalid_value",
            param="messages",
        )
    return req


def conversation(req: ChatRequest) -> list[tuple[str, str]]:
    """The earlier turns as (role, text) pairs for follow-ups (the client's system messages are not used:
    the persona's prompt is the voice)."""
    return [(m.role, m.text()) for m in req.messages[:-1] if m.role in ("user", "assistant") and m.text()]


def _lang(request: Request) -> str:
    first = (request.headers.get("accept-language") or "en").split(",")[0].split(";")[0].strip()
    return first or "en"  # t() picks the nearest of kbchat's languages


def citation_url(request: Request, hit) -> str:
    """A URL opening the cited page highlighted, for the same user (their API key or their browser
    session)."""
    base = base_of_collection(hit.collection, runtime.core().settings)
    doc_hash = hit.passage.doc_hash
    path = (
        base_url(base, doc_hash, hit.passage.id)
        if base and base != "default"
        else shared_url(doc_hash, hit.passage.id)
    )
    return str(request.base_url).rstrip("/") + path


def citation(request: Request, n: int, hit) -> dict:
    settings = runtime.core().settings
    return {
        "n": n,
        "file": hit.source,
        "page": hit.page,
        "page_label": hit.page_label,
        "passage_id": hit.passage.id,
        "base": base_of_collection(hit.collection, settings),
        "url": citation_url(request, hit),
        "text": hit.text,
    }


# ---------------------------------------------------------------- models


@router.get("/models", summary="The personas this key's user may use")
async def list_models(who: Caller = Depends(needs("chat"))):
    c = runtime.core()
    seen = await asyncio.to_thread(access.visible_personas, c, who.name)
    return {
        "object": "list",
        "data": [
            {
                "id": p.id,
                "object": "model",
                "created": 0,
                "owned_by": "kbchat",
                "name": p.display_name("en"),
                "names": dict(p.name),
                "default": p.default,
            }
            for p in seen
        ],
    }


# ---------------------------------------------------------------- chat completions


class _Turn:
    """One API question on its way: the thread it is recorded in, the search, then the answer."""

    def __init__(self, request: Request, who: Caller, req: ChatRequest, persona):
        self.request, self.who, self.req, self.p = request, who, req, persona
        self.c = runtime.core()
        self.lang = _lang(request)
        self.question = req.messages[-1].text().strip()
        self.history = conversation(req)
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.answer_id = str(uuid.uuid4())
        self.thread_id = str(uuid.uuid4())
        self.created = int(time.time())
        self.started = time.monotonic()
        self.first_token: float | None = None
        self.text: list[str] = []
        self.thoughts: list[str] = []
        self.error: LLMError | None = None
        self.found = None

    async def search(self) -> None:
        def run():
            return asking.retrieve(
                self.c,
                self.who.name,
                self.p,
                self.question,
                history=self.history,
                k=self.p.retrieval.k,
                reranker=self.c.reranker,
            )

        try:
            self.found = await asyncio.to_thread(run)
        except KbchatError as err:
            raise ApiError(503, f"search failed: {err}", code="search_failed", type_="api_error") from None

    def llm(self):
        temp = self.req.temperature if self.req.temperature is not None else self.p.temperature
        llm = ans.make_llm(self.c.settings, temperature=temp, persona=self.p)
        limit = self.req.max_completion_tokens or self.req.max_tokens
        if limit:
            llm.max_tokens = limit
        return llm

    async def chunks(self):
        """('reasoning' | 'answer', text) as the LLM streams; an LLM failure is kept in ``self.error``."""
        hits = self.found.hits
        messages = asking.prompt(
            self.p,
            self.question,
            hits,
            self.history,
            reasoning=self.p.reasoning_default,
            style=self.c.settings.reasoning_style,
        )
        try:
            async for chunk in ans.astream(self.llm(), messages):
                if chunk.kind == "reasoning":
                    self.thoughts.append(chunk.text)
                    yield "reasoning", chunk.text
                else:
                    if self.first_token is None:
                        self.first_token = time.monotonic()
                    self.text.append(chunk.text)
                    yield "answer", chunk.text
        except LLMError as err:
            self.error = err
        except Exception as err:
            runtime.log.exception("API: LLM call failed")
            kind = type(err).__name__
            self.error = LLMError(t("en", "llm_crashed", kind=kind), key="llm_crashed", params={"kind": kind})

    def tail(self) -> str:
        """What follows the streamed text: the search-only line when the LLM failed."""
        if self.error is None:
            return "" if self.found.hits else "\n\n" + t(self.lang, "no_hits")
        shown = error_text(self.lang, self.error)
        if self.text:
            return "\n\n" + t(self.lang, "llm_cut", error=shown)
        return t(self.lang, "llm_failed", error=shown) if self.found.hits else f"⚠️ {shown}"

    def citations(self) -> list[dict]:
        hits = self.found.hits
        if self.error is not None:  # search-only: every passage found is offered
            return [citation(self.request, i, h) for i, h in enumerate(hits, 1)]
        return [citation(self.request, ci.n, ci.hit) for ci in ans.cite("".join(self.text), hits)]

    def extension(self) -> dict:
        return {
            "answer_id": self.answer_id,
            "thread_id": self.thread_id,
            "persona": self.p.id,
            "search_only": self.error is not None,
            "not_covered": asking.not_covered(self.found.hits),
            "withheld_bases": len(self.found.withheld),
        }

    def save(self) -> None:
        """The thread (labelled API, in the user's history), its messages and the answer record (sync)."""
        c, answer_text = self.c, "".join(self.text)
        hits = self.found.hits
        cites = ans.cite(answer_text, hits) if self.error is None else []
        record = {
            "question": self.question,
            "answer": answer_text,
            "reasoning": "".join(self.thoughts),
            "persona_id": self.p.id,
            "sources": asking.sources(hits, cites),
            "model": c.settings.llm_model,
            "settings": {
                "k": self.p.retrieval.k,
                "temperature": self.req.temperature,
                "max_tokens": self.req.max_completion_tokens or self.req.max_tokens,
            },
            **asking.usage_fields(
                self.who.name,
                self.lang,
                self.found.base_colls,
                hits,
                self.started,
                self.first_token,
                self.error,
                via="api",
            ),
        }
        acct = c.accounts.get(self.who.name)
        c.history.upsert_thread(
            self.thread_id,
            name="API · " + " ".join(self.question.split())[:80],
            user_id=acct.id if acct else None,
            user_identifier=self.who.name,
            metadata={"via": "api", "chat_profile": self.p.id, "key": self.who.key.id},
            tags=["api"],
        )
        turns = [*self.history, ("user", self.question)]
        for i, (role, text) in enumerate(turns):
            c.history.upsert_step(_step(str(uuid.uuid4()), self.thread_id, role, text))
        c.history.upsert_step(_step(self.answer_id, self.thread_id, "assistant", answer_text + self.tail()))
        c.history.save_answer(self.answer_id, self.thread_id, record)


def _step(step_id: str, thread_id: str, role: str, text: str) -> dict:
    from kbchat.records.database import now_iso

    kind = "user_message" if role == "user" else "assistant_message"
    return {
        "id": step_id,
        "threadId": thread_id,
        "type": kind,
        "name": "API" if role == "user" else "kbchat",
        "output": text,
        "createdAt": now_iso(),
        "start": now_iso(),
        "end": now_iso(),
        "streaming": False,
        "isError": False,
        "metadata": {"via": "api"},
    }


async def _begin(request: Request, who: Caller) -> _Turn:
    c = runtime.core()
    req = parse_request(await _body(request), runtime.core_settings().api_max_messages)
    seen = await asyncio.to_thread(access.visible_personas, c, who.name)
    persona = next((p for p in seen if p.id == req.model), None)
    if persona is None:  # unknown, or hidden from this user: the same answer, so existence is not confirmed
        raise ApiError(
            404,
            f"the model {req.model!r} does not exist or you do not have access to it "
            "(GET /v1/models lists yours)",
            code="model_not_found",
            param="model",
        )
    quota = await asyncio.to_thread(access.take_question, c, who.name)
    if quota is not None and not quota.allowed:
        from datetime import datetime, timezone

        wait = max(1, int((quota.resets_at - datetime.now(timezone.utc)).total_seconds()))
        raise ApiError(
            429,
            f"question quota: {quota.limit} questions a day, used; it resets at "
            f"{quota.resets_at.strftime('%H:%M')} UTC",
            code="quota_exceeded",
            headers={"Retry-After": str(wait)},
        )
    turn = _Turn(request, who, req, persona)
    await turn.search()
    return turn


@router.post("/chat/completions", summary="Answer as a persona, with citations (OpenAI-compatible)")
async def chat_completions(request: Request, who: Caller = Depends(needs("chat"))):
    turn = await _begin(request, who)
    if turn.req.stream:
        return StreamingResponse(
            _sse(turn),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    async for _ in turn.chunks():
        pass
    await _save(turn)
    message = {"role": "assistant", "content": "".join(turn.text) + turn.tail()}
    if turn.thoughts:
        message["reasoning_content"] = "".join(turn.thoughts)
    return JSONResponse(
        {
            "id": turn.id,
            "object": "chat.completion",
            "created": turn.created,
            "model": turn.p.id,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "citations": turn.citations(),
            "kbchat": turn.extension(),
        }
    )


async def _save(turn: _Turn) -> None:
    try:
        await asyncio.to_thread(turn.save)
    except Exception:  # the answer is still given; the history line is logged
        runtime.log.exception("API: saving answer %s failed", turn.answer_id)


async def _sse(turn: _Turn):
    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": turn.id,
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.p.id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for kind, text in turn.chunks():
        yield chunk({"reasoning_content": text} if kind == "reasoning" else {"content": text})
    tail = turn.tail()
    if tail:
        yield chunk({"content": tail})
    await _save(turn)
    yield chunk({}, "stop", citations=turn.citations(), kbchat=turn.extension())
    yield "data: [DONE]\n\n"


__all__ = ["ChatRequest", "chat_completions", "conversation", "list_models", "parse_request", "router"]
