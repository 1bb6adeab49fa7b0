"""Provider 'embedded': llama.cpp's own HTTP server (xllamacpp), one OS process per instance,
serving a bundled GGUF model.

The server (re)starts when the model, GPU layers, context size or a server setting of the grid
(flash attention, KV cache type, batch sizes, threads, slots: trbench/engines/tuning.py) change,
as Ollama reloads a model. Every started process is stopped on every exit path: stop(), atexit, and, for a kill -9
of this process, the server's own parent watchdog (llamacpp_server --parent-pid).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from trbench.config.servers import EmbeddedServer
from trbench.data.cells import Cell
from trbench.data.model_facts import ModelFacts
from trbench.engines import bundled, gguf, processes, tuning
from trbench.engines.instance import Capabilities, Instance, InstanceError, check_served_names, wait_healthy

SERVER_MODULE = "trbench.engines.llamacpp_server"


def default_threads(instances: int = 1) -> int:
    """CPU threads per llama.cpp server: the cores less one (for the client, Prefect and the OS),
    shared between the instances. llama.cpp's threads spin while waiting: more threads than free
    cores slow decoding by orders of magnitude (measured here: 150 -> under 1 tok/s)."""
    return max(1, ((os.cpu_count() or 1) - 1) // instances)


# llama.cpp's log lines: "<time> <level letter> <message>"; E marks an error
_LLAMA_ERROR = re.compile(rb"^\S+ E (.+)$", re.MULTILINE)


def first_error(log_path: Path, offset: int) -> str:
    """The first error llama.cpp logged from `offset` on (why a server exited: a model it could not
    load, a context it could not allocate), else the log's last line."""
    try:
        with log_path.open("rb") as f:
            f.seek(offset)
            text = f.read(1_000_000)
    except OSError as err:
        return f"its log cannot be read: {err}"
    found = _LLAMA_ERROR.search(text)
    lines = text.strip().splitlines()
    line = found.group(1) if found else (lines[-1] if lines else b"its log is empty")
    return line.decode("utf-8", "replace").strip()[:300]


# "llama_kv_cache: size =   11.25 MiB (   512 cells,  30 layers,  1/1 seqs), K (f16):    5.62 MiB, V (f16):    5.62 MiB"
_KV_SIZE = re.compile(rb"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells.*?K \((\w+)\): +([\d.]+) MiB, "
                      rb"V \((\w+)\): +([\d.]+) MiB")


def kv_cache_log(log_path: Path, offset: int = 0) -> list[dict]:
    """The KV caches llama.cpp logged from `offset` on, one per context it made: total, cells, and
    the K and V types and sizes (MiB) as llama.cpp allocated them."""
    with log_path.open("rb") as f:
        f.seek(offset)
        text = f.read()
    return [{"mib": float(m[0]), "cells": int(m[1]), "k_type": m[2].decode(), "k_mib": float(m[3]),
             "v_type": m[4].decode(), "v_mib": float(m[5])} for m in _KV_SIZE.findall(text)]


_LIVE = processes.LiveSet()
stop_all = _LIVE.stop_all  # every embedded server this process started (atexit, signal handlers, tests)


class EmbeddedInstance(Capabilities):
    provider = "embedded"
    restarts_itself = True  # a llama.cpp server that died is started again by the next prepare()

    def __init__(self, name: str, host: str, port: int, threads: int | None, log_dir: Path, load_timeout_s: float = 180,
                 slots: int = 1):
        self.name = name
        self.host = host
        self.port = port
        self.threads = threads or default_threads()
        self.slots = slots  # requests decoded at once (llama.cpp n_parallel); each gets a whole num_ctx
        self.slots_now = slots  # as the running server was started (a cell's slots setting wins)
        self.log_dir = log_dir
        self.load_timeout_s = load_timeout_s
        self.loaded: tuple | None = None  # cell.server_key, or it and "embedding"
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
            return self._start_locked(cell.model, cell.num_ctx, cell.num_gpu, cell.server_key, tuning.llamacpp_args(cell),
                                      threads=cell.threads, slots=cell.slots)

    def prepare_embeddings(self, model: str, num_ctx: int, num_gpu: int = 0) -> float | None:
        """The server in embedding mode (/v1/embeddings, mean pooling) for `model`: a load of its own,
        as a generation cell's; the load time in ms if it (re)started."""
        key = (model, num_gpu, num_ctx, "embedding")  # never equal to a generation cell's server_key
        with self._lock:
            if self.loaded == key and self.pid is not None:
                return None
            self._stop_locked()
            return self._start_locked(model, num_ctx, num_gpu, key, ["--embedding"])

    @property
    def concurrency(self) -> dict[str, int]:
        """What the manifest records of how the server batches."""
        return {"slots": self.slots_now}

    def _start_locked(self, model: str, num_ctx: int, num_gpu: int, key: tuple, extra: list[str] | None = None,
                      threads: int | None = None, slots: int | None = None) -> float:
        model_path = bundled.resolve(model)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.name}.log"
        log = log_path.open("ab")
        log_start = log.tell()  # the log is kept across restarts: this start's lines begin here
        cmd = [
            sys.executable, "-m", SERVER_MODULE,
            "--model", str(model_path), "--alias", model,
            "--host", self.host, "--port", str(self.port),
            "--ctx", str(num_ctx), "--ngl", str(num_gpu), "--slots", str(slots or self.slots),
            "--threads", str(threads or self.threads), "--parent-pid", str(os.getpid()), *(extra or []),
        ]
        self.slots_now = slots or self.slots
        t0 = time.perf_counter()
        # own session: a Ctrl-C in the terminal reaches us, and we stop the server in order
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        _LIVE.add(self)
        try:
            wait_healthy(self.url, self.load_timeout_s, self._proc, self.name)
            check_served_names(self.url, self.name, model)
        except InstanceError as err:
            self._stop_locked()
            raise InstanceError(f"{err} ({model}; its log says: {first_error(log_path, log_start)}); "
                                f"fix: see the whole log, {log_path}") from None
        except BaseException:
            self._stop_locked()
            raise
        self.loaded = key
        return (time.perf_counter() - t0) * 1000.0

    def model_facts(self, model: str) -> ModelFacts:
        path = bundled.resolve(model)
        facts = {k: v for k, v in gguf.model_facts(path).items() if k not in ("path", "tensor_types")}
        return ModelFacts.model_validate({**facts, "model": model, "source": bundled.BUNDLED_MODELS[model],
                                         "digest": bundled.digest(path)})

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc, self.loaded = self._proc, None, None
        if proc is not None:
            processes.terminate(proc, 10)




def create(settings: EmbeddedServer, count: int, log_dir: Path, load_timeout_s: float, backend: str) -> list[Instance]:
    threads = settings.threads or default_threads(count)
    ports = settings.instance_ports()
    return [EmbeddedInstance(f"embedded-{i}", settings.host, ports[i], threads, log_dir, load_timeout_s, settings.slots)
            for i in range(count)]
