"""The instance providers by name: the spec's `provider` picks one, its `server:` section configures it.

A provider is a module with `create(settings, count, log_dir, load_timeout_s, backend)` returning
its instances, not started yet. It is imported when first used: the docker SDK loads only for
ollama-docker. A new provider is one module and one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from trbench.config.servers import ServerSettings
from trbench.engines.instance import Instance, InstanceError
from trbench.prose import count as plural

PROVIDERS = {
    "embedded": "trbench.engines.embedded",
    "external": "trbench.engines.external",
    "ollama-docker": "trbench.engines.ollama_docker",
    "ollama-process": "trbench.engines.ollama_process",
    "mock": "trbench.engines.mock",  # harness tests only: canned answers, never a measurement
}


def _check_count(settings: ServerSettings, count: int) -> None:
    if settings.provider == "external":
        if len(settings.urls) < count:
            raise InstanceError(f"spec field 'urls': {plural(count, 'instance')} needed, {plural(len(settings.urls), 'URL')} given; "
                                "fix: list more urls")
        return
    ports = settings.instance_ports()
    if len(ports) < count:
        raise InstanceError(f"spec field 'ports': {plural(count, 'instance')} needed, {plural(len(ports), 'port')} given; "
                            "fix: list more ports")


def create_instances(settings: ServerSettings, log_dir: Path, count: int = 1, *, load_timeout_s: float = 300.0,
                     backend: str = "openai") -> list[Instance]:
    """The first `count` instances of the provider, not started yet (the flow starts them after preflight)."""
    module = PROVIDERS.get(settings.provider)
    if module is None:
        raise InstanceError(f"unknown provider {settings.provider!r}; fix: use one of {', '.join(PROVIDERS)}")
    _check_count(settings, count)
    return importlib.import_module(module).create(settings, count, log_dir, load_timeout_s, backend)
