"""Asynchronous embeddings clients: OpenAI-compatible /v1/embeddings (llama.cpp server) and Ollama
/api/embed (docs/api.md "Generate Embeddings"), on one pooled httpx.AsyncClient.

Each request is timed on time.perf_counter_ns() from just before it is sent to the last byte of the
answer; the body is parsed after that, out of the timed path. Failures are recorded, never raised,
with the error kinds of the chat clients (base.classify_http_error, base.error_text).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

import httpx
from pydantic import BaseModel

from trbench.backends.auth import auth_headers
from trbench.backends.base import ErrorKind, classify_http_error, error_text
from trbench.backends.streaming import dropped_before_answer

class EmbeddingExchange(BaseModel):
    """One embeddings request as observed. Times are time.perf_counter_ns() readings of this process."""

    backend: str
    url: str
    model: str
    n_texts: int
    sent_at_unix: float
    t_send_ns: int
    t_end_ns: int
    http_status: int | None = None
    n_vectors: int | None = None
    dims: int | None = None
    prompt_tokens: int | None = None  # as the server counts them
    server_total_ms: float | None = None
    server_load_ms: float | None = None
    status: Literal["ok", "error"] = "ok"
    error_kind: ErrorKind | None = None
    error_message: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.t_end_ns - self.t_send_ns) / 1e6

    def fail(self, kind: ErrorKind, message: str) -> EmbeddingExchange:
        self.status, self.error_kind, self.error_message = "error", kind, message
        return self


def _ollama_vectors(ex: EmbeddingExchange, data: dict) -> object:
    """Ollama's /api/embed: the vectors, its token count and durations (nanoseconds)."""
    ex.prompt_tokens = data.get("prompt_eval_count")
    if isinstance(data.get("total_duration"), (int, float)):
        ex.server_total_ms = data["total_duration"] / 1e6
    if isinstance(data.get("load_duration"), (int, float)):
        ex.server_load_ms = data["load_duration"] / 1e6
    return data.get("embeddings")


def _openai_vectors(ex: EmbeddingExchange, data: dict) -> object:
    """An OpenAI-compatible /v1/embeddings: a vector per item, the usage's token count."""
    items = data.get("data")
    ex.prompt_tokens = (data.get("usage") or {}).get("prompt_tokens")
    return [d.get("embedding") for d in items] if isinstance(items, list) and all(isinstance(d, dict) for d in items) else None


class EmbeddingsEndpoint(NamedTuple):
    """A protocol's embeddings endpoint: its path, whether a request carries options, how an answer reads."""

    path: str
    options: bool  # num_ctx in the request's options
    vectors: Callable[[EmbeddingExchange, dict], object]


OLLAMA_EMBED = EmbeddingsEndpoint("/api/embed", True, _ollama_vectors)
OPENAI_EMBED = EmbeddingsEndpoint("/v1/embeddings", False, _openai_vectors)


def body(endpoint: EmbeddingsEndpoint, model: str, texts: list[str], num_ctx: int | None = None) -> dict:
    """The request body: the texts as a list (a batch of one is a list of one)."""
    out: dict = {"model": model, "input": texts}
    if endpoint.options and num_ctx is not None:
        out["options"] = {"num_ctx": num_ctx}
    return out


def read_answer(ex: EmbeddingExchange, data: object, endpoint: EmbeddingsEndpoint) -> EmbeddingExchange:
    """The server's counts from a 200 answer; a bad_response when it does not hold a vector per text."""
    if not isinstance(data, dict):
        return ex.fail("bad_response", f"not a JSON object: {str(data)[:200]}")
    vectors = endpoint.vectors(ex, data)
    if not isinstance(vectors, list) or not all(isinstance(v, list) and v for v in vectors):
        return ex.fail("bad_response", f"no embeddings in the answer: {json.dumps(data)[:200]}")
    ex.n_vectors = len(vectors)
    ex.dims = len(vectors[0]) if vectors else None
    if ex.n_vectors != ex.n_texts:
        return ex.fail("bad_response", f"{ex.n_vectors} vectors for {ex.n_texts} texts")
    return ex


def transport_failure(err: httpx.HTTPError, url: str, timeout_s: float) -> tuple[ErrorKind, str]:
    """An exception of httpx as the chat clients name it (trbench.backends.streaming)."""
    if isinstance(err, httpx.TimeoutException):
        return "timeout", f"no complete answer within timeout_s={timeout_s:g} s ({type(err).__name__})"
    if isinstance(err, httpx.ConnectError):
        return "connect", f"cannot connect to {url}: {err}"
    return "bad_response", f"{type(err).__name__}: {err}"


class AsyncEmbeddingsClient:
    """Embeddings requests to one server over one pooled httpx.AsyncClient (up to `connections` at once)."""

    def __init__(self, backend: str, base_url: str, timeout_s: float = 60.0, connections: int = 1,
                 api_key_env: str | None = None) -> None:
        from trbench.backends import BACKEND_KINDS  # the package imports this module

        # any name: a row's backend column is a str, and one without an endpoint is refused here
        known = sorted(n for n, b in BACKEND_KINDS.items() if b.embeddings is not None)
        kind = BACKEND_KINDS.get(backend)
        if kind is None or kind.embeddings is None:
            raise ValueError(f"backend {backend!r} has no embeddings endpoint; fix: use one of {known}")
        self.backend = backend
        self.endpoint = kind.embeddings
        self.url = base_url.rstrip("/") + self.endpoint.path
        self.timeout_s = timeout_s
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        # trust_env off: a benchmark of a local server must never go through a proxy; the key (if the
        # server asks for one) goes with every request
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                                       limits=limits, trust_env=False, headers=auth_headers(api_key_env))

    async def embed(self, model: str, texts: list[str], num_ctx: int | None = None) -> EmbeddingExchange:
        payload = json.dumps(body(self.endpoint, model, texts, num_ctx)).encode()  # encoded before the clock starts
        for attempt in range(2):
            ex = EmbeddingExchange(backend=self.backend, url=self.url, model=model, n_texts=len(texts),
                                   sent_at_unix=time.time(), t_send_ns=0, t_end_ns=0)
            ex.t_send_ns = time.perf_counter_ns()
            try:
                resp = await self._http.post(self.url, content=payload, headers={"Content-Type": "application/json"})
                ex.t_end_ns = time.perf_counter_ns()  # httpx has read the whole body
                break
            except httpx.HTTPError as err:
                ex.t_end_ns = time.perf_counter_ns()
                if attempt == 0 and dropped_before_answer(ex.http_status, err):  # a kept-alive one just closed
                    continue
                return ex.fail(*transport_failure(err, self.url, self.timeout_s))
        ex.http_status = resp.status_code
        if resp.status_code >= 400:
            message = error_text(resp.content)
            return ex.fail(classify_http_error(resp.status_code, message), f"HTTP {resp.status_code}: {message}")
        try:
            data = resp.json()
        except ValueError:
            return ex.fail("bad_response", f"not JSON: {resp.text[:200]}")
        return read_answer(ex, data, self.endpoint)

    async def aclose(self) -> None:
        await self._http.aclose()
