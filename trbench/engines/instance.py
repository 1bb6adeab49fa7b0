"""Instances: running LLM servers at one URL each, as every provider's instances look to the flows.

An instance is prepared for a matrix cell before its runs: the embedded engine (re)starts
llama.cpp when the model, GPU layers or context size change, as Ollama reloads a model.
The providers (embedded.py, external.py, ollama_docker.py, ollama_process.py) are found through
registry.py; this module imports none of them.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any, Protocol

import httpx

from trbench.backends import backend_kind
from trbench.backends.auth import auth_headers
from trbench.data.cells import Cell
from trbench.data.model_facts import ModelFacts
from trbench.engines import ollama_api, tuning


class InstanceError(RuntimeError):
    """An instance that would not start or answer; the message names instance, check and fix."""


class Instance(Protocol):
    """One running LLM server at one URL. Providers differ in how it starts; flows see only this."""

    name: str
    provider: str

    @property
    def url(self) -> str:
        """The server's base URL (read-only: an instance computes it from its host and port)."""

    def start(self) -> None:
        """Start the server if this provider starts one (idempotent); raise InstanceError if it cannot."""

    def prepare(self, cell: Cell) -> float | None:
        """Make the server ready for this cell; the load time in ms if it (re)loaded."""

    def unload(self, model: str) -> None:
        """Free the model's memory (serial mode, between models)."""

    def model_facts(self, model: str) -> ModelFacts:
        """Digest and metadata of a model on this instance, for the manifest."""

    def stop(self) -> None:
        """Stop and remove whatever start() created; safe to call twice and on every exit path."""

    # what an instance can do beyond that, declared by its provider class (Capabilities: the defaults)
    starts_server: bool
    restarts_itself: bool
    any_model: bool
    api_key_env: str | None  # the variable holding the server's API key, sent with every request to it

    @property
    def threads(self) -> int | None: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def concurrency(self) -> dict[str, int] | None: ...

    def prepare_embeddings(self, model: str, num_ctx: int, num_gpu: int = 0) -> float | None: ...

    def remove_leftovers(self) -> list[str]: ...

    def pull_fix(self, model: str) -> str | None: ...


class Capabilities:
    """What an instance can do beyond starting, loading and answering, as each provider class
    declares it; these defaults are what an instance that says nothing can do: none of it."""

    starts_server = True  # False: a server trbench only uses (external): checked for an answer, never started
    restarts_itself = False  # started again by its next prepare(), so never unusable (the embedded engine)
    any_model = False  # answers to any model name (the mock): preflight finds every model
    threads: int | None = None  # the server's CPU threads, where trbench sets them
    api_key_env: str | None = None  # the servers trbench starts take no key; an external one may (its section says)

    @property
    def pid(self) -> int | None:
        """The local server process, where there is one (its CPU and memory are sampled)."""
        return None

    @property
    def concurrency(self) -> dict[str, int] | None:
        """How the server batches and queues, as trbench set it (embedded: slots; Ollama: num_parallel,
        max_queue); None where trbench does not configure it."""
        return None

    def prepare_embeddings(self, model: str, num_ctx: int, num_gpu: int = 0) -> float | None:
        """Make the server ready to embed texts with `model`; the load time in ms if it (re)loaded.
        By default nothing to do: the server loads the model at its first request."""
        return None

    def remove_leftovers(self) -> list[str]:
        """What a crashed earlier run left of this instance holding its port, removed; their names."""
        return []

    def pull_fix(self, model: str) -> str | None:
        """How to get a missing model onto this instance's model store; None: pulled by hand on its host."""
        return None


class Exited(Protocol):
    """What wait_healthy watches for an early exit: a process, or what answers as one does (a container)."""

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...


def wait_healthy(url: str, timeout_s: float, proc: Exited | None = None, name: str = "",
                 path: str = "/health") -> None:
    """Poll url+path until it answers 200 (llama.cpp: /health; Ollama: /api/version)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise InstanceError(f"instance {name}: server process exited with code {proc.returncode} while loading")
            try:
                r = http.get(f"{url}{path}")
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as err:
                last = type(err).__name__
            time.sleep(0.1)
    raise InstanceError(f"instance {name} at {url}: {path} did not answer 200 within {timeout_s:.0f} s ({last})")


def served_names(url: str) -> list[str]:
    """Every name an OpenAI-compatible server answers to (/v1/models: ids and llama.cpp's aliases)."""
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        data = http.get(f"{url}/v1/models").raise_for_status().json()
    return sorted({n for m in data.get("data", []) for n in [m.get("id"), *(m.get("aliases") or [])] if n})


def check_served_names(url: str, name: str, model: str) -> None:
    """The server must list exactly the model's name: a client asking for it by name must get it."""
    names = served_names(url)
    if names != [model]:
        raise InstanceError(f"instance {name} at {url}: /v1/models lists {names}, expected exactly [{model!r}]")


class OllamaServed(Capabilities):
    """What every instance that trbench starts as an Ollama server holds and answers the same way."""

    @property
    def url(self) -> str:
        raise NotImplementedError  # each provider's own address

    def __init__(self, name: str, settings: Any, port: int, gpu: str | None, load_timeout_s: float) -> None:
        self.name = name
        self.settings = settings  # the provider's own `server:` section
        self.load_timeout_s = load_timeout_s
        self.port = port
        self.gpu = gpu
        self._reaper: subprocess.Popen | None = None  # force-removes what was started if this process dies
        self._lock = threading.Lock()
        # the server environment the current cell's settings need (OLLAMA_FLASH_ATTENTION...), over the section's
        self.cell_environment: dict[str, str] = {}

    def start(self) -> None:
        raise NotImplementedError  # each provider's own

    def stop(self) -> None:
        raise NotImplementedError  # each provider's own

    def prepare(self, cell: Cell) -> float | None:
        """Ollama loads per request (options.num_ctx/num_gpu; its load_duration says the cost); only a
        change of the server-level settings (flash attention, KV cache type, parallel slots: its
        environment) restarts the server, and the restart time is returned."""
        wanted = tuning.ollama_environment(cell)
        if wanted == self.cell_environment:
            return None
        t0 = time.perf_counter()
        self.stop()
        self.cell_environment = wanted
        self.start()
        return (time.perf_counter() - t0) * 1000.0

    def cell_concurrency(self, section: dict[str, int]) -> dict[str, int]:
        """What the manifest records of how the server batches: the section's, or the cell's slots."""
        slots = self.cell_environment.get("OLLAMA_NUM_PARALLEL")
        return {**section, "num_parallel": int(slots)} if slots else section

    def unload(self, model: str) -> None:
        ollama_api.unload(self.url, model, self.load_timeout_s, api_key_env=self.api_key_env)

    def model_facts(self, model: str) -> ModelFacts:
        return ollama_api.model_facts(self.url, model, api_key_env=self.api_key_env)


def unanswered(inst: Instance, backend: str, timeout_s: float = 5.0) -> str | None:
    """Why a server that failed once cannot be used again (it does not answer), or None. The
    embedded engine is started again by its next prepare(), so it always can."""
    if inst.restarts_itself:
        return None
    path = backend_kind(backend).health_path
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), trust_env=False, headers=auth_headers(inst.api_key_env)) as http:
            status = http.get(f"{inst.url}{path}").status_code
    except httpx.HTTPError as err:
        return f"{inst.url}{path} did not answer within {timeout_s:g} s ({type(err).__name__})"
    return None if status == 200 else f"{inst.url}{path} answered HTTP {status}"
