"""A FAKE Ollama server for tests. It is not Ollama and runs no model.

Ollama cannot run on the test machines, so this stand-in answers the HTTP API that
trbench talks to with the shapes of Ollama's docs/api.md: streaming NDJSON from
POST /api/chat and POST /api/generate (and their "stream": false variants), GET /api/tags,
POST /api/show, GET /api/ps, GET /api/version, and errors as Ollama sends them
(a JSON object {"error": "..."} with an HTTP status, or an error line inside a stream).
A generate request with no prompt loads the model (one object, done_reason "load"), and with
keep_alive 0 as well unloads it (one object, done_reason "unload"), as docs/api.md says.

Misbehaviours, per model: a load that never finishes (the request is accepted and nothing is
ever sent: Ollama answers nothing until the model is loaded), an unload that is accepted and
never answered, a stream that stops sending mid-way without ending, and a crash of the whole
server (it stops listening and drops its connections).

It is built on the standard library only (http.server.ThreadingHTTPServer in a background
thread, bound to 127.0.0.1 on a port the OS picks). Each model it serves has a
FakeModel behaviour: the tokens it emits, the delay before each, "thinking" tokens streamed
before the answer, and a failure mode. Tokens are written one NDJSON line per HTTP chunk,
flushed, with a real delay between them, so client-side timing metrics are meaningful; the
durations in the final chunk are measured (nanoseconds, as Ollama reports them) unless a
behaviour fixes them.

Every request body received is recorded (FakeOllama.requests), and every final chunk sent
(FakeOllama.final_chunks), so tests can assert what reached the server and what it said.

    with FakeOllama({"m:1b": FakeModel(token_delay_s=0.01)}) as fake:
        client = OllamaClient(fake.url)
        ...
        assert fake.bodies("/api/chat")[-1]["options"]["num_ctx"] == 2048
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

FailMode = Literal["oom", "http_500", "mid_stream"]

# The message Ollama's runner gives when a model does not fit (seen as HTTP 500 on /api/chat).
OOM_MESSAGE = "llama runner process has terminated: cudaMalloc failed: out of memory"
MID_STREAM_MESSAGE = "an error was encountered while running the model: unexpected EOF"
SERVER_ERROR_MESSAGE = "llama runner process has terminated: exit status 2"
FAKE_VERSION = "0.12.6"

DEFAULT_MODEL = "fake-llama:1b"
DEFAULT_THINKER = "fake-thinker:1b"

_DEFAULT_CONTENT = ("The", " sky", " is", " blue", " because", " of", " Rayleigh", " scattering", " of",
                    " sunlight", " by", " air", ".")
_DEFAULT_THINKING = ("Okay", ",", " the", " user", " asks", " about", " the", " sky", ".")


@dataclass
class FakeModel:
    """How the FAKE server behaves for one model name."""

    content_tokens: list[str] = field(default_factory=lambda: list(_DEFAULT_CONTENT))
    think_tokens: list[str] = field(default_factory=list)  # streamed as message.thinking before the answer
    token_delay_s: float = 0.004  # before each generated token (the fake's decode step)
    load_delay_s: float = 0.0  # before anything is sent (model load); reported as load_duration
    prefill_delay_s: float = 0.002  # after load, before the first token; reported as prompt_eval_duration
    fail: FailMode | None = None
    oom_above_num_gpu: int | None = None  # options.num_gpu above this fails as out of memory (a card that fits so many layers)
    fail_after_tokens: int = 3  # mid_stream: tokens sent before the error line
    error_message: str | None = None  # overrides the default message of the fail mode
    load_hangs: bool = False  # a request that must load the model is accepted, then nothing is sent
    unload_hangs: bool = False  # an unload (generate, no prompt, keep_alive 0) is accepted, never answered
    stall_after_tokens: int | None = None  # the stream sends this many tokens, then nothing, never ending
    crashes: bool = False  # a request for it takes the whole server down (a crashed `ollama serve`)
    prompt_eval_count: int | None = None  # default: whitespace-separated words of the prompt
    durations_ns: dict[str, int] | None = None  # fixes reported durations (total/load/prompt_eval/eval_duration)
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 131072
    size: int = 807_694_464

    def digest(self, name: str) -> str:
        return hashlib.sha256(f"fake-ollama:{name}".encode()).hexdigest()


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any  # the decoded JSON body; the raw text where it was not JSON; None without a body
    received_ns: int  # time.perf_counter_ns() when the request line was read


def default_models() -> dict[str, FakeModel]:
    return {
        DEFAULT_MODEL: FakeModel(),
        DEFAULT_THINKER: FakeModel(think_tokens=list(_DEFAULT_THINKING), family="qwen3"),
    }


def _now_rfc3339(delta: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Aborted(Exception):
    """The fake is stopping, or the client went away: end this response quietly."""


class FakeOllama:
    """A FAKE Ollama HTTP server (standard library only) for tests; use as a context manager."""

    def __init__(self, models: Mapping[str, FakeModel] | None = None, host: str = "127.0.0.1",
                 version: str = FAKE_VERSION) -> None:
        self.models: dict[str, FakeModel] = dict(models) if models is not None else default_models()
        self.host = host
        self.version = version
        self.requests: list[RecordedRequest] = []
        self.final_chunks: list[dict] = []  # the done:true object of each completed chat/generate
        self.loaded: dict[str, dict] = {}  # model -> {"num_ctx", "expires_at"}, for /api/ps
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the fake Ollama server is not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeOllama:
        handler = type("FakeOllamaHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer((self.host, 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-ollama", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # wake handler threads parked on keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests look at ------------------------------------------------------------

    def bodies(self, path: str = "/api/chat") -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    def last_options(self, path: str = "/api/chat") -> dict:
        bodies = self.bodies(path)
        assert bodies, f"the fake Ollama server received no request on {path}"
        return bodies[-1].get("options") or {}

    # --- internals used by the handler ---------------------------------------------------

    def resolve(self, name: str | None) -> tuple[str, FakeModel] | None:
        if not name:
            return None
        for candidate in (name, f"{name}:latest"):
            if candidate in self.models:
                return candidate, self.models[candidate]
        return None

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise _Aborted("fake Ollama server stopping")

    def _hang(self) -> None:
        """Keep the connection open and send nothing, until the fake stops."""
        self._stopping.wait()
        raise _Aborted("fake Ollama server stopping")


class GoLikeHandler(BaseHTTPRequestHandler):
    """Answers as a Go net/http server (Ollama, dockerd): keep-alive HTTP/1.1, TCP_NODELAY, and
    its connections tracked on `fake` (which has _lock and _conns) so that stopping closes them."""

    protocol_version = "HTTP/1.1"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Go's net/http sets TCP_NODELAY; without it Nagle's algorithm holds small lines back until
        # the client's delayed ACK (~40 ms), and streamed chunks arrive in bunches
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake._lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            pass  # the client closed or reset a keep-alive connection, or the fake stopped


class _Handler(GoLikeHandler):
    fake: FakeOllama  # set on the per-server subclass
    server_version = "FakeOllama"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        return

    # --- plumbing ------------------------------------------------------------------------

    def _read_body(self) -> tuple[Any, bool]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, True
        try:
            return json.loads(raw), True
        except ValueError:
            return raw.decode(errors="replace"), False

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream_line(self, obj: dict) -> None:
        line = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(line):X}\r\n".encode() + line + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- routes --------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.fake._record(RecordedRequest("HEAD", self.path, None, time.perf_counter_ns()))
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.fake._record(RecordedRequest("GET", self.path, None, time.perf_counter_ns()))
        if self.path == "/":
            self._send_text(200, "Ollama is running")
        elif self.path == "/api/version":
            self._send_json(200, {"version": self.fake.version})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [self._tag(n, m) for n, m in self.fake.models.items()]})
        elif self.path == "/api/ps":
            self._send_json(200, {"models": self._running()})
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        received = time.perf_counter_ns()
        body, is_json = self._read_body()
        self.fake._record(RecordedRequest("POST", self.path, body, received))
        routes = {"/api/chat": self._chat, "/api/generate": self._generate, "/api/show": self._show}
        route = routes.get(self.path)
        if route is None:
            self._send_text(404, "404 page not found")
            return
        if not is_json or not isinstance(body, dict):
            self._error(400, "invalid request body: expected a JSON object")
            return
        try:
            route(body)
        except (_Aborted, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client left (e.g. its timeout) or the fake stopped

    def _tag(self, name: str, m: FakeModel) -> dict:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00.000000Z",
            "size": m.size,
            "digest": m.digest(name),
            "details": self._details(m, with_parent=False),
        }

    @staticmethod
    def _details(m: FakeModel, with_parent: bool = True) -> dict:
        d = {"format": "gguf", "family": m.family, "families": [m.family],
             "parameter_size": m.parameter_size, "quantization_level": m.quantization_level}
        return {"parent_model": "", **d} if with_parent else d

    def _running(self) -> list[dict]:
        out = []
        with self.fake._lock:
            loaded = dict(self.fake.loaded)
        for name, info in loaded.items():
            m = self.fake.models.get(name)
            if m is None:
                continue
            out.append({
                "name": name, "model": name, "size": m.size, "digest": m.digest(name),
                "details": self._details(m), "expires_at": info["expires_at"], "size_vram": 0,
                "context_length": info["num_ctx"],
            })
        return out

    def _show(self, body: dict) -> None:
        name = body.get("model") or body.get("name")
        found = self.fake.resolve(name)
        if found is None:
            self._error(404, f"model '{name}' not found")
            return
        name, m = found
        arch = m.family
        self._send_json(200, {
            "modelfile": f"# Modelfile generated by \"ollama show\" (FAKE)\nFROM {name}\n"
                         f"TEMPLATE \"\"\"{{{{ .Prompt }}}}\"\"\"\nPARAMETER stop \"<|eot_id|>\"",
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}",
            "details": self._details(m),
            "model_info": {
                "general.architecture": arch,
                "general.file_type": 15,
                "general.parameter_count": 1_235_814_432,
                "general.quantization_version": 2,
                f"{arch}.attention.head_count": 32,
                f"{arch}.attention.head_count_kv": 8,
                f"{arch}.block_count": 16,
                f"{arch}.context_length": m.context_length,
                f"{arch}.embedding_length": 2048,
                "tokenizer.ggml.model": "gpt2",
            },
            "capabilities": ["completion", "thinking"] if m.think_tokens else ["completion"],
            "modified_at": "2025-01-01T00:00:00.000000Z",
        })

    def _chat(self, body: dict) -> None:
        messages = body.get("messages") or []
        words = sum(len(str(msg.get("content", "")).split()) for msg in messages if isinstance(msg, dict))
        self._complete(body, words, chat=True)

    def _generate(self, body: dict) -> None:
        if not body.get("prompt") and body.get("model"):
            self._load_or_unload(body)
            return
        words = len(str(body.get("prompt", "")).split()) + len(str(body.get("system", "")).split())
        self._complete(body, words, chat=False)

    def _load_or_unload(self, body: dict) -> None:
        """docs/api.md: no prompt loads the model; keep_alive 0 as well unloads it. Either way a
        single JSON object answers, without generating anything."""
        fake = self.fake
        found = fake.resolve(body["model"])
        if found is None:
            self._error(404, f'model "{body["model"]}" not found, try pulling it first')
            return
        name, m = found
        unload = body.get("keep_alive") in (0, "0", "0s", "0m")
        if unload:
            if m.unload_hangs:
                fake._hang()
            with fake._lock:
                fake.loaded.pop(name, None)
        else:
            if m.load_hangs:
                fake._hang()
            fake._wait(m.load_delay_s)
            with fake._lock:
                fake.loaded[name] = {"num_ctx": (body.get("options") or {}).get("num_ctx", 2048),
                                     "expires_at": _now_rfc3339(timedelta(minutes=5))}
        self._send_json(200, {"model": name, "created_at": _now_rfc3339(), "response": "", "done": True,
                              "done_reason": "unload" if unload else "load"})

    # --- the generation both /api/chat and /api/generate share --------------------------------

    def _complete(self, body: dict, prompt_words: int, chat: bool) -> None:
        fake = self.fake
        if not body.get("model"):
            self._error(400, "model is required")
            return
        found = fake.resolve(body["model"])
        if found is None:
            self._error(404, f'model "{body["model"]}" not found, try pulling it first')
            return
        name, m = found
        options = body.get("options") or {}
        stream = body.get("stream", True) is not False
        t0 = time.perf_counter_ns()

        if m.crashes:  # nothing listens any more, and every open connection is dropped
            threading.Thread(target=fake.stop, name="fake-ollama-crash", daemon=True).start()
            fake._hang()
        with fake._lock:
            held = fake.loaded.get(name)
        if m.load_hangs and (held is None or held["num_ctx"] != options.get("num_ctx", 2048)):
            fake._hang()  # the model (re)loads for this request, and the load never finishes
        fake._wait(m.load_delay_s)
        too_many_layers = m.oom_above_num_gpu is not None and int(options.get("num_gpu", 0)) > m.oom_above_num_gpu
        if m.fail == "oom" or too_many_layers:
            self._error(500, m.error_message or OOM_MESSAGE)
            return
        if m.fail == "http_500":
            self._error(500, m.error_message or SERVER_ERROR_MESSAGE)
            return
        t_loaded = time.perf_counter_ns()
        with fake._lock:
            fake.loaded[name] = {"num_ctx": options.get("num_ctx", 2048), "expires_at": _now_rfc3339(timedelta(minutes=5))}

        think = body.get("think") is not False
        plan = [("thinking", t) for t in (m.think_tokens if think else [])] + [("content", t) for t in m.content_tokens]
        num_predict = options.get("num_predict")
        truncated = isinstance(num_predict, int) and 0 <= num_predict < len(plan)
        if truncated:
            plan = plan[:num_predict]

        fake._wait(m.prefill_delay_s)
        t_prefilled = time.perf_counter_ns()

        def chunk(kind: str, text: str, done: bool) -> dict:
            out: dict = {"model": name, "created_at": _now_rfc3339()}
            if chat:
                msg = {"role": "assistant", "content": text if kind == "content" else ""}
                if kind == "thinking":
                    msg["thinking"] = text
                out["message"] = msg
            else:
                out["response"] = text if kind == "content" else ""
                if kind == "thinking":
                    out["thinking"] = text
            out["done"] = done
            return out

        thinking_text, content_text = [], []
        if stream:
            self._start_stream()
        for i, (kind, text) in enumerate(plan):
            if m.fail == "mid_stream" and i == m.fail_after_tokens:
                message = m.error_message or MID_STREAM_MESSAGE
                if stream:
                    self._stream_line({"error": message})
                    self._end_stream()
                else:
                    self._error(500, message)
                return
            if stream and m.stall_after_tokens is not None and i == m.stall_after_tokens:
                fake._hang()  # mid-stream, the server goes silent and keeps the connection open
            fake._wait(m.token_delay_s)
            (thinking_text if kind == "thinking" else content_text).append(text)
            if stream:
                self._stream_line(chunk(kind, text, done=False))
        t_end = time.perf_counter_ns()

        final = chunk("content", "" if stream else "".join(content_text), done=True)
        if not stream and thinking_text:
            if chat:
                final["message"]["thinking"] = "".join(thinking_text)
            else:
                final["thinking"] = "".join(thinking_text)
        final["done_reason"] = "length" if truncated else "stop"
        if not chat:
            final["context"] = list(range(1, prompt_words + len(plan) + 1))
        durations = {
            "total_duration": t_end - t0,
            "load_duration": max(t_loaded - t0, 1),
            "prompt_eval_duration": t_prefilled - t_loaded,
            "eval_duration": t_end - t_prefilled,
        }
        durations.update(m.durations_ns or {})
        final.update({
            "total_duration": durations["total_duration"],
            "load_duration": durations["load_duration"],
            "prompt_eval_count": m.prompt_eval_count if m.prompt_eval_count is not None else max(prompt_words, 1),
            "prompt_eval_duration": durations["prompt_eval_duration"],
            "eval_count": len(plan),
            "eval_duration": durations["eval_duration"],
        })
        with fake._lock:
            fake.final_chunks.append(final)
        if stream:
            self._stream_line(final)
            self._end_stream()
        else:
            self._send_json(200, final)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A started FAKE Ollama server with default_models(); import this fixture into a test module to use it."""
    with FakeOllama() as server:
        yield server
