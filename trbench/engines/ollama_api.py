"""Ollama's management API (docs/api.md): what preflight and the Ollama providers ask a server."""

from __future__ import annotations

import httpx

from trbench.backends.base import error_text
from trbench.engines.model_kind import kind_facts, ollama_has_chat_template
from trbench.engines.ollama_names import same_model


class OllamaAPIError(RuntimeError):
    pass


def _client(timeout_s: float = 30.0) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0), trust_env=False)


def version(url: str) -> str:
    with _client(5.0) as http:
        return http.get(f"{url}/api/version").raise_for_status().json().get("version", "")


def tags(url: str) -> list[dict]:
    """Local models (/api/tags): name, model, size, digest, details."""
    with _client() as http:
        return http.get(f"{url}/api/tags").raise_for_status().json().get("models", [])


def find_tag(url: str, model: str) -> dict | None:
    """The /api/tags entry of `model`, named as Ollama names it ("llama3.2" is "llama3.2:latest")."""
    for m in tags(url):
        if same_model(model, m.get("name")) or same_model(model, m.get("model")):
            return m
    return None


def show(url: str, model: str) -> dict:
    """/api/show: modelfile, parameters, template, details, model_info (the `ollama show` data)."""
    with _client() as http:
        r = http.post(f"{url}/api/show", json={"model": model})
    if r.status_code != 200:
        raise OllamaAPIError(f"/api/show {model}: HTTP {r.status_code}: {error_text(r.content)}")
    return r.json()


def unload(url: str, model: str) -> None:
    """Free the model's memory now (keep_alive 0), as serial mode needs between models."""
    with _client() as http:
        r = http.post(f"{url}/api/generate", json={"model": model, "keep_alive": 0})
    if r.status_code != 200:
        raise OllamaAPIError(f"unload {model}: HTTP {r.status_code}: {error_text(r.content)}")


def loaded(url: str) -> list[dict]:
    """/api/ps: models in memory, with size and size_vram."""
    with _client() as http:
        return http.get(f"{url}/api/ps").raise_for_status().json().get("models", [])


def model_facts(url: str, model: str) -> dict:
    """What the report records of an Ollama model: digest, details, parameters, context length."""
    tag = find_tag(url, model)
    if tag is None:
        return {"model": model, "source": url, "digest": None, "error": "not on the server"}
    info = show(url, model)
    model_info = info.get("model_info") or {}
    arch = model_info.get("general.architecture", "")
    return {
        "model": model,
        "source": url,
        "digest": tag.get("digest"),
        "size_bytes": tag.get("size"),
        "details": info.get("details") or tag.get("details") or {},
        "parameters": info.get("parameters"),
        "modelfile": info.get("modelfile"),
        "context_length": model_info.get(f"{arch}.context_length"),
        "architecture": {k.removeprefix(f"{arch}."): v for k, v in model_info.items()
                         if k.startswith(f"{arch}.") and not isinstance(v, list | dict)},
        **kind_facts(ollama_has_chat_template(info.get("template"))),
    }
