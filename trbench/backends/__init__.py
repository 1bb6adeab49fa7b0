"""Wire clients: one per protocol (OpenAI-compatible SSE, Ollama NDJSON), one raw record for both,
found by the spec's `backend` through BACKENDS."""

from typing import NamedTuple

from trbench.backends.base import ChatRequest, RawExchange, WireClient
from trbench.backends.ollama import OllamaClient, read_ndjson_chunk
from trbench.backends.openai import SSE_PREFIX, OpenAIClient, read_sse_chunk
from trbench.backends.streaming import LineReader, replay_lines

BACKENDS: dict[str, type[OpenAIClient] | type[OllamaClient]] = {"openai": OpenAIClient, "ollama": OllamaClient}


class WireFormat(NamedTuple):
    """How one backend's stream is read: each line's prefix to strip, and the reader of its JSON."""

    read_line: LineReader
    strip_prefix: str


WIRE_FORMATS: dict[str, WireFormat] = {
    "openai": WireFormat(read_sse_chunk, SSE_PREFIX),
    "ollama": WireFormat(read_ndjson_chunk, ""),
}


def replay(ex: RawExchange, lines: list[tuple[int, str]]) -> RawExchange:
    """The exchange read from stream lines received elsewhere, each with its arrival time (ns, the same
    clock as ex.t_send_ns), exactly as the live clients read them."""
    wire = WIRE_FORMATS[ex.backend]
    return replay_lines(ex, lines, wire.read_line, wire.strip_prefix)


def make_client(backend: str, base_url: str, timeout_s: float, stall_timeout_s: float | None = 60.0,
                harness: str = "python") -> WireClient:
    """The wire client of a backend; with harness other than python, an external runner that sends the
    same requests (trbench.backends.external_runner)."""
    client = BACKENDS.get(backend)
    if client is None:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(repr(b) for b in BACKENDS)}")
    if harness != "python":
        from trbench.backends.external_runner import ExternalRunnerClient  # it imports this package

        return ExternalRunnerClient(harness, backend, base_url, timeout_s, stall_timeout_s)
    return client(base_url, timeout_s, stall_timeout_s)


# last: the asynchronous client reads BACKENDS and WIRE_FORMATS from this package
from trbench.backends.async_client import AsyncWireClient  # noqa: E402

__all__ = ["AsyncWireClient", "BACKENDS", "WIRE_FORMATS", "WireFormat", "replay", "ChatRequest", "RawExchange", "WireClient", "OllamaClient", "OpenAIClient", "make_client"]
