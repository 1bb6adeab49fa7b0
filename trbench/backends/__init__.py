"""Wire clients: one per protocol (OpenAI-compatible SSE, Ollama NDJSON), one raw record for both,
found by the spec's `backend` through BACKENDS."""

from collections.abc import Callable, Mapping
from typing import NamedTuple

from trbench.backends.base import ChatRequest, RawExchange, WireClient
from trbench.backends.embedding_clients import OLLAMA_EMBED, OPENAI_EMBED, EmbeddingsEndpoint
from trbench.backends.ollama import JSON_MODE as OLLAMA_JSON_MODE
from trbench.backends.ollama import OllamaClient, read_ndjson_chunk
from trbench.backends.openai import JSON_MODE as OPENAI_JSON_MODE
from trbench.backends.openai import SSE_PREFIX, OpenAIClient, read_sse_chunk
from trbench.backends.streaming import LineReader, replay_lines

class WireFormat(NamedTuple):
    """How one backend's stream is read: each line's prefix to strip, and the reader of its JSON."""

    read_line: LineReader
    strip_prefix: str


class Backend(NamedTuple):
    """One server protocol and what a server speaking it can do: the one place a backend's name
    decides anything (the rest of trbench asks these fields, never the name)."""

    client: type[OpenAIClient] | type[OllamaClient]
    wire: WireFormat
    health_path: str  # answers 200 while the server is up
    models_path: str  # lists the models it serves
    ollama_names: bool  # model names compared as Ollama does ("llama3.2" is "llama3.2:latest")
    pulls: bool  # fetches a model it lacks (Ollama's /api/pull)
    loads_per_request: bool  # loads a model with each request's options (num_ctx, num_gpu): preloaded explicitly
    unloads: bool  # frees a model's memory on request (Ollama: keep_alive 0)
    describes_models: bool  # digest and metadata of a model (Ollama's /api/show)
    listed: Callable[[dict], list[str]]  # the model names in the models_path answer
    json_mode: Mapping[str, object]  # the request body fields that ask for a JSON answer
    embeddings: EmbeddingsEndpoint | None  # where and how it embeds texts
    version_path: str | None  # answers {"version": ...} (Ollama's /api/version, vLLM's /version)


def _ollama_listed(data: dict) -> list[str]:
    return sorted({n for m in data.get("models", []) for n in (m.get("name"), m.get("model")) if n})


def _openai_listed(data: dict) -> list[str]:
    return sorted(m.get("id") for m in data.get("data", []) if m.get("id"))


BACKEND_KINDS: dict[str, Backend] = {
    "openai": Backend(OpenAIClient, WireFormat(read_sse_chunk, SSE_PREFIX), health_path="/v1/models",
                      models_path="/v1/models", ollama_names=False, pulls=False, loads_per_request=False,
                      unloads=False, describes_models=False, listed=_openai_listed, json_mode=OPENAI_JSON_MODE, embeddings=OPENAI_EMBED,
                      version_path="/version"),
    "ollama": Backend(OllamaClient, WireFormat(read_ndjson_chunk, ""), health_path="/api/version",
                      models_path="/api/tags", ollama_names=True, pulls=True, loads_per_request=True,
                      unloads=True, describes_models=True, listed=_ollama_listed, json_mode=OLLAMA_JSON_MODE, embeddings=OLLAMA_EMBED,
                      version_path="/api/version"),
}
BACKENDS: dict[str, type[OpenAIClient] | type[OllamaClient]] = {n: b.client for n, b in BACKEND_KINDS.items()}
WIRE_FORMATS: dict[str, WireFormat] = {n: b.wire for n, b in BACKEND_KINDS.items()}


def backend_kind(name: str) -> Backend:
    """What a server speaking this backend can do; ValueError naming the known ones."""
    kind = BACKEND_KINDS.get(name)
    if kind is None:
        raise ValueError(f"unknown backend {name!r}; use one of {', '.join(repr(b) for b in BACKEND_KINDS)}")
    return kind


def replay(ex: RawExchange, lines: list[tuple[int, str]]) -> RawExchange:
    """The exchange read from stream lines received elsewhere, each with its arrival time (ns, the same
    clock as ex.t_send_ns), exactly as the live clients read them."""
    wire = WIRE_FORMATS[ex.backend]
    return replay_lines(ex, lines, wire.read_line, wire.strip_prefix)


def make_client(backend: str, base_url: str, timeout_s: float, stall_timeout_s: float | None = 60.0,
                harness: str = "python", api_key_env: str | None = None) -> WireClient:
    """The wire client of a backend; with harness other than python, an external runner that sends the
    same requests (trbench.backends.external_runner). api_key_env: the variable holding the server's key."""
    client = BACKENDS.get(backend)
    if client is None:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(repr(b) for b in BACKENDS)}")
    if harness != "python":
        from trbench.backends.external_runner import ExternalRunnerClient  # it imports this package

        return ExternalRunnerClient(harness, backend, base_url, timeout_s, stall_timeout_s, api_key_env)
    return client(base_url, timeout_s, stall_timeout_s, api_key_env)


# last: the asynchronous client reads BACKENDS and WIRE_FORMATS from this package
from trbench.backends.async_client import AsyncWireClient  # noqa: E402

__all__ = ["AsyncWireClient", "BACKENDS", "BACKEND_KINDS", "Backend", "backend_kind", "WIRE_FORMATS", "WireFormat", "replay", "ChatRequest", "RawExchange", "WireClient", "OllamaClient", "OpenAIClient", "make_client"]
