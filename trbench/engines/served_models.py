"""The models a server has, asked before any spec exists (`trbench init` lists them to choose from):
an Ollama server's GET /api/tags, an OpenAI-compatible server's GET /v1/models (each backend's
models_path and reading of it), or the embedded engine's bundled GGUF models by their Ollama-style
names. A server that does not answer is one line naming the URL and the fix."""

from __future__ import annotations

import httpx

from trbench.backends import backend_kind
from trbench.backends.auth import MissingApiKey, auth_headers
from trbench.config.scaffold import ServerKind
from trbench.engines.bundled import BUNDLED_MODELS

# a server on this machine answers its model list at once; one that does not within this is not there
LIST_TIMEOUT_S = 10.0


class ServerUnreachable(RuntimeError):
    """A server that did not list its models; str() is one line naming the URL and the fix."""


def available_models(kind: ServerKind, urls: list[str], api_key_env: str | None = None,
                     timeout_s: float = LIST_TIMEOUT_S) -> list[str]:
    """The model names a spec for this kind of server may name, sorted: with two servers (the
    multi-agent runs use both), those both have."""
    if kind.default_url is None:
        return sorted(BUNDLED_MODELS)
    first, *others = [listed_models(kind, url, api_key_env, timeout_s) for url in urls]
    common = [m for m in first if all(m in other for other in others)]
    if not common:
        raise ServerUnreachable(f"the servers at {' and '.join(urls)} have no model in common (the multi-agent runs "
                                "use the same models on both); fix: make one model available on both")
    return common


def listed_models(kind: ServerKind, url: str, api_key_env: str | None = None,
                  timeout_s: float = LIST_TIMEOUT_S) -> list[str]:
    """The names one server lists (api_key_env: the variable holding its key, for one that asks)."""
    backend = backend_kind(kind.backend)
    try:
        headers = auth_headers(api_key_env)
    except MissingApiKey as err:
        raise ServerUnreachable(str(err)) from None
    where = f"{url.rstrip('/')}{backend.models_path}"
    start = "start the server (`ollama serve`)" if kind.backend == "ollama" else "start the server"
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), trust_env=False,
                          headers=headers) as http:
            r = http.get(where)
    except httpx.HTTPError as err:
        raise ServerUnreachable(f"no {_server(kind)} answers at {url} ({type(err).__name__}: {err or 'no answer'}); "
                                f"fix: {start}, or check the URL (--url)") from None
    if r.status_code in (401, 403):
        fix = (f"check the key in {api_key_env}" if api_key_env else
               "export the key (e.g. TRBENCH_API_KEY=...) and give --api-key-env TRBENCH_API_KEY")
        raise ServerUnreachable(f"{where} answered HTTP {r.status_code}: the server asks for an API key"
                                f"{' and refused it' if api_key_env else ''}; fix: {fix}")
    if r.status_code != 200:
        raise ServerUnreachable(f"{where} answered HTTP {r.status_code}: not an {_server(kind)}; fix: check the URL (--url) "
                                f"and --provider")
    try:
        data = r.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ServerUnreachable(f"{where} did not answer a JSON object: not an {_server(kind)}; fix: check the URL (--url) "
                                "and --provider")
    names = backend.listed(data)
    if not names:
        pull = "pull one (`ollama pull llama3.2`)" if kind.backend == "ollama" else "start the server with a model"
        raise ServerUnreachable(f"the server at {url} lists no model ({where}); fix: {pull}, then run this again")
    return names


def _server(kind: ServerKind) -> str:
    return "Ollama server" if kind.backend == "ollama" else "OpenAI-compatible server"
