"""A REAL Docker engine for the tests marked `docker`, and the FAKE Ollama image they run on it.

No image registry is reachable where the tests run, so both images are built here and kept in the
engine between sessions (a later session reuses them and builds nothing):

- BASE_IMAGE: a minimal Debian bookworm with python3, from `debootstrap --variant=minbase` imported
  with `docker import` (a few minutes, once per engine);
- trbench-fake-ollama:<hash of its sources>: BASE_IMAGE plus tests/fakes/fake_ollama.py and
  fake_ollama_cli.py as /bin/ollama, ENTRYPOINT and CMD as ollama/ollama's (`ollama serve`), so a
  container speaks the Ollama HTTP API on OLLAMA_HOST as the real image does. It is NOT Ollama and
  runs no model; the name says so. A change to the fakes changes the hash, hence a new image.

The engine is the one docker.from_env() reaches (DOCKER_HOST, else /var/run/docker.sock). When none
answers, the session starts `dockerd` itself if it can (root, dockerd installed, DOCKER_HOST unset)
and stops it at the end; otherwise the docker tests are skipped with the reason, unless
REQUIRE_ENV is set (.ci/run sets it): then they fail, since CI must run them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import requests

log = logging.getLogger(__name__)

FAKES = Path(__file__).resolve().parent / "fakes"
BASE_IMAGE = "trbench-debian-base:bookworm"
FAKE_REPO = "trbench-fake-ollama"
DEBIAN_MIRROR = os.environ.get("TRBENCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
REQUIRE_ENV = "TRBENCH_REQUIRE_DOCKER"  # "1": no engine is a failure, not a skip
FAKE_HOME = "/opt/trbench-fake-ollama"
# the image's command: the fake CLI run by the image's python3 (fake_ollama_cli.py finds `fakes` beside it)
OLLAMA_SCRIPT = f'#!/bin/sh\n# A FAKE `ollama` (tests/fakes/fake_ollama_cli.py): not Ollama, runs no model.\nexec python3 {FAKE_HOME}/fakes/fake_ollama_cli.py "$@"\n'
# ollama/ollama's own ENV, ENTRYPOINT and CMD (its Dockerfile), so the provider meets what it meets there
DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY fakes/ {FAKE_HOME}/fakes/
COPY ollama /bin/ollama
ENV OLLAMA_HOST=0.0.0.0:11434 NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL org.opencontainers.image.title="trbench FAKE Ollama for tests: not Ollama, runs no model"
EXPOSE 11434
ENTRYPOINT ["/bin/ollama"]
CMD ["serve"]
"""
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class EngineUnavailable(Exception):
    """No Docker engine answers and none could be started here; the message says why."""


def connect(timeout_s: float = 10) -> docker.DockerClient | None:
    """A client of the engine docker.from_env() reaches, or None when it does not answer."""
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
        return client
    except _ENGINE_ERRORS:
        return None


def start_dockerd(log_path: Path, timeout_s: float = 60) -> tuple[subprocess.Popen, docker.DockerClient]:
    """Start `dockerd` (overlay2, its default socket) and wait until it answers."""
    if os.environ.get("DOCKER_HOST"):
        raise EngineUnavailable(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("no Docker engine answers and dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and only root can start dockerd here")
    out = log_path.open("ab")
    proc = subprocess.Popen([dockerd, "--storage-driver", "overlay2"], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with code {proc.returncode} (its log: {log_path})")
        client = connect(timeout_s=5)
        if client is not None:
            return proc, client
        time.sleep(0.5)
    stop_dockerd(proc)
    raise EngineUnavailable(f"dockerd did not answer within {timeout_s:g} s (its log: {log_path})")


def stop_dockerd(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _as_root(cmd: list[str]) -> list[str]:
    """debootstrap and reading the tree it made need root: sudo (never asking a password) when not root."""
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


def build_base_image(client: docker.DockerClient) -> None:
    """BASE_IMAGE from debootstrap (needs root, debootstrap and the Debian mirror): about 2 minutes."""
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable(f"{BASE_IMAGE} is missing and debootstrap is not installed (apt-get install debootstrap)")
    tmp = tempfile.mkdtemp(prefix="trbench-debootstrap-")
    root = Path(tmp) / "root"
    try:
        done = subprocess.run(_as_root(["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(root),
                                        DEBIAN_MIRROR]), capture_output=True, text=True)
        if done.returncode != 0:
            raise EngineUnavailable(f"debootstrap of {BASE_IMAGE} failed ({done.returncode}): {done.stderr[-500:]}")
        repo, tag = BASE_IMAGE.split(":")
        tar = subprocess.Popen(_as_root(["tar", "-C", str(root), "--numeric-owner", "-c", "."]), stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            client.api.import_image(src=tar.stdout, repository=repo, tag=tag, stream_src=True,
                                    changes=['CMD ["/bin/sh"]'])
        finally:
            tar.stdout.close()
            tar.wait()
        if not has_image(client, BASE_IMAGE):
            raise EngineUnavailable(f"docker import of {BASE_IMAGE} made no image")
    finally:
        subprocess.run(_as_root(["rm", "-rf", "--one-file-system", tmp]), check=False)


def _fake_context() -> dict[str, tuple[bytes, int]]:
    """The build context of the fake image: name -> (content, mode)."""
    files = {"Dockerfile": (DOCKERFILE.encode(), 0o644), "ollama": (OLLAMA_SCRIPT.encode(), 0o755),
             "fakes/__init__.py": (b"", 0o644)}
    for name in ("fake_ollama.py", "fake_ollama_cli.py"):
        files[f"fakes/{name}"] = ((FAKES / name).read_bytes(), 0o644)
    return files


def fake_image_name() -> str:
    """trbench-fake-ollama:<the first 12 hex of the sha256 of its build context>."""
    digest = hashlib.sha256()
    for name, (content, mode) in sorted(_fake_context().items()):
        digest.update(f"{name}\0{mode:o}\0{len(content)}\0".encode())
        digest.update(content)
    return f"{FAKE_REPO}:{digest.hexdigest()[:12]}"


def build_fake_image(client: docker.DockerClient, name: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (content, mode) in _fake_context().items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    buf.seek(0)
    # the engine's own builder; FROM a local image: nothing is pulled (pull=False)
    client.images.build(fileobj=buf, custom_context=True, tag=name, pull=False, rm=True, forcerm=True)
    for image in client.images.list(name=FAKE_REPO):  # earlier builds of the fakes: no longer of use
        if name not in image.tags:
            try:
                client.images.remove(image.id, force=False)
            except docker.errors.APIError:
                pass  # still used by a container: left for a later session


@dataclass(frozen=True)
class Listed:
    """A container as the engine's listing shows it."""

    id: str
    name: str
    status: str  # created, running, exited, ...
    labels: dict[str, str]


@dataclass
class RealEngine:
    """The engine the docker tests use and the fake Ollama image on it."""

    client: docker.DockerClient
    image: str
    dockerd: subprocess.Popen | None = None  # the dockerd this session started (stopped at its end)
    built: dict[str, float] = field(default_factory=dict)  # image -> seconds its build took this session

    def containers(self, **labels: str) -> list[Listed]:
        """Containers (running or not) with these labels, as one listing shows them: a container
        removed meanwhile is not asked about again (the SDK's full listing inspects each, and fails)."""
        wanted = [f"{k}={v}" for k, v in labels.items()]
        rows = self.client.api.containers(all=True, filters={"label": wanted})
        return [Listed(r["Id"], (r.get("Names") or ["/"])[0].lstrip("/"), r.get("State") or "", r.get("Labels") or {})
                for r in rows]

    def inspect(self, cid: str) -> dict | None:
        """`docker inspect` of a container; None once it is gone."""
        try:
            return self.client.api.inspect_container(cid)
        except docker.errors.NotFound:
            return None

    def remove(self, cid: str) -> None:
        try:
            self.client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass

    def close(self) -> None:
        self.client.close()
        if self.dockerd is not None:
            stop_dockerd(self.dockerd)


def real_engine(log_dir: Path) -> RealEngine:
    """The reachable engine (started when it can be) with BASE_IMAGE and the fake image present;
    EngineUnavailable names what is missing."""
    client, dockerd = connect(), None
    if client is None:
        dockerd, client = start_dockerd(log_dir / "dockerd.log")
    engine = RealEngine(client, fake_image_name(), dockerd)
    try:
        for name, build in ((BASE_IMAGE, build_base_image), (engine.image, lambda c: build_fake_image(c, engine.image))):
            if not has_image(client, name):
                t0 = time.monotonic()
                log.warning("building docker image %s (cached in the engine for later sessions)", name)
                build(client)
                engine.built[name] = time.monotonic() - t0
    except BaseException:
        engine.close()
        raise
    return engine
