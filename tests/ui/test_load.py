"""Load (issue 6 §6) and server-side upload limits (§3) against one real `chainlit run` server.

20 concurrent chat sessions speak Chainlit's socket.io protocol (notes §11d) with python-socketio's
AsyncClient; each uploads its own PDF over HTTP and asks 3 questions. The LLM is the StubLLM.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import time
import uuid
from datetime import datetime, timezone

import pytest

from tests.fixtures import hostile_pdfs as H
from tests.fixtures.appserver import running_app

SESSIONS = 20
SHARED_NAME = "shared-handbook.pdf"

pytestmark = [pytest.mark.slow, pytest.mark.stub(delay=0.005),
              pytest.mark.app(pdfs={SHARED_NAME: ["The shared handbook says the office opens at 8 am.",
                                                  "Every team has a secret code word listed in its own file."]})]


def local_cookie(url: str) -> str:
    """The session cookie of the single-user mode (what the browser gets from Chainlit's header auth)."""
    import httpx

    r = httpx.post(f"{url}/auth/header", json={}, timeout=30)
    r.raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in r.cookies.items())


class Chat:
    """One Chainlit chat session over socket.io (signed in with ``cookie``; default: the local user), with the
    persona ``profile``; ``messages`` and ``elements`` (the Sources' URLs) as received."""

    def __init__(self, url: str, *, cookie: str | None = None, thread_id: str | None = None,
                 profile: str = "general"):
        import socketio

        self.url = url
        self.cookie = cookie if cookie is not None else local_cookie(url)
        self.thread_id = thread_id
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.profile = profile
        self.messages: dict[str, dict] = {}
        self.elements: list[dict] = []
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.errors: list = []
        self.started = False
        self.idle = asyncio.Event()  # a task ended (on_chat_start's included)
        self.began = False

        @self.sio.on("*")
        async def any_event(event, data=None):
            if event in ("new_message", "update_message") and isinstance(data, dict):
                self.messages.setdefault(data["id"], {}).update(data)
            elif event == "element" and isinstance(data, dict):
                self.elements.append(data)
            elif event == "chat_settings":
                self.ready.set()
            elif event == "task_start":
                self.started = True
            elif event == "task_end" and self.started:  # not the end of on_chat_start's task
                self.done.set()
            if event == "task_start":
                self.began = True
            elif event == "task_end" and self.began:  # the first task_end comes before any task
                self.idle.set()

    async def connect(self) -> None:
        auth = {"sessionId": self.session_id, "clientType": "webapp", "chatProfile": self.profile,
                "threadId": self.thread_id, "userEnv": "{}"}
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", auth=auth, transports=["websocket"],
                               wait_timeout=30, headers={"Cookie": self.cookie} if self.cookie else {})
        await self.sio.emit("connection_successful")
        await asyncio.wait_for(self.ready.wait(), 60)
        if not self.thread_id:
            # on_chat_start goes on after it sent the settings: a question sent before its task ended would
            # take that task_end for its own answer's end
            await asyncio.wait_for(self.idle.wait(), 60)

    async def upload(self, http, name: str, data: bytes) -> str:
        r = await http.post(f"{self.url}/project/file", params={"session_id": self.session_id},
                            files={"file": (name, data, "application/pdf")}, headers={"Cookie": self.cookie})
        r.raise_for_status()
        return r.json()["id"]

    async def send(self, text: str, file_ids=(), timeout: float = 240) -> tuple[float, list[dict]]:
        self.done.clear()
        self.started = False
        before = set(self.messages)
        msg = {"id": str(uuid.uuid4()), "threadId": "", "type": "user_message", "name": "User", "output": text,
               "createdAt": datetime.now(timezone.utc).isoformat()}
        t0 = time.perf_counter()
        await self.sio.emit("client_message", {"message": msg, "fileReferences": [{"id": f} for f in file_ids]})
        await asyncio.wait_for(self.done.wait(), timeout)
        secs = time.perf_counter() - t0
        new = [m for i, m in self.messages.items() if i not in before and m.get("type") == "assistant_message"]
        return secs, new

    async def close(self) -> None:
        await self.sio.disconnect()


_SRC = re.compile(r"Source \d+ — (.+?), page \d+")


async def _session(app, http, i: int, pdf: bytes, latencies: list, errors: list) -> None:
    chat = Chat(app.url)
    name = f"team{i:02d}.pdf"
    code = f"QX{i:02d}ZEBU"
    try:
        await chat.connect()
        fid = await chat.upload(http, name, pdf)
        _, msgs = await chat.send("", [fid])
        if not any(f"Indexed **{name}**" in m.get("output", "") for m in msgs):
            errors.append((i, "upload", [m.get("output") for m in msgs]))
            return
        for q in (f"What is the secret code word of team {i:02d}?",
                  f"Which depot does team {i:02d} ship from?",
                  "When does the office open?"):
            secs, msgs = await chat.send(q)
            latencies.append(secs)
            answers = [m["output"] for m in msgs if "Source 1" in m.get("output", "")]
            if not answers or "⚠️" in answers[-1] or "According to" not in answers[-1]:
                errors.append((i, q, [m.get("output") for m in msgs]))
                continue
            cited = set(_SRC.findall(answers[-1]))
            if not cited or not cited <= {name, SHARED_NAME}:
                errors.append((i, q, "foreign sources", cited))
            if "code word" in q and code not in answers[-1]:
                errors.append((i, q, "own code word missing", answers[-1][:300]))
    except Exception as exc:  # counted, not raised: the test reports every session's fate
        errors.append((i, "exception", repr(exc)))
    finally:
        try:
            await chat.close()
        except Exception:
            pass


def test_twenty_concurrent_sessions(app, stub, tmp_path):
    import httpx

    stub.mode = "ok"
    pdfs = []
    for i in range(SESSIONS):
        p = H.text_pdf(tmp_path / f"team{i:02d}.pdf", [
            f"The secret code word of team {i:02d} is QX{i:02d}ZEBU. Nobody else uses it.",
            f"Team {i:02d} ships everything from depot {100 + i} on the east side."])
        pdfs.append(p.read_bytes())
    latencies: list[float] = []
    errors: list = []

    async def main():
        async with httpx.AsyncClient(timeout=120) as http:
            t0 = time.perf_counter()
            await asyncio.gather(*(_session(app, http, i, pdfs[i], latencies, errors) for i in range(SESSIONS)))
            return time.perf_counter() - t0

    wall = asyncio.run(main())
    lat = sorted(latencies)
    p50 = statistics.median(lat) if lat else float("nan")
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
    print(f"\nLOAD: {SESSIONS} sessions x 3 questions: {len(lat)} answers, {len(errors)} errors, "
          f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(lat or [0]):.2f} s, wall {wall:.1f} s")
    (tmp_path / "load.json").write_text(json.dumps({"p50": p50, "p95": p95, "errors": errors, "n": len(lat)}))
    assert not errors, errors[:5]
    assert len(lat) == SESSIONS * 3
    assert "Traceback" not in app.read_log()


# ---------------------------------------------------------------- upload limits (§3)


def _raw_post(port: int, path: str, length: int, body: bytes, timeout: float = 10) -> tuple[int, float]:
    """POST with a declared Content-Length but only ``body`` sent; returns (status, seconds)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: multipart/form-data; boundary=XyZ\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
        s.sendall(head + body)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, time.perf_counter() - t0


def test_oversized_upload_refused_before_the_body_is_read(app):
    part = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n"
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n")
    status, secs = _raw_post(app.port, f"/project/file?session_id={uuid.uuid4()}", 60 * 1024 * 1024, part)
    assert status == 413 and secs < 5, (status, secs)


def test_real_60mb_upload_gets_413_and_normal_upload_works(app):
    import httpx

    async def main():
        chat = Chat(app.url)
        await chat.connect()
        try:
            async with httpx.AsyncClient(timeout=60) as http:
                big = b"%PDF-1.7\n" + b"0" * (60 * 1024 * 1024)
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{app.url}/project/file", params={"session_id": chat.session_id},
                                        files={"file": ("big.pdf", big, "application/pdf")},
                                        headers={"Cookie": chat.cookie})
                    status = r.status_code
                except httpx.TransportError:  # the server may close before all 60 MB were sent
                    status = "closed"
                secs = time.perf_counter() - t0
                ok = await http.post(f"{app.url}/project/file", params={"session_id": chat.session_id},
                                     files={"file": ("ok.pdf", b"%PDF-1.4\n%%EOF\n",
                                                     "application/pdf")}, headers={"Cookie": chat.cookie})
                return status, secs, ok.status_code
        finally:
            await chat.close()

    status, secs, ok = asyncio.run(main())
    print(f"60 MB upload: {status} in {secs:.2f} s")
    assert status in (413, "closed") and secs < 20, (status, secs)
    assert ok == 200


def test_chunked_upload_without_length_is_cut_at_the_limit(app):
    """No Content-Length (chunked): the guard stops reading at the limit and answers 413."""
    import httpx

    async def main():
        chat = Chat(app.url)
        await chat.connect()
        sent = 0

        async def body():
            nonlocal sent
            yield (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
                   b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n")
            for _ in range(80):
                sent += 1024 * 1024
                yield b"0" * (1024 * 1024)
            yield b"\r\n--XyZ--\r\n"

        try:
            async with httpx.AsyncClient(timeout=30) as http:
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{app.url}/project/file", params={"session_id": chat.session_id},
                                        content=body(), headers={"content-type": "multipart/form-data; boundary=XyZ",
                                                                 "Cookie": chat.cookie})
                    return r.status_code, r.text, time.perf_counter() - t0
                except httpx.TransportError as exc:
                    return "closed", repr(exc), time.perf_counter() - t0
        finally:
            await chat.close()

    status, text, secs = asyncio.run(main())
    print(f"chunked 80 MB upload: {status} {text[:80]} in {secs:.2f} s")
    assert status in (413, "closed") and secs < 20, (status, text)
    if status == 413:
        assert "limit is 50 MB" in text


# ---------------------------------------------------------------- connection storms (issue 26)

STORM = 100


async def _storm(url: str, cookies: list[str]) -> tuple[int, list]:
    """Every chat connects at the same moment, then asks one question; returns (answers, errors)."""
    answered, errors = [0], []

    async def one(i: int, cookie: str) -> None:
        chat = Chat(url, cookie=cookie)
        try:
            await chat.connect()
            await asyncio.wait_for(chat.idle.wait(), 120)  # on_chat_start finished: the chat is there
            _, msgs = await chat.send("When does the office open?", timeout=180)
            if any("Source 1" in m.get("output", "") for m in msgs):
                answered[0] += 1
            else:
                errors.append((i, "no answer", [m.get("output", "")[:120] for m in msgs]))
        except Exception as exc:  # counted: the test reports every session's fate
            errors.append((i, repr(exc)[:200]))
        finally:
            try:
                await chat.close()
            except Exception:
                pass

    await asyncio.gather(*(one(i, c) for i, c in enumerate(cookies)))
    return answered[0], errors


def test_hundred_sessions_connecting_at_once_all_get_their_chat(app, stub):
    """A replica restarting under 100 open tabs: every socket connects at once (single-user mode).
    Chainlit's session set-up ran the chat-profile callback in a nested event loop, so concurrent
    connects nested into each other until RecursionError; 75 of 100 were refused before the fix."""
    stub.mode = "ok"
    cookie = local_cookie(app.url)
    answered, errors = asyncio.run(_storm(app.url, [cookie] * STORM))
    print(f"\nSTORM local: {answered}/{STORM} answered, {len(errors)} errors")
    assert not errors, errors[:5]
    assert answered == STORM
    assert "RecursionError" not in app.read_log()


def test_hundred_users_signing_in_through_the_proxy_at_once(tmp_path_factory, stub):
    """The same storm in header (SSO proxy) mode, 100 distinct users created on first sight at once."""
    import httpx

    stub.mode = "ok"
    root = tmp_path_factory.mktemp("storm-header")
    shared = H.text_pdf(root / SHARED_NAME, ["The shared handbook says the office opens at 8 am."])
    with running_app(root, stub.base_url, knowledge=[shared],
                     extra_env={"KBCHAT_AUTH_HEADER": "X-Forwarded-User"}) as srv:
        async def sign_in_all() -> list[str]:
            async with httpx.AsyncClient(timeout=60) as http:
                async def one(i):
                    r = await http.post(f"{srv.url}/auth/header", json={},
                                        headers={"X-Forwarded-User": f"storm{i:03d}"})
                    r.raise_for_status()
                    return "; ".join(f"{k}={v}" for k, v in r.cookies.items())
                return await asyncio.gather(*(one(i) for i in range(STORM)))

        cookies = asyncio.run(sign_in_all())
        answered, errors = asyncio.run(_storm(srv.url, cookies))
        print(f"\nSTORM header: {answered}/{STORM} answered, {len(errors)} errors")
        assert not errors, errors[:5]
        assert answered == STORM
        assert "RecursionError" not in srv.read_log() and "Traceback" not in srv.read_log()
