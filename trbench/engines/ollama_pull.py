"""Pulling a model into an Ollama server, streamed.

Ollama's POST /api/pull with "stream": false answers nothing until the whole download is done,
which for a multi-GB model outlasts any sensible read timeout; and the pull runs under the
request's context, so a client that gives up cancels it (ollama/ollama server/routes.go
PullHandler). Streamed, the server sends a progress line as the layers download, so every read
is short and the progress can be shown. A failure after the stream began comes as an
{"error": ...} line with HTTP 200 (streamResponse), not as an HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from pydantic import BaseModel

from trbench.backends.base import error_text
from trbench.engines.ollama_api import OllamaAPIError

# a long silence between progress lines means the pull is stuck; the whole pull may take hours
READ_TIMEOUT_S = 300.0


class PullProgress(BaseModel):
    model: str
    status: str  # "pulling manifest", "pulling <digest>", "verifying sha256 digest", "success", ...
    completed: int = 0  # bytes of the layer being downloaded
    total: int = 0


def pull(url: str, model: str, on_progress: Callable[[PullProgress], None] | None = None,
         read_timeout_s: float | None = None) -> None:
    """Pull `model` into the server at `url`, reporting each progress line; OllamaAPIError names
    the model and what the server (or the connection) said."""
    read_timeout_s = read_timeout_s or READ_TIMEOUT_S
    timeout = httpx.Timeout(read_timeout_s, connect=10.0)
    last = ""
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as http, \
                http.stream("POST", f"{url}/api/pull", json={"model": model, "stream": True}) as r:
            if r.status_code != 200:
                raise OllamaAPIError(f"pull {model}: HTTP {r.status_code}: {error_text(r.read())}")
            for line in r.iter_lines():
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError:
                    raise OllamaAPIError(f"pull {model}: not JSON: {line[:200]}") from None
                if data.get("error"):
                    raise OllamaAPIError(f"pull {model}: {data['error']}")
                last = str(data.get("status", ""))
                if on_progress is not None:
                    on_progress(PullProgress(model=model, status=last, completed=int(data.get("completed") or 0),
                                             total=int(data.get("total") or 0)))
    except httpx.TimeoutException as err:
        raise OllamaAPIError(f"pull {model}: no progress from {url} for {read_timeout_s:g} s "
                             f"({type(err).__name__})") from None
    except httpx.HTTPError as err:
        raise OllamaAPIError(f"pull {model}: {type(err).__name__}: {err}") from None
    if last != "success":
        raise OllamaAPIError(f"pull {model}: the stream ended without success (last status {last!r})")
