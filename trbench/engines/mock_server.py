"""The mock LLM server (a vLLM-style mock server, as a provider): answers each suite's format
with canned valid and invalid answers at a fixed pace, on the OpenAI (SSE) and Ollama (NDJSON)
wires, for testing the harness itself. What it measures is the harness, never a model.

What it answers, from the request's own text (the user's message picks the answer;
the system prompt only tells the format):
  - a router prompt ('"route"' in the system text): {"route": <the route whose keywords the user
    message has, else smalltalk>};
  - an orchestrator prompt ('"steps"'): {"steps": [{"tool": <first tool named>, "args": {}}]};
  - a QA prompt ('answer_value'): {"answer_value": "is_blank", "answer_unit": "", "ref_id": []};
  - anything else: a fixed sentence (chat, the speed matrix's prompts).
Every `invalid_every`-th JSON answer of an instance is invalid instead, in turn prose (not JSON)
and a JSON object of the wrong shape, so that parse and schema checks see both outcomes.
Pace: the first chunk after `first_token_ms`, then one chunk of about 4 characters (one token)
every `token_ms`; token counts max(words, characters / 4): no tokenizer needed.
With an `api_key` it stands for a server started with one (vLLM --api-key): a request without
`Authorization: Bearer <api_key>` is answered HTTP 401, as vLLM does, and counted in `refused`.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel

ROUTE_WORDS = {
    "calendar": ("calendar", "meeting", "appointment", "schedule", "free on", "sync"),
    "weather": ("rain", "weather", "forecast", "cold", "sunscreen", "storm", "temperature"),
    "music": ("play", "song", "music", "album", "playlist", "volume"),
    "smart_home": ("light", "heating", "door", "thermostat", "lock", "vacuum"),
    "email": ("mail", "inbox", "reply to", "send"),
}
CHAT_ANSWER = "This is a canned answer from the mock server, which measures the harness and not a model."
PROSE = "Sure! I think the answer is the first option."
WRONG_SHAPE = {"intent": "unknown"}


class Pace(BaseModel):
    first_token_ms: float = 20.0
    token_ms: float = 2.0
    invalid_every: int = 3  # 0: never


def count_tokens(text: str) -> int:
    return max(len(text.split()), len(text) // 4, 1)


def _user_text(messages: list[dict]) -> str:
    return " ".join(m.get("content", "") for m in messages if m.get("role") == "user")


def _system_text(messages: list[dict]) -> str:
    return " ".join(m.get("content", "") for m in messages if m.get("role") == "system")


def kind_of(system: str) -> str:
    if '"route"' in system:
        return "router"
    if '"steps"' in system:
        return "orchestrator"
    if "answer_value" in system:
        return "qa"
    return "chat"


def valid_answer(kind: str, system: str, user: str) -> str:
    if kind == "router":
        low = user.lower()
        route = next((r for r, words in ROUTE_WORDS.items() if any(w in low for w in words)), "smalltalk")
        return json.dumps({"route": route})
    if kind == "orchestrator":
        tools = re.findall(r"([a-z_]+)\(", system)
        return json.dumps({"steps": [{"tool": tools[0] if tools else "search_web", "args": {}}]})
    if kind == "qa":
        return json.dumps({"answer_value": "is_blank", "answer_unit": "", "ref_id": []})
    return CHAT_ANSWER


class MockAnswers:
    """The canned answers of one server, counted: every invalid_every-th JSON answer is invalid."""

    def __init__(self, pace: Pace):
        self.pace = pace
        self._json_answers = 0
        self._invalid = 0
        self._lock = threading.Lock()

    def answer(self, messages: list[dict], prompt: str | None) -> str:
        system, user = (_system_text(messages), _user_text(messages)) if prompt is None else (prompt, prompt)
        kind = kind_of(system)
        if kind == "chat":
            return CHAT_ANSWER
        with self._lock:
            self._json_answers += 1
            bad = self.pace.invalid_every and self._json_answers % self.pace.invalid_every == 0
            if bad:
                self._invalid += 1
                turn = self._invalid
        if bad:
            return PROSE if turn % 2 else json.dumps(WRONG_SHAPE)
        return valid_answer(kind, system, user)


def chunks(text: str, max_tokens: int) -> list[str]:
    """The answer in pieces of about one token, cut at max_tokens."""
    pieces = re.findall(r".{1,4}", text, flags=re.DOTALL)
    return pieces[:max_tokens]


class _Handler(BaseHTTPRequestHandler):
    server: "MockHTTPServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the harness logs what matters
        return

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refused(self) -> bool:
        """Whether the request lacks the server's key (then answered 401); /health is open, as vLLM's is."""
        key = self.server.api_key
        if key is None or self.path == "/health" or self.headers.get("Authorization") == f"Bearer {key}":
            return False
        with self.server.lock:
            self.server.refused += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)  # the body read: the connection stays usable for the next request
        self._json(401, {"error": "Unauthorized"})
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self._refused():
            return
        if self.path in ("/health", "/"):
            self._json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.server.models]})
        elif self.path == "/api/version":
            self._json(200, {"version": "0.0.0-mock"})
        elif self.path in ("/api/tags", "/api/ps"):
            self._json(200, {"models": [{"name": m, "model": m} for m in self.server.models]})
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self._refused():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._json(400, {"error": "body is not JSON"})
        if self.path in ("/v1/chat/completions", "/v1/completions"):
            return self._openai(body)
        if self.path in ("/api/chat", "/api/generate"):
            return self._ollama(body)
        self._json(404, {"error": f"no route {self.path}"})

    def _stream(self, content_type: str, lines: list[bytes]) -> None:
        pace = self.server.answers.pace
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, line in enumerate(lines):
            time.sleep((pace.first_token_ms if i == 0 else pace.token_ms) / 1000)
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _answer(self, body: dict, max_tokens: int) -> tuple[str, list[str], int]:
        messages = body.get("messages") or []
        prompt = body.get("prompt")
        text = self.server.answers.answer(messages, prompt)
        pieces = chunks(text, max_tokens)
        prompt_tokens = count_tokens(prompt if prompt is not None else " ".join(m.get("content", "") for m in messages))
        return text, pieces, prompt_tokens

    def _openai(self, body: dict) -> None:
        _, pieces, prompt_tokens = self._answer(body, int(body.get("max_tokens") or 256))
        chat = "messages" in body
        lines = []
        for piece in pieces:
            choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            lines.append(_sse({"object": "chat.completion.chunk", "choices": [choice]}))
        finish = "length" if len(pieces) >= int(body.get("max_tokens") or 256) else "stop"
        last = {"index": 0, "delta": {}, "finish_reason": finish} if chat else {"index": 0, "text": "", "finish_reason": finish}
        lines.append(_sse({"object": "chat.completion.chunk", "choices": [last]}))
        lines.append(_sse({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                                                    "total_tokens": prompt_tokens + len(pieces)}}))
        lines.append(b"data: [DONE]\n\n")
        self._stream("text/event-stream", lines)

    def _ollama(self, body: dict) -> None:
        options = body.get("options") or {}
        max_tokens = int(options.get("num_predict") or 256)
        _, pieces, prompt_tokens = self._answer(body, max_tokens)
        chat = "messages" in body
        pace = self.server.answers.pace
        lines = []
        for piece in pieces:
            part = {"message": {"role": "assistant", "content": piece}} if chat else {"response": piece}
            lines.append(json.dumps({"model": body.get("model"), **part, "done": False}).encode() + b"\n")
        decode_ns = int(pace.token_ms * 1e6 * max(len(pieces) - 1, 0))
        final = {"model": body.get("model"), "done": True,
                 "done_reason": "length" if len(pieces) >= max_tokens else "stop",
                 "prompt_eval_count": prompt_tokens, "eval_count": len(pieces), "eval_duration": decode_ns,
                 "prompt_eval_duration": int(pace.first_token_ms * 1e6), "load_duration": 0,
                 "total_duration": decode_ns + int(pace.first_token_ms * 1e6)}
        final.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
        lines.append(json.dumps(final).encode() + b"\n")
        self._stream("application/x-ndjson", lines)


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class MockHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, pace: Pace, models: list[str], api_key: str | None = None):
        super().__init__((host, port), _Handler)
        self.answers = MockAnswers(pace)
        self.models = models
        self.api_key = api_key  # None: no key asked for
        self.refused = 0  # requests answered 401 for want of the key
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client closing its kept-alive connection (a reset) is no error of the mock's
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def serve(host: str, port: int, pace: Pace, models: list[str],
          api_key: str | None = None) -> tuple[MockHTTPServer, threading.Thread]:
    """A mock server answering on host:port from a daemon thread (stop: server.shutdown()); with
    api_key, only requests that carry it (`Authorization: Bearer <api_key>`)."""
    server = MockHTTPServer(host, port, pace, models, api_key)
    thread = threading.Thread(target=server.serve_forever, name=f"mock-{port}", daemon=True)
    thread.start()
    return server, thread
