"""Wire clients: one per protocol (OpenAI-compatible SSE, Ollama NDJSON), one raw record for both,
found by the spec's `backend` through BACKENDS."""

from trbench.backends.base import ChatRequest, RawExchange, WireClient
from trbench.backends.ollama import OllamaClient
from trbench.backends.openai import OpenAIClient

BACKENDS: dict[str, type[OpenAIClient] | type[OllamaClient]] = {"openai": OpenAIClient, "ollama": OllamaClient}


def make_client(backend: str, base_url: str, timeout_s: float, stall_timeout_s: float | None = 60.0) -> WireClient:
    client = BACKENDS.get(backend)
    if client is None:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(repr(b) for b in BACKENDS)}")
    return client(base_url, timeout_s, stall_timeout_s)


__all__ = ["BACKENDS", "ChatRequest", "RawExchange", "WireClient", "OllamaClient", "OpenAIClient", "make_client"]
