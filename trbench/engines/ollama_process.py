"""Provider 'ollama-process': one `ollama serve` subprocess per instance.

Each instance runs `<server.binary> serve` in its own process group (start_new_session) with
OLLAMA_HOST=127.0.0.1:<port> (never 0.0.0.0: the benchmark servers are not for the network),
the spec's model store (OLLAMA_MODELS), OLLAMA_KEEP_ALIVE pinned, OLLAMA_NUM_PARALLEL and
OLLAMA_MAX_QUEUE from server.num_parallel / server.max_queue (a user's own settings would change
what is measured), CUDA_DEVICE_ORDER=PCI_BUS_ID and, when the
instance has GPUs, CUDA_VISIBLE_DEVICES=<gpu>. "all" leaves CUDA_VISIBLE_DEVICES unset: CUDA
reads the literal "all" as no valid device, and Ollama would silently run on the CPU. Other
OLLAMA_* variables of the calling environment pass through, with a warning naming them.
Its output goes to <log_dir>/<name>.log.

`ollama serve` starts runner subprocesses in its process group, and it cannot watch its parent
itself, so the whole group is stopped on every exit path: stop() (SIGTERM, then SIGKILL after
stop_timeout_s), atexit, and a reaper (trbench.engines.reaper) that SIGKILLs the group if this
process dies without cleaning up (kill -9).

Ollama loads models per request (options.num_ctx/num_gpu), so prepare() has nothing to do; its
load_duration says the cost.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from trbench.config.servers import OllamaProcessServer
from trbench.engines import ollama_api, processes, reaper
from trbench.engines.instance import Instance, InstanceError, OllamaServed, wait_healthy

LOOPBACK = "127.0.0.1"
SERVICE_MODELS_DIR = "/usr/share/ollama/.ollama/models"  # install.sh's systemd service (user ollama)
# models stay loaded between the runs of a cell (serial mode unloads them explicitly); one request at
# a time per model, so the KV cache is num_ctx as the VRAM estimate assumes (Ollama allocates
# num_ctx x OLLAMA_NUM_PARALLEL); GPU indices in bus order, as NVML and docker number them
PINNED_ENVIRONMENT = {"OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_NUM_PARALLEL": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
_PINNED_NAMES = {"OLLAMA_HOST", "OLLAMA_MODELS", "OLLAMA_MAX_QUEUE", *PINNED_ENVIRONMENT}

log = logging.getLogger(__name__)

_LIVE = processes.LiveSet()
stop_all = _LIVE.stop_all  # every `ollama serve` this process started (atexit, signal handlers, tests)


def _port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _killpg(pgid: int, sig: int) -> bool:
    """Signal a process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OllamaProcessInstance(OllamaServed):
    """An `ollama serve` process on 127.0.0.1:<port>, optionally pinned to one GPU."""

    provider = "ollama-process"
    settings: OllamaProcessServer
    stop_timeout_s: float = 10.0  # SIGTERM -> SIGKILL

    def __init__(self, name: str, settings: OllamaProcessServer, port: int, gpu: str | None, log_dir: Path,
                 load_timeout_s: float = 300.0):
        super().__init__(name, settings, port, gpu, load_timeout_s)
        self.log_dir = Path(log_dir)
        self.binary = settings.binary
        self._proc: subprocess.Popen | None = None

    # --- identity ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ollama_host(self) -> str:
        """The OLLAMA_HOST value `ollama serve` gets."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The `ollama serve` process (also its process group id) while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def concurrency(self) -> dict[str, int]:
        return self.cell_concurrency(self.settings.concurrency())

    @property
    def models_dir(self) -> str:
        return os.path.expanduser(self.settings.models_dir)

    def pull_fix(self, model: str) -> str:
        return (f"`OLLAMA_MODELS={self.models_dir} ollama pull {model}` (the store the spec field server.models_dir "
                f"(flat: ollama_models_dir) names; a Linux service install keeps models in {SERVICE_MODELS_DIR}: point "
                f"it there), or set server.pull_models: true in the spec")

    def environment(self) -> dict[str, str]:
        """The environment `ollama serve` runs with: ours, with what trbench relies on pinned."""
        env = dict(os.environ)
        env.update(PINNED_ENVIRONMENT)
        env.update(self.settings.concurrency_environment())  # server.num_parallel, server.max_queue
        env.update(self.cell_environment)  # the cell's flash attention, KV cache type, slots
        env["OLLAMA_HOST"] = self.ollama_host
        env["OLLAMA_MODELS"] = self.models_dir
        if self.gpu == "all":
            env.pop("CUDA_VISIBLE_DEVICES", None)  # every GPU; "all" is not a value CUDA knows
        elif self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self.pid is not None:
                return
            self._stop_locked()  # a server that exited on its own: collect it and its reaper
            self._start_locked()

    def _start_locked(self) -> None:
        binary = shutil.which(self.binary)
        if binary is None:
            raise InstanceError(
                f"instance {self.name}: check 'ollama binary': {self.binary!r} not found on PATH; "
                f"fix: install ollama (https://ollama.com/download) or set server.binary (flat: ollama_binary) to its path")
        if _port_answers(LOOPBACK, self.port):
            try:
                other = f"Ollama {ollama_api.version(self.url)}"
            except Exception:  # noqa: BLE001 - whatever it is, the port is taken
                other = "another server"
            raise InstanceError(
                f"instance {self.name}: check 'port free': {LOOPBACK}:{self.port} already answers "
                f"({other} is there); fix: stop it or choose other ports")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        inherited = sorted(k for k in env if k.startswith("OLLAMA_") and k not in _PINNED_NAMES
                           and k not in self.cell_environment)
        if inherited:
            log.warning("instance %s: `ollama serve` inherits %s from this environment; they may change what is "
                        "measured", self.name, ", ".join(f"{k}={env[k]}" for k in inherited))
        with self.log_path.open("ab") as out:
            # own session: a terminal Ctrl-C reaches us, and we stop the group in order
            self._proc = subprocess.Popen([binary, "serve"], env=env, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE.add(self)
        try:
            self._reaper = reaper.spawn(pgids=[self._proc.pid])
            wait_healthy(self.url, self.load_timeout_s, self._proc, self.name, path="/api/version")
            if self._proc.poll() is not None:  # another server took the port and answered for it
                raise InstanceError(f"instance {self.name}: server process exited with code {self._proc.returncode}")
        except BaseException as err:
            self._stop_locked()
            if isinstance(err, InstanceError):
                raise InstanceError(f"{err}; 'ollama serve' log: {self.log_path}") from None
            raise

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        reaper_proc, self._reaper = self._reaper, None
        if proc is not None:
            pgid = proc.pid  # start_new_session: the group id is the leader's pid
            if proc.poll() is None:
                _killpg(pgid, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            # the leader gone or stuck: nothing of its group (runners) may outlive it
            _killpg(pgid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if reaper_proc is not None:
            processes.terminate(reaper_proc, 5)
        _LIVE.discard(self)

    def __enter__(self) -> OllamaProcessInstance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create(settings: OllamaProcessServer, count: int, log_dir: Path, load_timeout_s: float, backend: str) -> list[Instance]:
    ports = settings.instance_ports()
    return [OllamaProcessInstance(f"ollama-process-{i}", settings, ports[i], settings.gpu_of(i), log_dir, load_timeout_s)
            for i in range(count)]
