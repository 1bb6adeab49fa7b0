"""Ollama's management API (docs/api.md): what preflight and the Ollama providers ask a server."""

from __future__ import annotations

import json
import time

import httpx

from trbench.backends.auth import auth_headers
from trbench.backends.base import error_text, is_oom
from trbench.data.model_facts import ModelFacts
from trbench.engines.model_kind import kind_facts, ollama_has_chat_template
from trbench.engines.ollama_names import same_model


class OllamaAPIError(RuntimeError):
    """A management call that failed; kind is an error kind (timeout, connect, http_4xx, ...)."""

    def __init__(self, message: str, kind: str = "bad_response") -> None:
        super().__init__(message)
        self.kind = kind


def _client(timeout_s: float = 30.0, api_key_env: str | None = None) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), trust_env=False,
                        headers=auth_headers(api_key_env))


def call(method: str, url: str, what: str, body: dict | None = None, timeout_s: float = 30.0,
         api_key_env: str | None = None) -> httpx.Response:
    """One management call, bounded as a whole: httpx's timeout is per read, so a server that
    trickles bytes (or answers nothing) could otherwise hold the flow for ever. Raises
    OllamaAPIError naming what was asked and how it failed; any HTTP status is returned.
    api_key_env: the variable holding the key of a server that asks for one (an external server)."""
    deadline = time.monotonic() + timeout_s
    try:
        with _client(timeout_s, api_key_env) as http, http.stream(method, url, json=body) as r:
            chunks = []
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("answer not complete within the call's time", request=r.request)
            return httpx.Response(r.status_code, content=b"".join(chunks), request=r.request)
    except httpx.TimeoutException as err:
        raise OllamaAPIError(f"{what} at {url}: no answer within {timeout_s:g} s ({type(err).__name__})", "timeout") from None
    except httpx.ConnectError as err:
        raise OllamaAPIError(f"{what} at {url}: cannot connect ({err})", "connect") from None
    except httpx.HTTPError as err:
        raise OllamaAPIError(f"{what} at {url}: {type(err).__name__}: {err}") from None


def _json(r: httpx.Response, what: str) -> dict:
    if r.status_code != 200:
        message = error_text(r.content)
        kind = "oom" if is_oom(message) else "http_4xx" if r.status_code < 500 else "http_5xx"
        raise OllamaAPIError(f"{what}: HTTP {r.status_code}: {message}", kind)
    try:
        data = json.loads(r.content)
    except ValueError:
        raise OllamaAPIError(f"{what}: not JSON: {r.content[:200]!r}") from None
    if not isinstance(data, dict):
        raise OllamaAPIError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def version(url: str, timeout_s: float = 5.0) -> str:
    return _json(call("GET", f"{url}/api/version", "version", timeout_s=timeout_s), "/api/version").get("version", "")


def tags(url: str, timeout_s: float = 30.0, api_key_env: str | None = None) -> list[dict]:
    """Local models (/api/tags): name, model, size, digest, details."""
    return _json(call("GET", f"{url}/api/tags", "list models", timeout_s=timeout_s, api_key_env=api_key_env),
                 "/api/tags").get("models", [])


def find_tag(url: str, model: str, api_key_env: str | None = None) -> dict | None:
    """The /api/tags entry of `model`, named as Ollama names it ("llama3.2" is "llama3.2:latest")."""
    for m in tags(url, api_key_env=api_key_env):
        if same_model(model, m.get("name")) or same_model(model, m.get("model")):
            return m
    return None


def show(url: str, model: str, timeout_s: float = 30.0, api_key_env: str | None = None) -> dict:
    """/api/show: modelfile, parameters, template, details, model_info (the `ollama show` data)."""
    what = f"/api/show {model}"
    return _json(call("POST", f"{url}/api/show", what, {"model": model}, timeout_s, api_key_env), what)


def unload(url: str, model: str, timeout_s: float = 60.0, api_key_env: str | None = None) -> None:
    """Free the model's memory now, as serial mode needs between models: /api/generate with no
    prompt and keep_alive 0, which Ollama answers with one object, done_reason "unload"."""
    what = f"unload {model}"
    _json(call("POST", f"{url}/api/generate", what, {"model": model, "keep_alive": 0}, timeout_s, api_key_env), what)


def load(url: str, model: str, options: dict, timeout_s: float = 600.0, api_key_env: str | None = None) -> None:
    """Load a model now, as a request with these options would: /api/generate with no prompt
    (docs/api.md "Load a model"); the options reach the scheduler as a request's do, so a later
    request with the same num_ctx and num_gpu finds it loaded (server/sched.go needsReload)."""
    what = f"load {model}"
    body = {"model": model, "options": {k: v for k, v in options.items() if v is not None}}
    _json(call("POST", f"{url}/api/generate", what, body, timeout_s, api_key_env), what)


def loaded(url: str, timeout_s: float = 30.0) -> list[dict]:
    """/api/ps: models in memory, with size and size_vram."""
    return _json(call("GET", f"{url}/api/ps", "list loaded models", timeout_s=timeout_s), "/api/ps").get("models", [])


def model_facts(url: str, model: str, api_key_env: str | None = None) -> ModelFacts:
    """What the report records of an Ollama model: digest, details, parameters, context length."""
    tag = find_tag(url, model, api_key_env)
    if tag is None:
        return ModelFacts(model=model, source=url, digest=None, error="not on the server")
    info = show(url, model, api_key_env=api_key_env)
    model_info = info.get("model_info") or {}
    arch = model_info.get("general.architecture", "")
    return ModelFacts.model_validate({
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
        **kind_facts(ollama_has_chat_template(info.get("template"))).model_dump(),
    })
