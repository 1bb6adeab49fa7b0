"""Provider 'external': servers someone else runs, at the URLs the spec gives."""

from __future__ import annotations

from pathlib import Path

from trbench.backends import backend_kind
from trbench.config.servers import ExternalServer
from trbench.data.cells import Cell
from trbench.engines import ollama_api
from trbench.engines.instance import Capabilities, Instance
from trbench.data.model_facts import ModelFacts
from trbench.engines.model_kind import kind_facts


class ExternalInstance(Capabilities):
    """A server someone else runs: trbench only health-checks and measures it."""

    provider = "external"
    starts_server = False

    def __init__(self, name: str, url: str, backend: str, load_timeout_s: float = 300.0,
                 api_key_env: str | None = None):
        self.name = name
        self.url = url
        self.backend = backend
        self.load_timeout_s = load_timeout_s  # bounds an unload as a load
        self.api_key_env = api_key_env  # the variable holding the server's key (server.api_key_env), never the key

    def start(self) -> None:
        return None

    def prepare(self, cell: Cell) -> float | None:
        return None  # Ollama loads per request (options.num_ctx/num_gpu); its load_duration says the cost

    def unload(self, model: str) -> None:
        if backend_kind(self.backend).unloads:
            ollama_api.unload(self.url, model, self.load_timeout_s, api_key_env=self.api_key_env)

    def model_facts(self, model: str) -> ModelFacts:
        if not backend_kind(self.backend).describes_models:  # an OpenAI-compatible server does not say: assume a chat model
            return ModelFacts(model=model, digest=None, source=self.url, **kind_facts(None).model_dump())
        return ollama_api.model_facts(self.url, model, api_key_env=self.api_key_env)

    def stop(self) -> None:
        return None




def create(settings: ExternalServer, count: int, log_dir: Path, load_timeout_s: float, backend: str) -> list[Instance]:
    return [ExternalInstance(f"external-{i}", settings.urls[i], backend, load_timeout_s, settings.api_key_env)
            for i in range(count)]
