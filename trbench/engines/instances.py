"""Instances: running LLM servers at one URL each, and the providers that start them.

An instance is prepared for a matrix cell before its runs: the embedded engine (re)starts
llama.cpp when the model, GPU layers or context size change, as Ollama reloads a model.
Every started process is stopped on every exit path: stop(), the context manager, atexit,
and, for a kill -9 of this process, the server's own parent watchdog.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Protocol

import httpx

from trbench.engines import bundled, gguf, ollama_api, processes
from trbench.engines.model_kind import kind_facts
from trbench.config.spec import Cell, MatrixSpec

SERVER_MODULE = "trbench.engines.llamacpp_server"


class InstanceError(RuntimeError):
    """An instance that would not start or answer; the message names instance, check and fix."""


class Instance(Protocol):
    """One running LLM server at one URL. Providers differ in how it starts; flows see only this."""

    name: str
    url: str
    provider: str

    def start(self) -> None:
        """Start the server if this provider starts one (idempotent); raise InstanceError if it cannot."""

    def prepare(self, cell: Cell) -> float | None:
        """Make the server ready for this cell; the load time in ms if it (re)loaded."""

    def unload(self, model: str) -> None:
        """Free the model's memory (serial mode, between models)."""

    def model_facts(self, model: str) -> dict:
        """Digest and metadata of a model on this instance, for the manifest."""

    def stop(self) -> None:
        """Stop and remove whatever start() created; safe to call twice and on every exit path."""


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None, name: str = "",
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


def default_threads(instances: int = 1) -> int:
    """CPU threads per llama.cpp server: the cores less one (for the client, Prefect and the OS),
    shared between the instances. llama.cpp's threads spin while waiting: more threads than free
    cores slow decoding by orders of magnitude (measured here: 150 -> under 1 tok/s)."""
    return max(1, ((os.cpu_count() or 1) - 1) // instances)


_LIVE: weakref.WeakSet[EmbeddedInstance] = weakref.WeakSet()


@atexit.register
def stop_all() -> None:
    """Stop every embedded server this process started (atexit, signal handlers, tests)."""
    for inst in list(_LIVE):
        inst.stop()


class EmbeddedInstance:
    provider = "embedded"

    def __init__(self, name: str, host: str, port: int, threads: int | None, log_dir: Path, load_timeout_s: float = 180):
        self.name = name
        self.host = host
        self.port = port
        self.threads = threads or default_threads()
        self.log_dir = log_dir
        self.load_timeout_s = load_timeout_s
        self.loaded: tuple[str, int, int] | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> None:
        return None  # the server starts at the first prepare(): model and context come with the cell

    def unload(self, model: str) -> None:
        if self.loaded and self.loaded[0] == model:
            self.stop()

    def prepare(self, cell: Cell) -> float | None:
        with self._lock:
            if self.loaded == cell.server_key and self.pid is not None:
                return None
            self._stop_locked()
            return self._start_locked(cell)

    def _start_locked(self, cell: Cell) -> float:
        model_path = bundled.resolve(cell.model)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{self.name}.log").open("ab")
        cmd = [
            sys.executable, "-m", SERVER_MODULE,
            "--model", str(model_path), "--alias", cell.model,
            "--host", self.host, "--port", str(self.port),
            "--ctx", str(cell.num_ctx), "--ngl", str(cell.num_gpu),
            "--threads", str(self.threads), "--parent-pid", str(os.getpid()),
        ]
        t0 = time.perf_counter()
        # own session: a Ctrl-C in the terminal reaches us, and we stop the server in order
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        _LIVE.add(self)
        try:
            wait_healthy(self.url, self.load_timeout_s, self._proc, self.name)
            check_served_names(self.url, self.name, cell.model)
        except BaseException:
            self._stop_locked()
            raise
        self.loaded = cell.server_key
        return (time.perf_counter() - t0) * 1000.0

    def model_facts(self, model: str) -> dict:
        path = bundled.resolve(model)
        facts = {k: v for k, v in gguf.model_facts(path).items() if k not in ("path", "tensor_types")}
        return {**facts, "model": model, "source": bundled.BUNDLED_MODELS[model], "digest": bundled.digest(path)}

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc, self.loaded = self._proc, None, None
        if proc is not None:
            processes.terminate(proc, 10)


class OllamaServed:
    """What every instance that trbench starts as an Ollama server answers the same way."""

    url: str
    spec: MatrixSpec

    def prepare(self, cell: Cell) -> float | None:
        return None  # Ollama loads per request (options.num_ctx/num_gpu); its load_duration says the cost

    def unload(self, model: str) -> None:
        ollama_api.unload(self.url, model, self.spec.load_timeout_s)

    def model_facts(self, model: str) -> dict:
        return ollama_api.model_facts(self.url, model)


class ExternalInstance:
    """A server someone else runs: trbench only health-checks and measures it."""

    provider = "external"

    def __init__(self, name: str, url: str, backend: str, load_timeout_s: float = 300.0):
        self.name = name
        self.url = url
        self.backend = backend
        self.load_timeout_s = load_timeout_s  # bounds an unload as a load

    def start(self) -> None:
        return None

    def prepare(self, cell: Cell) -> float | None:
        return None  # Ollama loads per request (options.num_ctx/num_gpu); its load_duration says the cost

    def unload(self, model: str) -> None:
        if self.backend == "ollama":
            ollama_api.unload(self.url, model, self.load_timeout_s)

    def model_facts(self, model: str) -> dict:
        if self.backend != "ollama":  # an OpenAI-compatible server does not say: assume a chat model
            return {"model": model, "digest": None, "source": self.url, **kind_facts(None)}
        return ollama_api.model_facts(self.url, model)

    def stop(self) -> None:
        return None


def unanswered(inst: Instance, backend: str, timeout_s: float = 5.0) -> str | None:
    """Why a server that failed once cannot be used again (it does not answer), or None. The
    embedded engine is started again by its next prepare(), so it always can."""
    if inst.provider == "embedded":
        return None
    path = "/api/version" if backend == "ollama" else "/v1/models"
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s), trust_env=False) as http:
            status = http.get(f"{inst.url}{path}").status_code
    except httpx.HTTPError as err:
        return f"{inst.url}{path} did not answer within {timeout_s:g} s ({type(err).__name__})"
    return None if status == 200 else f"{inst.url}{path} answered HTTP {status}"


def create_instances(spec: MatrixSpec, log_dir: Path, count: int = 1) -> list[Instance]:
    """The spec's first `count` instances, not started yet (the flow starts them after preflight)."""
    if spec.provider == "external":
        if len(spec.urls) < count:
            raise InstanceError(f"spec field 'urls': {count} instance(s) needed, {len(spec.urls)} URL(s) given; fix: list more urls")
        return [ExternalInstance(f"external-{i}", spec.urls[i], spec.backend, spec.load_timeout_s) for i in range(count)]
    ports = spec.instance_ports
    if len(ports) < count:
        raise InstanceError(f"spec field 'ports': {count} instance(s) needed, {len(ports)} port(s) given; fix: list more ports")
    gpus = spec.gpu_devices or []
    gpu_of = [gpus[i % len(gpus)] if gpus else None for i in range(count)]
    if spec.provider == "embedded":
        threads = spec.threads or default_threads(count)
        return [EmbeddedInstance(f"embedded-{i}", spec.host, ports[i], threads, log_dir, spec.load_timeout_s)
                for i in range(count)]
    if spec.provider == "ollama-docker":
        from trbench.engines.ollama_docker import OllamaContainerInstance

        return [OllamaContainerInstance(f"ollama-docker-{i}", spec, ports[i], gpu_of[i]) for i in range(count)]
    if spec.provider == "ollama-process":
        from trbench.engines.ollama_process import OllamaProcessInstance

        return [OllamaProcessInstance(f"ollama-process-{i}", spec, ports[i], gpu_of[i], log_dir) for i in range(count)]
    raise InstanceError(f"unknown provider {spec.provider!r}; fix: use embedded, external, ollama-docker or ollama-process")
