"""A FAKE Ollama server for tests. It is not Ollama and runs no model.

Ollama cannot run on the test machines, so this stand-in answers the HTTP API that
trbench talks to with the shapes of Ollama's docs/api.md: streaming NDJSON from
POST /api/chat and POST /api/generate (and their "stream": false variants), GET /api/tags,
POST /api/show, POST /api/pull, GET /api/ps, GET /api/version, and errors as Ollama sends them
(a JSON object {"error": "..."} with an HTTP status, or an error line inside a stream).
A generate request with no prompt loads the model (one object, done_reason "load"), and with
keep_alive 0 as well unloads it (one object, done_reason "unload"), as docs/api.md says.

Misbehaviours, per model: a load that never finishes (the request is accepted and nothing is
ever sent: Ollama answers nothing until the model is loaded), an unload that is accepted and
never answered, a stream that stops sending mid-way without ending, and a crash of the whole
server (it stops listening and drops its connections).

What it does beyond the documented shapes follows Ollama's source (ollama/ollama; each behaviour
names the file and version it was read from where it is implemented below):

- counts and durations as the runner reports them (runner/ollamarunner/runner.go, 2025, commit
  010fd33; llamarunner the same): eval_count counts every sampled token, the first one and the
  end-of-sequence token that is never streamed included; eval_duration starts when the first
  token's logits are ready (that token's time is in prompt_eval_duration); prompt_eval_count is
  the whole prompt, cached part included, while prompt_eval_duration covers only what was
  evaluated (runner/ollamarunner/cache.go LoadCacheSlot: the longest cached prefix is reused,
  always leaving one token to evaluate);
- out-of-memory at load time as HTTP 500 {"error"} before any stream, with Ollama's own messages
  (OOM_MESSAGES: llm/server.go v0.12.x, llm/status.go, llama.cpp through the runner);
- names as types/model/name.go parses them: no tag means ":latest", default host and namespace
  dropped, compared case-insensitively; /api/tags lists the tag ("llama3.2:latest");
- POST /api/generate without a prompt: keep_alive 0 unloads without loading, answering one
  object with done_reason "unload"; otherwise it loads and answers done_reason "load"
  (server/routes.go GenerateHandler), through scheduleRunner with the request's options as a
  prompt's load: out of memory the same way, and nothing (re)loaded when the model is already
  loaded with the same num_ctx (server/sched.go needsReload), which also holds for a prompt;
- POST /api/pull streams progress lines and reports failures as {"error"} lines inside the
  stream (server/routes.go PullHandler, streamResponse); a client that leaves cancels the pull;
- optionally prompt_eval_cached_count, which newer Ollama adds (FakeOllama(reports_cached=True));
- concurrent requests as docs/faq.md "How does Ollama handle concurrent requests?" and envconfig
  say (FakeOllama(num_parallel=, max_queue=), OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE): each model
  works on up to num_parallel requests at once, further requests wait in a queue of max_queue
  places, and a request that finds the queue full is answered at once with HTTP 503
  {"error": "server busy, please try again.  maximum pending requests exceeded"} (server/sched.go
  ErrMaxQueue, server/routes.go handleScheduleError). Without num_parallel the in-process fake
  serves every request at once (tests that do not look at queueing); the fake `ollama serve` and
  the fake container read the variables with Ollama's defaults (1 and 512);
- POST /api/embed (docs/api.md "Generate Embeddings"; server/routes.go EmbedHandler): `input` a
  string or a list of strings (anything else: 400 "invalid input type"; an empty string or list: no
  embeddings), each embedded one after the other at FakeModel.embed_delay_s per text, normalised
  to unit length, `prompt_eval_count` the tokens of all inputs (whitespace words here), with
  `truncate: false` an input over the context 400 "input length exceeds maximum context length",
  `total_duration` and `load_duration` in nanoseconds.

It is built on the standard library only (http.server.ThreadingHTTPServer in a background
thread, bound to 127.0.0.1 on a port the OS picks), and must stay so: this file and
fake_ollama_cli.py are also the `ollama` command of the fake Ollama image that the real-engine
Docker tests run (tests/docker_engine.py), whose Debian has python3 and nothing else. Each model it serves has a
FakeModel behaviour: the tokens it emits, the decode step between them, "thinking" tokens
streamed before the answer, and a failure mode. Tokens are written one NDJSON line per HTTP
chunk, flushed, with a real delay between them, so client-side timing metrics are meaningful;
the durations in the final chunk are measured (nanoseconds, as Ollama reports them) unless a
behaviour fixes them. With a StepClock (FakeOllama(clock=...)) time is virtual instead: the
fake advances the clock by each step and waits until the client has read it after every
chunk, so a test of the decode-rate arithmetic needs no wall-clock tolerance.

Every request body received is recorded (FakeOllama.requests), and every final chunk sent
(FakeOllama.final_chunks), so tests can assert what reached the server and what it said.

    with FakeOllama({"m:1b": FakeModel(token_delay_s=0.01)}) as fake:
        client = OllamaClient(fake.url)
        ...
        assert fake.bodies("/api/chat")[-1]["options"]["num_ctx"] == 2048
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


FailMode = Literal["oom", "http_500", "mid_stream"]

# What Ollama answers (HTTP 500 {"error": ...}, before any stream: server/routes.go
# handleScheduleError) when a model does not fit, by where the failure is found:
OOM_MESSAGES = {
    # llm/server.go (v0.12.x, Ollama's own engine): the layout for an explicit options.num_gpu does not fit
    "layout": "memory layout cannot be allocated with num_gpu = {num_gpu}",
    # llm/server.go (v0.12.x): no layout fits even after the backoff (num_gpu left to Ollama)
    "layout_auto": "memory layout cannot be allocated",
    # the llama.cpp engine (llamarunner): llm/status.go StatusWriter keeps the last line with an error
    # prefix ("error loading model"), and the server wraps it as the runner's exit
    "llama_buffer": "llama runner process has terminated: error loading model: unable to allocate CUDA0 buffer",
    "backend_buffer": "llama runner process has terminated: error loading model: unable to allocate backend buffer",
    # newer Ollama on llama-server: llm/status.go (2026) appends every error line, OOM lines included
    "llama_server": "llama-server process has terminated: exit status 1: cudaMalloc failed: out of memory\n"
                    "alloc_tensor_range: failed to allocate CUDA0 buffer of size 5064192000\n"
                    "error loading model: unable to allocate CUDA0 buffer",
    # server/sched.go (through v0.9): the estimate says the model cannot fit in system memory
    "system_memory": "model requires more system memory (37.9 GiB) than is available (14.2 GiB)",
}
OOM_MESSAGE = OOM_MESSAGES["llama_buffer"]
MID_STREAM_MESSAGE = "an error was encountered while running the model: unexpected EOF"
SERVER_ERROR_MESSAGE = "llama runner process has terminated: exit status 2"
# server/sched.go ErrMaxQueue (two spaces after the full stop, as Ollama writes it), answered as HTTP 503
MAX_QUEUE_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
OLLAMA_DEFAULT_NUM_PARALLEL, OLLAMA_DEFAULT_MAX_QUEUE = 1, 512  # envconfig defaults
# server/routes.go PullHandler -> PullModel: a name the registry does not have
PULL_NOT_FOUND_MESSAGE = "pull model manifest: file does not exist"
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
    token_delay_s: float = 0.004  # one decode step: before each token after the first, and before the unstreamed EOS
    load_delay_s: float = 0.0  # a (re)load before anything is sent (not loaded, or another num_ctx); reported as load_duration
    prefill_delay_s: float = 0.002  # a cold prompt's evaluation, first token included; scaled by the uncached share
    fail: FailMode | None = None
    oom_above_num_gpu: int | None = None  # options.num_gpu above this fails as out of memory (a card that fits so many layers)
    oom_kind: str = "layout"  # which of OOM_MESSAGES a load that does not fit answers
    fail_after_tokens: int = 3  # mid_stream: tokens sent before the error line
    error_message: str | None = None  # overrides the default message of the fail mode
    load_hangs: bool = False  # a request that must load the model is accepted, then nothing is sent
    unload_hangs: bool = False  # an unload (generate, no prompt, keep_alive 0) is accepted, never answered
    stall_after_tokens: int | None = None  # the stream sends this many tokens, then nothing, never ending
    crashes: bool = False  # a request for it takes the whole server down (a crashed `ollama serve`)
    showable: bool = True  # False: listed by /api/tags, but /api/show answers 404 (its manifest cannot be read)
    prompt_eval_count: int | None = None  # default: whitespace-separated words of the prompt
    durations_ns: dict[str, int] | None = None  # fixes reported durations (total/load/prompt_eval/eval_duration)
    embed_delay_s: float = 0.002  # /api/embed: evaluation of one input text
    embedding_length: int = 16  # /api/embed: dimensions of each vector
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 131072
    size: int = 807_694_464

    def digest(self, name: str) -> str:
        return hashlib.sha256(f"fake-ollama:{name}".encode()).hexdigest()

    def does_not_fit(self, options: Mapping) -> bool:
        """A load with these options runs out of memory (fail "oom", or more layers than fit)."""
        too_many_layers = self.oom_above_num_gpu is not None and int(options.get("num_gpu", 0)) > self.oom_above_num_gpu
        return self.fail == "oom" or too_many_layers

    def oom_message(self, num_gpu: object) -> str:
        kind = "layout_auto" if self.oom_kind == "layout" and num_gpu is None else self.oom_kind
        return self.error_message or OOM_MESSAGES[kind].format(num_gpu=num_gpu)


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


# --- model names, as ollama/ollama types/model/name.go (ParseName, DisplayShortest) ------------

_DEFAULT_HOST, _DEFAULT_NAMESPACE, _DEFAULT_TAG = "registry.ollama.ai", "library", "latest"


def display_name(name: str) -> str:
    """host/namespace/model:tag with Ollama's defaults filled in, shown as /api/tags shows it:
    the default host and namespace left out, the tag always there ("llama3.2" -> "llama3.2:latest")."""
    rest, tag = name, _DEFAULT_TAG
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = rest.rsplit(":", 1)
    parts = rest.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else _DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) >= 3 else _DEFAULT_HOST
    shown = f"{model}:{tag}"
    if namespace != _DEFAULT_NAMESPACE or host != _DEFAULT_HOST:
        shown = f"{namespace}/{shown}"
    if host != _DEFAULT_HOST:
        shown = f"{host}/{shown}"
    return shown


def concurrency_from_env(env: Mapping[str, str]) -> dict[str, int]:
    """FakeOllama's num_parallel and max_queue from OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE as envconfig
    reads them: unset or not a number gives the default (1, 512); a parallelism below 1 is 1."""
    def read(key: str, default: int) -> int:
        try:
            return int(env.get(key, ""))
        except ValueError:
            return default
    return {"num_parallel": max(1, read("OLLAMA_NUM_PARALLEL", OLLAMA_DEFAULT_NUM_PARALLEL)),
            "max_queue": read("OLLAMA_MAX_QUEUE", OLLAMA_DEFAULT_MAX_QUEUE)}


def _unit_vector(text: str, dims: int) -> list[float]:
    """A deterministic vector of unit length for a text (what Ollama's normalize leaves)."""
    raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:dims]] or [1.0]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [v / norm for v in raw]


class _Aborted(Exception):
    """The fake is stopping, or the client went away: end this response quietly."""


class _Busy(Exception):
    """The queue is full: Ollama's ErrMaxQueue."""


class StepClock:
    """Virtual time shared by the FAKE and the client under test (monkeypatch it in as the
    client's `time` module). Only the fake moves it, by whole steps; after each streamed chunk
    the fake waits until the client has read the clock (its stamp of that chunk), so every
    reading lands on the step the fake meant. Everything but perf_counter_ns is the real time
    module."""

    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self._ns = start_ns
        self._reads = 0
        self._cond = threading.Condition()

    def perf_counter_ns(self) -> int:  # the client's reading
        with self._cond:
            self._reads += 1
            self._cond.notify_all()
            return self._ns

    def now_ns(self) -> int:  # the fake's reading (not counted as the client's)
        with self._cond:
            return self._ns

    def reads(self) -> int:
        with self._cond:
            return self._reads

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._ns += round(seconds * 1e9)

    def wait_for_read(self, after: int, timeout_s: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._reads > after, timeout=timeout_s):
                raise _Aborted("the client never read the StepClock")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class FakeOllama:
    """A FAKE Ollama HTTP server (standard library only) for tests; use as a context manager."""

    def __init__(self, models: Mapping[str, FakeModel] | None = None, host: str = "127.0.0.1",
                 version: str = FAKE_VERSION, *, reports_cached: bool = False, clock: StepClock | None = None,
                 registry: Callable[[str], FakeModel | None] | None = None, pull_step_s: float = 0.0,
                 num_parallel: int | None = None, max_queue: int = OLLAMA_DEFAULT_MAX_QUEUE) -> None:
        models = models if models is not None else default_models()
        # stored as /api/tags lists them: "llama3.2" is "llama3.2:latest"
        self.models: dict[str, FakeModel] = {display_name(n): m for n, m in models.items()}
        self.host = host
        self.version = version
        self.reports_cached = reports_cached  # newer Ollama: prompt_eval_cached_count in the final chunk
        self.clock = clock
        # what `ollama pull` can fetch: a FakeModel for a name, None for a name the registry lacks;
        # without one, every name can be pulled
        self.registry = registry or (lambda name: FakeModel())
        self.pull_step_s = pull_step_s  # between progress lines of a pull
        self.num_parallel = num_parallel  # OLLAMA_NUM_PARALLEL; None: no limit (the in-process default)
        self.max_queue = max_queue  # OLLAMA_MAX_QUEUE
        self.running: dict[str, int] = {}  # model -> requests it is working on now
        self.waiting = 0  # requests queued for a model that is busy (Ollama's pending queue is one for all)
        self.max_running_seen: dict[str, int] = {}  # model -> most requests it worked on at once
        self.requests: list[RecordedRequest] = []
        self.final_chunks: list[dict] = []  # the done:true object of each completed chat/generate
        self.loaded: dict[str, dict] = {}  # model -> {"num_ctx", "expires_at"}, for /api/ps
        self.prompt_cache: dict[str, list[str]] = {}  # model -> the prompt its cache slot holds
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
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
        """The model a request names, as Ollama finds it: ParseName's defaults, then a
        case-insensitive match (types/model/name.go Name.EqualFold)."""
        if not name:
            return None
        wanted = display_name(name).lower()
        with self._lock:
            for known, model in self.models.items():
                if known.lower() == wanted:
                    return known, model
        return None

    def needs_load(self, name: str, options: Mapping) -> bool:
        """server/sched.go: a model loaded with the same runner options (num_ctx here) is used as it is;
        otherwise (not loaded, or needsReload) the runner is (re)started for the request."""
        with self._lock:
            held = self.loaded.get(name)
        return held is None or held["num_ctx"] != options.get("num_ctx", 2048)

    @contextlib.contextmanager
    def _admitted(self, model: str) -> Iterator[None]:
        """One of the model's num_parallel places, held while the request is served: a request that
        finds them taken waits in the queue, and one that finds the queue full gets _Busy at once."""
        with self._slot_freed:
            if self.num_parallel is not None and self.running.get(model, 0) >= self.num_parallel:
                if self.waiting >= self.max_queue:
                    raise _Busy
                self.waiting += 1
                try:
                    while self.running.get(model, 0) >= self.num_parallel:
                        if self._stopping.is_set():
                            raise _Aborted("fake Ollama server stopping")
                        self._slot_freed.wait(0.05)
                finally:
                    self.waiting -= 1
            self.running[model] = self.running.get(model, 0) + 1
            self.max_running_seen[model] = max(self.max_running_seen.get(model, 0), self.running[model])
        try:
            yield
        finally:
            with self._slot_freed:
                self.running[model] -= 1
                self._slot_freed.notify_all()

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

    # time as the generation sees it: real, or the StepClock's virtual steps
    def _now_ns(self) -> int:
        return self.clock.now_ns() if self.clock is not None else time.perf_counter_ns()

    def _step(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            self._wait(seconds)


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
            with self.fake._lock:
                models = dict(self.fake.models)
            self._send_json(200, {"models": [self._tag(n, m) for n, m in models.items()]})
        elif self.path == "/api/ps":
            self._send_json(200, {"models": self._running()})
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        received = time.perf_counter_ns()
        body, is_json = self._read_body()
        self.fake._record(RecordedRequest("POST", self.path, body, received))
        routes = {"/api/chat": self._chat, "/api/generate": self._generate, "/api/show": self._show,
                  "/api/pull": self._pull, "/api/embed": self._embed}
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
        if found is None or not found[1].showable:  # server/routes.go ShowHandler: os.ErrNotExist is 404
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
        words = [w for msg in messages if isinstance(msg, dict) for w in str(msg.get("content", "")).split()]
        self._complete(body, words, chat=True)

    def _generate(self, body: dict) -> None:
        if not body.get("prompt") and body.get("model"):
            self._load_or_unload(body)
            return
        words = str(body.get("system", "")).split() + str(body.get("prompt", "")).split()
        self._complete(body, words, chat=False)

    # --- embeddings ------------------------------------------------------------------------------

    def _embed(self, body: dict) -> None:
        """server/routes.go EmbedHandler: input checked first, then the model (404), then scheduling
        (503 when the queue is full); each input evaluated in turn; vectors of unit length."""
        fake = self.fake
        raw = body.get("input")
        if isinstance(raw, str):
            texts = [raw] if raw else []
        elif isinstance(raw, list) and all(isinstance(t, str) for t in raw):
            texts = list(raw)
        elif raw is None:
            texts = []
        else:
            self._error(400, "invalid input type")
            return
        found = fake.resolve(body.get("model"))
        if found is None:
            self._error(404, f"model '{body.get('model')}' not found")
            return
        name, m = found
        self._scheduled(name, lambda: self._serve_embeddings(body, name, m, texts))

    def _serve_embeddings(self, body: dict, name: str, m: FakeModel, texts: list[str]) -> None:
        fake = self.fake
        t0 = fake._now_ns()
        fake._step(m.load_delay_s if name not in fake.loaded else 0.0)
        t_loaded = fake._now_ns()
        options = body.get("options") or {}
        ctx = int(options.get("num_ctx", 2048))
        with fake._lock:
            fake.loaded[name] = {"num_ctx": ctx, "expires_at": _now_rfc3339(timedelta(minutes=5))}
        if not texts:  # an empty input only loads the model
            self._send_json(200, {"model": body["model"], "embeddings": []})
            return
        count, vectors = 0, []
        for text in texts:
            words = text.split() or [text]
            if len(words) > ctx:
                if body.get("truncate") is False:
                    self._error(400, "input length exceeds maximum context length")
                    return
                words = words[:ctx]
            count += len(words)
            fake._step(m.embed_delay_s)
            vectors.append(_unit_vector(" ".join(words), m.embedding_length))
        self._send_json(200, {"model": body["model"], "embeddings": vectors, "total_duration": fake._now_ns() - t0,
                              "load_duration": t_loaded - t0, "prompt_eval_count": count})

    # --- load and unload without a prompt ------------------------------------------------------

    def _load_or_unload(self, body: dict) -> None:
        """server/routes.go GenerateHandler (v0.12.x and later): an empty prompt with keep_alive 0
        expires the runner and answers one object, done_reason "unload", without loading anything;
        an empty prompt otherwise loads the model and answers done_reason "load". Both are a single
        JSON object, not a stream; an unknown model is 404 "model 'x' not found"."""
        fake = self.fake
        found = fake.resolve(body["model"])
        if found is None:
            self._error(404, f"model '{body['model']}' not found")
            return
        name, m = found
        unload = body.get("keep_alive") in (0, "0", "0s", "0m")
        if unload:
            if m.unload_hangs:
                fake._hang()
            with fake._lock:
                fake.loaded.pop(name, None)
                fake.prompt_cache.pop(name, None)
        else:  # scheduleRunner with the request's options, as for a prompt: the same load, the same errors
            options = body.get("options") or {}
            needs_load = fake.needs_load(name, options)
            if m.load_hangs and needs_load:
                fake._hang()
            fake._wait(m.load_delay_s if needs_load else 0.0)
            if m.does_not_fit(options):
                self._error(500, m.oom_message(options.get("num_gpu")))
                return
            with fake._lock:
                fake.loaded[name] = {"num_ctx": options.get("num_ctx", 2048),
                                     "expires_at": _now_rfc3339(timedelta(minutes=5))}
        self._send_json(200, {"model": body["model"], "created_at": _now_rfc3339(), "response": "", "done": True,
                              "done_reason": "unload" if unload else "load"})

    # --- pulls -----------------------------------------------------------------------------------

    def _pull(self, body: dict) -> None:
        """server/routes.go PullHandler (v0.5.x .. 2026): progress lines {"status", "digest", "total",
        "completed"} as the layers download, then "verifying sha256 digest", "writing manifest",
        "success". A failure after the stream has begun (the manifest is fetched after the
        "pulling manifest" line) is an {"error"} line with HTTP 200 (streamResponse). With
        "stream": false the handler waits and answers once: {"status": "success"} or HTTP 500
        {"error"} (waitForStream). The pull runs under the request's context: a client that
        leaves cancels it, and nothing is added."""
        fake = self.fake
        name = body.get("model") or body.get("name")
        if not name:
            self._error(400, "model is required")
            return
        full = display_name(name)
        model = fake.registry(full)
        lines = [{"status": "pulling manifest"}]
        if model is None:
            lines.append({"error": PULL_NOT_FOUND_MESSAGE})
        else:
            digest = model.digest(full)
            for done in (0, model.size // 4, model.size // 2, model.size):
                lines.append({"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}",
                              "total": model.size, "completed": done})
            lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        if body.get("stream", True) is False:
            fake._wait(fake.pull_step_s * len(lines))
            if model is None:
                self._error(500, PULL_NOT_FOUND_MESSAGE)
                return
            self._add_pulled(full, model)
            self._send_json(200, {"status": "success"})
            return
        self._start_stream()
        for line in lines:
            fake._wait(fake.pull_step_s)
            self._stream_line(line)
        if model is not None:
            self._add_pulled(full, model)
        self._end_stream()

    def _add_pulled(self, full: str, model: FakeModel) -> None:
        with self.fake._lock:
            self.fake.models.setdefault(full, model)

    # --- the generation both /api/chat and /api/generate share --------------------------------

    def _cached_prefix(self, name: str, words: list[str]) -> int:
        """runner/ollamarunner/cache.go LoadCacheSlot (2025): the longest prefix the model's cache
        slot already holds is reused, always leaving one input to evaluate; the slot then holds this
        prompt."""
        with self.fake._lock:
            held = self.fake.prompt_cache.get(name, [])
            self.fake.prompt_cache[name] = list(words)
        n = 0
        for a, b in zip(held, words):
            if a != b:
                break
            n += 1
        return min(n, max(len(words) - 1, 0))

    def _complete(self, body: dict, prompt_words: list[str], chat: bool) -> None:
        fake = self.fake
        if not body.get("model"):
            self._error(400, "model is required")
            return
        found = fake.resolve(body["model"])
        if found is None:
            self._error(404, f'model "{body["model"]}" not found, try pulling it first')
            return
        name, m = found
        self._scheduled(name, lambda: self._serve_completion(body, name, m, prompt_words, chat))

    def _scheduled(self, name: str, serve: Callable[[], None]) -> None:
        """Serve in one of the model's places; HTTP 503 ErrMaxQueue when the queue is full (before any
        stream, as every scheduling error)."""
        try:
            with self.fake._admitted(name):
                serve()
        except _Busy:
            self._error(503, MAX_QUEUE_MESSAGE)

    def _serve_completion(self, body: dict, name: str, m: FakeModel, prompt_words: list[str], chat: bool) -> None:
        fake = self.fake
        options = body.get("options") or {}
        stream = body.get("stream", True) is not False
        clock = fake.clock
        t0 = fake._now_ns()

        if m.crashes:  # nothing listens any more, and every open connection is dropped
            threading.Thread(target=fake.stop, name="fake-ollama-crash", daemon=True).start()
            fake._hang()
        needs_load = fake.needs_load(name, options)
        if m.load_hangs and needs_load:
            fake._hang()  # the model (re)loads for this request, and the load never finishes
        # load_duration is checkpointLoaded - checkpointStart (server/routes.go): scheduler queueing included,
        # and the load only when there was one (docs/api.md: "time spent in nanoseconds loading the model")
        fake._step(m.load_delay_s if needs_load else 0.0)
        if m.does_not_fit(options):
            self._error(500, m.oom_message(options.get("num_gpu")))  # before any stream: handleScheduleError
            return
        if m.fail == "http_500":
            self._error(500, m.error_message or SERVER_ERROR_MESSAGE)
            return
        t_loaded = fake._now_ns()
        with fake._lock:
            fake.loaded[name] = {"num_ctx": options.get("num_ctx", 2048), "expires_at": _now_rfc3339(timedelta(minutes=5))}

        think = body.get("think") is not False
        plan = [("thinking", t) for t in (m.think_tokens if think else [])] + [("content", t) for t in m.content_tokens]
        num_predict = options.get("num_predict")
        truncated = isinstance(num_predict, int) and 0 <= num_predict < len(plan)
        if truncated:
            plan = plan[:num_predict]

        # prompt_eval_count is len(inputs) before the cache is consulted (runner.go NewSequence), so the
        # whole prompt; prompt_eval_duration runs from the sequence's start to the first token's logits
        # (startGenerationTime, set when numPredicted reaches 1), so only the uncached part and the
        # first token's sampling
        n_prompt = m.prompt_eval_count if m.prompt_eval_count is not None else max(len(prompt_words), 1)
        cached = self._cached_prefix(name, prompt_words) if prompt_words else 0
        fake._step(m.prefill_delay_s * (1.0 - cached / len(prompt_words) if prompt_words else 1.0))
        cached = min(cached, n_prompt - 1)
        t_first = fake._now_ns()

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

        def send(obj: dict) -> None:
            seen = clock.reads() if clock is not None else 0
            self._stream_line(obj)
            if clock is not None:
                clock.wait_for_read(seen)  # the client has stamped this line before time moves on

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
            if i:  # every token after the first costs one decode step (one Forward in processBatch)
                fake._step(m.token_delay_s)
            (thinking_text if kind == "thinking" else content_text).append(text)
            if stream:
                send(chunk(kind, text, done=False))
        # done_reason "stop": the runner sampled an end-of-sequence token in one more decode step;
        # numPredicted counts it, but its text is never sent (runner.go processBatch). "length": the
        # sequence ends when numPredicted reaches num_predict, with nothing sampled after it
        eos = not truncated
        if eos:
            fake._step(m.token_delay_s)
        t_end = fake._now_ns()

        final = chunk("content", "" if stream else "".join(content_text), done=True)
        if not stream and thinking_text:
            if chat:
                final["message"]["thinking"] = "".join(thinking_text)
            else:
                final["thinking"] = "".join(thinking_text)
        final["done_reason"] = "length" if truncated else "stop"
        if not chat:
            final["context"] = list(range(1, n_prompt + len(plan) + 1))
        durations = {
            "total_duration": t_end - t0,
            "load_duration": max(t_loaded - t0, 1),
            "prompt_eval_duration": t_first - t_loaded,
            "eval_duration": t_end - t_first,  # time.Since(startGenerationTime)
        }
        durations.update(m.durations_ns or {})
        final.update({
            "total_duration": durations["total_duration"],
            "load_duration": durations["load_duration"],
            "prompt_eval_count": n_prompt,
            "prompt_eval_duration": durations["prompt_eval_duration"],
            "eval_count": len(plan) + (1 if eos else 0),
            "eval_duration": durations["eval_duration"],
        })
        if fake.reports_cached:
            # api/types.go Metrics.PromptEvalCachedCount, "prompt_eval_cached_count" (ollama/ollama PR
            # #17943, merged 2026-08-22): the prompt tokens read from the cache; prompt_eval_count stays
            # the whole prompt (llm/llama_server.go: cache_n + prompt_n, PR #16428)
            final["prompt_eval_cached_count"] = cached
        with fake._lock:
            fake.final_chunks.append(final)
        if stream:
            send(final)
            self._end_stream()
        else:
            self._send_json(200, final)

