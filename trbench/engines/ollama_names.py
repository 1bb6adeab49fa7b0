"""Ollama model names compared as Ollama compares them.

ollama/ollama types/model/name.go: a name is [host/][namespace/]model[:tag] with defaults
registry.ollama.ai, library and latest, and two names are the same model when their parts match
case-insensitively (Name.EqualFold). /api/tags lists the shortest form with the tag
("llama3.2:latest"), while /api/chat takes "llama3.2" as well: compare canonical forms, never the
strings as given.
"""

from __future__ import annotations

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"


def canonical(name: str) -> str:
    """host/namespace/model:tag, defaults filled in, lower case."""
    rest, tag = name.strip(), DEFAULT_TAG
    if rest.rfind(":") > rest.rfind("/"):  # a colon after the last slash is the tag, not a host port
        rest, tag = rest.rsplit(":", 1)
        tag = tag or DEFAULT_TAG
    parts = rest.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) >= 3 else DEFAULT_HOST
    return f"{host}/{namespace}/{model}:{tag}".lower()


def same_model(a: str | None, b: str | None) -> bool:
    return bool(a and b and canonical(a) == canonical(b))


def find(name: str, names: list[str]) -> str | None:
    """The entry of `names` (as a server lists them) that is the model `name`, or None."""
    return next((n for n in names if same_model(name, n)), None)
