"""Wire clients: one per protocol, one raw record for both."""

from trbench.backends.base import ChatRequest, RawExchange, WireClient
from trbench.backends.ollama import OllamaClient
from trbench.backends.openai import OpenAIClient


def make_client(backend: str, base_url: str, timeout_s: float, stall_timeout_s: float | None = 60.0) -> WireClient:
    if backend == "openai":
        return OpenAIClient(base_url, timeout_s, stall_timeout_s)
    if backend == "ollama":
        return OllamaClient(base_url, timeout_s, stall_timeout_s)
    raise ValueError(f"unknown backend {backend!r}; use 'openai' or 'ollama'")


__all__ = ["ChatRequest", "RawExchange", "WireClient", "OllamaClient", "OpenAIClient", "make_client"]
