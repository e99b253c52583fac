"""A real OpenAI-compatible HTTP server on loopback for tests and benchmarks (``StubLLM``).

Run by hand: ``python -m tests.stubs.llm --port 8011 [--mode ok] [--delay 0.02]`` (blocks until killed).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import time
import uuid

from tests.stubs.loopback import LoopbackServer, QuietHandler

MODES = ("ok", "reasoning_content", "think_inline", "401", "404", "500", "cut", "cut_clean", "slow")
REASONING = "Let me look at the passages. The first one seems relevant."
_PASSAGE = re.compile(r"^\[(\d+)\][^\n]*\n(.*?)(?=^\[\d+\]|</passages>|\Z)", re.M | re.S)


def _text_of(content) -> str:
    """Plain text of an OpenAI message content (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def make_answer(messages: list[dict]) -> str:
    """Deterministic answer derived from the numbered passages of the last user message."""
    user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    passages = {int(n): body.strip() for n, body in _PASSAGE.findall(user) if body.strip()}
    if not passages:
        return "The passages do not contain the answer to this question."
    first = min(passages)
    sentence = re.split(r"(?<=[.!?])\s", " ".join(passages[first].split()), maxsplit=1)[0].rstrip(".!?")
    answer = f"According to [{first}], {sentence}."
    others = sorted(n for n in passages if n != first)
    if others:
        answer += f" See also [{others[0]}]."
    return answer


def _tokens(text: str) -> list[str]:
    """Split text into small streaming pieces (a word and its trailing space)."""
    return re.findall(r"\S+\s*|\s+", text)


class StubLLM(LoopbackServer):
    """OpenAI-compatible chat-completions server on 127.0.0.1 whose behaviour ``mode`` switches at run time."""

    thread_name = "stub-llm"

    def __init__(self, mode: str = "ok", *, port: int = 0, model: str = "stub", delay: float = 0.0,
                 slow_seconds: float = 3.0, answer: str | None = None, reasoning: str = REASONING):
        super().__init__(port=port)
        self.mode = mode
        self.model = model
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.answer = answer          # fixed answer text; None = derived from the prompt
        self.reasoning = reasoning
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._options = {"mode": mode, "model": model, "delay": delay, "slow_seconds": slow_seconds,
                         "answer": answer, "reasoning": reasoning}

    def reset(self) -> None:
        """As new: the options it was made with, no recorded requests, serving (again, if it was stopped)."""
        self._stopping.set()  # a handler still waiting in mode "slow" returns now
        self._stopping.clear()
        for k, v in self._options.items():
            setattr(self, k, v)
        self.requests.clear()
        self.headers.clear()
        if self._server is None:
            self.start()

    @property
    def last_messages(self) -> list[dict]:
        """Messages of the last chat request."""
        return self.requests[-1]["messages"] if self.requests else []

    # ---- HTTP ------------------------------------------------------------------------------
    def _handler_class(self):
        stub = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": stub.model, "object": "model", "created": 0, "owned_by": "stub"}]})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
                    return
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                stub._respond(self, body)

        return Handler

    def _respond(self, h, body: dict) -> None:
        mode = self.mode
        model = body.get("model", self.model)
        if mode == "401":
            h._json(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                    "code": "invalid_api_key"}})
            return
        if mode == "404":
            h._json(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                    "code": 404}})
            return
        if mode == "500":
            h._json(500, {"error": {"message": "Internal server error", "type": "server_error"}})
            return
        if mode == "slow":
            self._stopping.wait(self.slow_seconds)
        answer = self.answer if self.answer is not None else make_answer(body.get("messages", []))
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        created = int(time.time())
        if not body.get("stream"):
            msg: dict = {"role": "assistant", "content": answer}
            if mode == "reasoning_content":
                msg["reasoning_content"] = self.reasoning
            elif mode == "think_inline":
                msg["content"] = f"<think>{self.reasoning}</think>\n\n{answer}"
            h._json(200, {"id": cid, "object": "chat.completion", "created": created, "model": model,
                          "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
            return
        deltas: list[dict] = [{"role": "assistant", "content": ""}]
        if mode == "reasoning_content":
            deltas += [{"reasoning_content": t} for t in _tokens(self.reasoning)]
            deltas += [{"content": t} for t in _tokens(answer)]
        elif mode == "think_inline":
            r = self.reasoning
            half = len(r) // 2
            pieces = ["<thi", "nk>" + r[:half], r[half:-3], r[-3:] + "</th", "ink>", "\n\n"] + _tokens(answer)
            deltas += [{"content": p} for p in pieces]
        else:
            deltas += [{"content": t} for t in _tokens(answer)]
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(data: str) -> None:
            payload = f"data: {data}\n\n".encode()
            h.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
            h.wfile.flush()

        def chunk(delta: dict, finish: str | None = None) -> str:
            return json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        if mode in ("cut", "cut_clean"):
            deltas = deltas[: max(2, len(deltas) // 2)]
        for d in deltas:
            send(chunk(d))
            if self.delay:
                time.sleep(self.delay)
        if mode == "cut":               # die mid-body: no [DONE], no chunked terminator
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode != "cut_clean":         # cut_clean: a well-formed body that just stops early
            send(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                send(json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                 "model": model, "choices": [],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}))
            send("[DONE]")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve a StubLLM on a port until killed."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--mode", default="ok", choices=MODES)
    ap.add_argument("--model", default="stub")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds between streamed chunks")
    ap.add_argument("--slow-seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    stub = StubLLM(a.mode, port=a.port, model=a.model, delay=a.delay, slow_seconds=a.slow_seconds)
    print(f"StubLLM ({a.mode}) serving at http://127.0.0.1:{a.port}/v1", flush=True)
    stub.serve_forever()


if __name__ == "__main__":
    main()
