"""Provider 'mock': the mock server of trbench/engines/mock_server.py, one per port, in this
process. For testing the harness (smoke runs, the suites' checks, the report) with no model: what
it measures is trbench's own overhead and its canned answers, never a model's speed or quality.
A spec with provider mock is kept apart from real TRs (trbench/config/spec.py, MatrixSpec)."""

from __future__ import annotations

from pathlib import Path

from trbench.config.servers import MockServer
from trbench.data.cells import Cell
from trbench.engines.instance import Capabilities, Instance
from trbench.data.model_facts import ModelFacts
from trbench.engines.model_kind import kind_facts
from trbench.engines.mock_server import MockHTTPServer, Pace, serve

HOST = "127.0.0.1"


class MockInstance(Capabilities):
    provider = "mock"
    any_model = True  # preflight: every model name is served

    def __init__(self, name: str, port: int, pace: Pace):
        self.name = name
        self.port = port
        self.pace = pace
        self._server: MockHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        if self._server is None:
            self._server, _ = serve(HOST, self.port, self.pace, [])

    def prepare(self, cell: Cell) -> float | None:
        self.start()  # a stopped mock starts again, as a dead server is restarted
        return None

    def unload(self, model: str) -> None:
        return None

    def model_facts(self, model: str) -> ModelFacts:
        return ModelFacts(model=model, digest=None, source="mock server", **kind_facts(None).model_dump())

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def create(settings: MockServer, count: int, log_dir: Path, load_timeout_s: float, backend: str) -> list[Instance]:
    pace = Pace(first_token_ms=settings.first_token_ms, token_ms=settings.token_ms,
                invalid_every=settings.invalid_every)
    return [MockInstance(f"mock-{i}", port, pace) for i, port in enumerate(settings.instance_ports()[:count])]
