"""The ollama-docker provider: one `ollama/ollama` container per instance, through the docker SDK.

Each instance is a container named trbench-<instance> with Ollama's port 11434 published on
127.0.0.1:<port> only (never on every address: the benchmark server is not for the network),
the shared model volume mounted at /root/.ollama (models are pulled once, for all
instances), the instance's GPU as a device request, and the labels trbench.managed=true and
trbench.instance=<instance> by which a later run finds and removes what a killed run left.

Cleanup on every exit path: stop() (and the atexit hook) stop and remove the container, and a
reaper process (trbench.engines.reaper) force-removes it if this process dies without cleaning
up (kill -9). The reaper reaches the engine through docker.from_env(): DOCKER_HOST etc. of this
process's environment, which is also what the default client factory uses.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any
from pathlib import Path

import docker
import docker.errors
import requests
from docker.types import DeviceRequest, Mount

from trbench.config.servers import OllamaDockerServer
from trbench.engines import processes, reaper
from trbench.engines.instance import Instance, InstanceError, OllamaServed, wait_healthy

log = logging.getLogger(__name__)

CONTAINER_PORT = "11434/tcp"
MODELS_PATH = "/root/.ollama"  # where the ollama/ollama image keeps its models
LABEL_MANAGED = "trbench.managed"
LABEL_INSTANCE = "trbench.instance"
LABEL_OWNER = "trbench.owner"  # "<hostname>:<pid>" of the process that started the container
STOP_TIMEOUT_S = 3
# Ollama inside the container listens on every container address (the host side is 127.0.0.1
# only); models stay loaded between the runs of a cell (serial mode unloads them explicitly); one
# request at a time per model unless server.num_parallel says more (the KV cache is num_ctx x
# OLLAMA_NUM_PARALLEL; the VRAM estimate assumes 1), OLLAMA_MAX_QUEUE from server.max_queue (the
# section's values replace these defaults); CUDA numbers GPUs in bus order, as docker's device ids
# and NVML do (CUDA's default is fastest first).
DEFAULT_ENVIRONMENT = {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_NUM_PARALLEL": "1",
                       "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


def container_name(instance: str) -> str:
    return f"trbench-{instance}"


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def device_requests(gpu: str | None) -> list[DeviceRequest]:
    """None: no GPU; "all": every GPU; otherwise one device id (index or UUID, as nvidia-smi lists them)."""
    if gpu is None:
        return []
    if gpu == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=[str(gpu)], capabilities=[["gpu"]])]


def gpu_environment(gpu: str | None) -> dict[str, str]:
    """No GPU asked: NVIDIA_VISIBLE_DEVICES=void. The ollama/ollama image sets it to "all", so on a
    host whose default runtime is nvidia a container without a device request would still get every
    GPU; "void" makes the NVIDIA runtime behave as runc (no GPU, no driver libraries)."""
    return {"NVIDIA_VISIBLE_DEVICES": "void"} if gpu is None else {}


def image_ref(image: str) -> tuple[str, str]:
    """'repo[:tag|@digest]' -> (repo, tag or digest); registries with a port keep their port."""
    repo, tag = docker.utils.parse_repository_tag(image)
    return repo, tag or "latest"


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _explain(err: BaseException) -> str:
    if isinstance(err, docker.errors.APIError) and err.explanation:
        return _one_line(err.explanation)
    return _one_line(err) or type(err).__name__


def connect(name: str, client_factory: Callable[[], docker.DockerClient] = docker.from_env) -> docker.DockerClient:
    """A client of the Docker engine, or InstanceError naming the instance, the check and the fix."""
    try:
        client = client_factory()
        client.ping()
        return client
    except _ENGINE_ERRORS as err:
        raise InstanceError(
            f"instance {name}: docker engine not reachable ({_explain(err)}); fix: start Docker "
            f"(or point DOCKER_HOST at it), or use provider ollama-process or external") from err


def ensure_image(client: docker.DockerClient, image: str, name: str = "") -> str:
    """The image's id; pulled first when the engine does not have it (never re-pulled when present)."""
    try:
        return client.images.get(image).id
    except docker.errors.NotFound:
        pass
    repo, tag = image_ref(image)
    log.info("instance %s: pulling docker image %s", name, image)
    error = None
    try:
        # dockerd answers an HTTP error when the pull fails before any progress was written
        # (api/server/router/image/image_routes.go postImagesCreate), which docker-py raises
        # before streaming (docker/api/image.py pull, 7.x); a later failure is an error line
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if isinstance(event, dict) and (event.get("error") or event.get("errorDetail")):
                error = event.get("error") or (event.get("errorDetail") or {}).get("message")
        return client.images.get(image).id
    except _ENGINE_ERRORS as err:
        raise InstanceError(
            f"instance {name}: docker image {image} could not be pulled ({_one_line(error or _explain(err))}); "
            f"fix: check server.image (flat: docker_image) and the engine's registry access, or `docker pull {image}`; "
            f"a host that reaches no registry: `docker save {image}` where it is and `docker load` it here") from err


def ensure_volume(client: docker.DockerClient, volume: str) -> None:
    """The shared model volume: created once, then found by every instance (and every later run)."""
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(name=volume, driver="local", labels={LABEL_MANAGED: "true"})


def remove_stale(client: docker.DockerClient, instance: str) -> list[str]:
    """Remove containers of this instance name that an earlier run left (label trbench.instance, or the
    container name when trbench made it); the ids removed. A container whose owner process is alive on
    this host (another run going on) is not touched: InstanceError says so."""
    found = {c.id: c for c in client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"})}
    try:
        by_name = client.containers.get(container_name(instance))
        if by_name.labels.get(LABEL_MANAGED) == "true":
            found.setdefault(by_name.id, by_name)
    except docker.errors.NotFound:
        pass
    removed = []
    for cid, c in found.items():
        host, _, pid = (c.labels.get(LABEL_OWNER) or "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and reaper.pid_alive(int(pid)):
            raise InstanceError(
                f"instance {instance}: container {c.name} belongs to trbench process {pid}, which is still running; "
                f"fix: let that run finish or stop it (two runs cannot use the same instance names at once)")
        log.warning("instance %s: removing stale container %s (%s)", instance, c.name, cid[:12])
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass
        removed.append(cid)
    return removed


class _ContainerWatch:
    """What wait_healthy polls as if it were a process: poll() is the exit code once the container exited."""

    def __init__(self, container, every_s: float = 0.5) -> None:
        self.container = container
        self.every_s = every_s
        self.returncode: int | None = None
        self._next = 0.0

    def poll(self) -> int | None:
        if self.returncode is not None or time.monotonic() < self._next:
            return self.returncode
        self._next = time.monotonic() + self.every_s
        try:
            self.container.reload()
        except docker.errors.NotFound:
            self.returncode = -1  # removed under us (docker rm, the reaper of another run)
            return self.returncode
        except _ENGINE_ERRORS:
            return None  # a slow engine is not a dead container; the health timeout still bounds the wait
        state = self.container.attrs.get("State") or {}
        if state.get("Status") in ("exited", "dead"):
            self.returncode = int(state.get("ExitCode") or 0)
        return self.returncode


_LIVE = processes.LiveSet()
stop_all = _LIVE.stop_all  # every container this process started and did not stop yet (atexit, signal handlers)


class OllamaContainerInstance(OllamaServed):
    provider = "ollama-docker"
    settings: OllamaDockerServer

    def __init__(self, name: str, settings: OllamaDockerServer, port: int, gpu: str | None,
                 load_timeout_s: float = 300.0,
                 client_factory: Callable[[], docker.DockerClient] = docker.from_env,
                 environment: Mapping[str, str] | None = None) -> None:
        super().__init__(name, settings, port, gpu, load_timeout_s)
        self.client_factory = client_factory
        self.environment = {**DEFAULT_ENVIRONMENT, **settings.concurrency_environment(), **gpu_environment(gpu),
                            **(environment or {})}
        self.image_id: str | None = None
        self._client: docker.DockerClient | None = None
        self._container: Any = None  # a docker Container (the docker package ships no types)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def container_name(self) -> str:
        return container_name(self.name)

    @property
    def concurrency(self) -> dict[str, int]:
        return self.cell_concurrency(self.settings.concurrency())

    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container is not None else None

    def pull_fix(self, model: str) -> str:
        return (f"set server.pull_models: true in the spec (it pulls into the docker volume {self.settings.volume} "
                f"that every instance mounts), or pull {model} into that volume yourself")

    # --- lifecycle -------------------------------------------------------------------------

    def remove_leftovers(self) -> list[str]:
        """Containers of this instance that a crashed run left (still publishing the port), removed
        before preflight checks the port; their names."""
        client = connect(self.name, self.client_factory)
        try:
            found = {c.id: c.name for c in client.containers.list(
                all=True, filters={"label": f"{LABEL_INSTANCE}={self.name}"})}
            removed = remove_stale(client, self.name)
        except _ENGINE_ERRORS as err:
            raise InstanceError(f"instance {self.name}: docker could not list or remove stale containers "
                                f"({_explain(err)}); fix: `docker rm -f {self.container_name}`") from err
        finally:
            client.close()
        return [found.get(cid, self.container_name) for cid in removed]

    def start(self) -> None:
        with self._lock:
            if self._container is not None:
                return
            client = self._client = connect(self.name, self.client_factory)
            settings = self.settings
            try:
                self.image_id = ensure_image(client, settings.image, self.name)
                ensure_volume(client, settings.volume)
                remove_stale(client, self.name)
            except InstanceError:
                raise
            except _ENGINE_ERRORS as err:
                raise InstanceError(f"instance {self.name}: docker engine refused to prepare image "
                                    f"{settings.image} / volume {settings.volume} ({_explain(err)}); "
                                    f"fix: see the engine's message") from err
            self._container = self._create(client)
            _LIVE.add(self)
            try:
                self._reaper = reaper.spawn(containers=[self._container.id])
                self._start_container()
                self._wait_healthy()
            except BaseException:
                self._remove_locked()
                raise

    def _create(self, client: docker.DockerClient):
        labels = {LABEL_MANAGED: "true", LABEL_INSTANCE: self.name, LABEL_OWNER: owner_label(),
                  "trbench.port": str(self.port)}
        try:
            return client.containers.create(
                self.settings.image,
                name=self.container_name,
                detach=True,
                ports={CONTAINER_PORT: ("127.0.0.1", self.port)},
                mounts=[Mount(target=MODELS_PATH, source=self.settings.volume, type="volume")],
                environment={**self.environment, **self.cell_environment},
                labels=labels,
                device_requests=device_requests(self.gpu),
            )
        except docker.errors.APIError as err:
            if err.status_code == 409:
                raise InstanceError(
                    f"instance {self.name}: a container named {self.container_name} exists and was not made by "
                    f"trbench; fix: `docker rm -f {self.container_name}` or rename it") from err
            raise InstanceError(f"instance {self.name}: docker could not create container {self.container_name} "
                                f"({_explain(err)}); fix: see the engine's message") from err
        except _ENGINE_ERRORS as err:
            raise InstanceError(f"instance {self.name}: docker could not create container {self.container_name} "
                                f"({_explain(err)}); fix: check the docker engine") from err

    def _start_container(self) -> None:
        try:
            self._container.start()
        except _ENGINE_ERRORS as err:
            why = _explain(err)
            low = why.lower()
            if "address already in use" in low or "port is already allocated" in low:
                fix = (f"free port {self.port} on 127.0.0.1 (a local `ollama serve`?) or give the spec other ports")
            elif "device driver" in low or "nvidia" in low or "gpu" in low:
                fix = ("install the NVIDIA Container Toolkit and restart Docker, or set server.gpu_devices to null "
                       "to run on the CPU")
            else:
                fix = "see the engine's message"
            raise InstanceError(f"instance {self.name}: docker could not start container {self.container_name} "
                                f"({why}); fix: {fix}") from err

    def _wait_healthy(self) -> None:
        watch = _ContainerWatch(self._container)
        try:
            wait_healthy(self.url, self.load_timeout_s, watch, self.name, path="/api/version")
        except InstanceError as err:
            last = self._last_log_line()
            seen = f"; last log line: {last}" if last else ""
            if watch.returncode is not None:
                raise InstanceError(
                    f"instance {self.name}: container {self.container_name} exited with code {watch.returncode} "
                    f"while starting{seen}; fix: check the image {self.settings.image} runs "
                    f"(`docker run --rm {self.settings.image}`) and the GPU setting") from err
            raise InstanceError(
                f"instance {self.name}: container {self.container_name} runs but {self.url}/api/version did not "
                f"answer 200 within {self.load_timeout_s:g} s{seen}; fix: raise load_timeout_s, or check "
                f"that nothing else serves 127.0.0.1:{self.port}") from err

    def _last_log_line(self) -> str:
        try:
            raw = self._container.logs(stdout=True, stderr=True, tail=5)
        except Exception:  # noqa: BLE001 - only a hint for the message
            return ""
        lines = [ln for ln in raw.decode(errors="replace").splitlines() if ln.strip()]
        return _one_line(lines[-1], 200) if lines else ""

    def stop(self) -> None:
        with self._lock:
            self._remove_locked()

    def _remove_locked(self) -> None:
        container, self._container = self._container, None
        removed = True
        if container is not None:
            try:
                container.stop(timeout=STOP_TIMEOUT_S)
            except docker.errors.NotFound:
                pass
            except _ENGINE_ERRORS as err:
                log.debug("instance %s: stop %s: %s", self.name, container.id[:12], _explain(err))
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except _ENGINE_ERRORS as err:
                removed = False
                log.warning("instance %s: could not remove container %s (%s); the reaper removes it when this "
                            "process exits", self.name, container.name, _explain(err))
        _LIVE.discard(self)
        proc, self._reaper = self._reaper, None
        if proc is not None and removed:
            processes.terminate(proc, 5)
        elif proc is not None:
            self._reaper = proc  # still armed: it force-removes the container when this process exits
        client, self._client = self._client, None
        if client is not None and removed:
            client.close()


def create(settings: OllamaDockerServer, count: int, log_dir: Path, load_timeout_s: float, backend: str) -> list[Instance]:
    ports = settings.instance_ports()
    return [OllamaContainerInstance(f"ollama-docker-{i}", settings, ports[i], settings.gpu_of(i), load_timeout_s)
            for i in range(count)]
