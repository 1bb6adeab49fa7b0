"""A FAKE Docker Engine for tests. It is not Docker and runs no container.

No Docker engine runs on the test machines, so this stand-in answers the part of the Docker
Engine HTTP API that the docker SDK (7.x) calls for the ollama-docker provider, in the shapes
of the Engine API reference: GET /_ping and /version; GET /images/{name}/json and
POST /images/create (a streamed JSON progress pull); GET /volumes/{name} and
POST /volumes/create; POST /containers/create, POST /containers/{id}/start, /stop,
GET /containers/{id}/json, /logs, DELETE /containers/{id}, GET /containers/json with label,
name, id and status filters. Paths may carry an API version prefix (/v1.47/...). Errors are
JSON objects {"message": "..."} with the engine's status codes (404 unknown, 409 conflict,
500 engine error), so the SDK raises its own exception classes (NotFound, ImageNotFound,
APIError) exactly as against a real engine.

A "container" is a record. Starting one publishes its ports as dockerd does (moby/moby's
docker-proxy, libnetwork portmapper): each binding of HostConfig.PortBindings is bound on the
host (HostIp honoured: "" means every address; each binding is recorded in FakeContainer.bound)
for as long as the container runs, and every connection to it is relayed to the container's
port, where a FakeOllama (tests/fakes/fake_ollama.py) serves, so an instance's health check and
chat requests really reach a server. A published port is held whether or not anything serves
behind it (a connection is then accepted and closed). Stop, kill and remove release it. A
container a test adds with add_container(..., ports=..., running=True), as a crashed run leaves
one, holds its port the same way.

GPUs as the NVIDIA runtime gives them (FakeContainer.visible_gpus): the device requests' GPUs;
without one, on a host whose default runtime is nvidia (default_runtime="nvidia"), what
NVIDIA_VISIBLE_DEVICES says, the image's "all" (ollama/ollama's Dockerfile) unless the container
sets "void" or "none".

Behaviours for failure tests: `health="refuse"` (started containers serve nothing: never
healthy), `exit_on_start=(code, log_text)` (the process exits at once), `gpu_available=False`
(device requests fail as on an engine without the NVIDIA runtime), `pull_error` (the registry
says no: an HTTP error before any progress, as dockerd's postImagesCreate answers when nothing
was flushed yet; with pull_error_in_stream=True an error line after progress instead).

Every API call is recorded (FakeDocker.calls: method, path without the version prefix,
query, body), and every container create body (FakeDocker.create_bodies).

    with FakeDocker(images=["ollama/ollama:latest"]) as engine:
        client = engine.client()           # a real docker.DockerClient
        monkeypatch.setenv("DOCKER_HOST", engine.docker_host)   # docker.from_env() finds it too
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.fakes.fake_ollama import FakeModel, FakeOllama, GoLikeHandler, concurrency_from_env, default_models

API_VERSION = "1.47"
ENGINE_VERSION = "27.5.1"
MIN_API_VERSION = "1.24"

Health = Literal["ok", "refuse"]

_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_image(ref: str) -> str:
    """repo[:tag] -> repo:tag (latest when no tag); a digest reference stays as it is."""
    if "@" in ref:
        return ref
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"


@dataclass
class DockerCall:
    method: str
    path: str  # without the /vX.Y prefix and without the query
    query: dict[str, str]  # the last value of each parameter
    body: Any  # decoded JSON, raw text where not JSON, None without a body
    api_version: str | None  # the prefix's version, None when unversioned (/version, /_ping)


class DockerProxy:
    """A published port, as docker-proxy holds it (moby/moby cmd/docker-proxy): bound on the host
    while the container runs, each connection relayed to the container's port; when nothing
    listens there the connection is accepted and closed at once."""

    def __init__(self, host_ip: str, port: int, backend: Callable[[], int | None]) -> None:
        self.host_ip, self.port, self.backend = host_ip, port, backend
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> DockerProxy:
        family = socket.AF_INET6 if ":" in self.host_ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen
        try:
            sock.bind((self.host_ip, self.port))  # OSError when the port is taken
        except OSError:
            sock.close()
            raise
        sock.listen(64)
        self._sock = sock
        threading.Thread(target=self._accept, name=f"docker-proxy-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        port = self.backend()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5) if port else None
        except OSError:
            upstream = None
        if upstream is None:  # nothing serves in the container: accepted, then closed
            client.close()
            return
        upstream.settimeout(None)
        for s_ in (client, upstream):
            s_.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns.update((client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s_ in (src, dst):
                try:
                    s_.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


@dataclass
class FakeContainer:
    id: str
    name: str  # without the leading "/"
    body: dict  # the create body as received
    created: str
    status: str = "created"  # created | running | exited
    exit_code: int = 0
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    logs: bytes = b""
    ollama: list[FakeOllama] = field(default_factory=list)
    proxies: list[DockerProxy] = field(default_factory=list)  # its published ports, while it runs
    bound: list[tuple[str, int]] = field(default_factory=list)  # (HostIp as given, host port) of each start
    visible_gpus: list[str] = field(default_factory=list)  # what the NVIDIA runtime gave it, while it runs

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body.get("Labels") or {})

    @property
    def host_config(self) -> dict:
        return self.body.get("HostConfig") or {}

    @property
    def running(self) -> bool:
        return self.status == "running"


class FakeDocker:
    """A FAKE Docker Engine HTTP API server (standard library only); use as a context manager."""

    def __init__(self, images: Iterable[str] = (), api_version: str = API_VERSION,
                 ollama_models: Callable[[], Mapping[str, FakeModel]] = default_models,
                 health: Health = "ok", exit_on_start: tuple[int, str] | None = None,
                 gpu_available: bool = True, pull_error: str | None = None, pull_error_in_stream: bool = False,
                 gpus: Iterable[str] = ("0", "1"), default_runtime: str = "runc") -> None:
        self.api_version = api_version
        self.ollama_models = ollama_models
        self.health: Health = health
        self.exit_on_start = exit_on_start
        self.gpu_available = gpu_available
        self.pull_error = pull_error
        self.pull_error_in_stream = pull_error_in_stream
        self.gpus = list(gpus)  # the host's GPUs, as NVML numbers them
        self.default_runtime = default_runtime  # "nvidia": containers get GPUs from NVIDIA_VISIBLE_DEVICES
        self.images: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.containers: dict[str, FakeContainer] = {}  # by id
        self.removed: list[FakeContainer] = []
        self.calls: list[DockerCall] = []
        self.create_bodies: list[dict] = []  # each container create body, with "_name" added
        self._lock = threading.RLock()
        self._conns: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for ref in images:
            self.add_image(ref)

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the fake Docker engine is not started"
        return self._httpd.server_address[1]

    @property
    def docker_host(self) -> str:
        """The DOCKER_HOST value (and docker SDK base_url) that reaches this engine."""
        return f"tcp://127.0.0.1:{self.port}"

    def client(self, version: str | None = None, timeout: int = 10):
        import docker

        return docker.DockerClient(base_url=self.docker_host, version=version or self.api_version, timeout=timeout)

    def start(self) -> FakeDocker:
        handler = type("FakeDockerHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-docker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
            containers = list(self.containers.values())
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for c in containers:
            self._halt(c)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeDocker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state tests set up and look at --------------------------------------------------

    def add_image(self, ref: str) -> dict:
        key = normalize_image(ref)
        digest = hashlib.sha256(f"fake-image:{key}".encode()).hexdigest()
        repo = key.rsplit(":", 1)[0] if "@" not in key else key.split("@", 1)[0]
        image = {
            "Id": f"sha256:{digest}",
            "RepoTags": [key] if "@" not in key else [],
            "RepoDigests": [f"{repo}@sha256:{hashlib.sha256(digest.encode()).hexdigest()}"],
            "Created": "2025-01-01T00:00:00Z",
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 3_400_000_000,
            # ollama/ollama's Dockerfile: ENV OLLAMA_HOST, NVIDIA_DRIVER_CAPABILITIES, NVIDIA_VISIBLE_DEVICES=all
            "Config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "OLLAMA_HOST=0.0.0.0:11434", "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
                               "NVIDIA_VISIBLE_DEVICES=all"],
                       "Entrypoint": ["/bin/ollama"], "Cmd": ["serve"], "ExposedPorts": {"11434/tcp": {}}},
        }
        with self._lock:
            self.images[key] = image
        return image

    def add_container(self, name: str, labels: Mapping[str, str] | None = None, image: str = "ollama/ollama:latest",
                      running: bool = False, ports: Mapping[str, tuple[str, int]] | None = None) -> FakeContainer:
        """A container made outside the code under test (e.g. left over from a killed run); running,
        it publishes `ports` ({"11434/tcp": ("127.0.0.1", 11434)}) and serves Ollama behind them."""
        bindings = {spec: [{"HostIp": ip, "HostPort": str(port)}] for spec, (ip, port) in (ports or {}).items()}
        body = {"Image": image, "Labels": dict(labels or {}), "HostConfig": {"PortBindings": bindings}}
        c = FakeContainer(id=uuid.uuid4().hex + uuid.uuid4().hex, name=name, body=body, created=_now())
        with self._lock:
            self.containers[c.id] = c
            if running:
                status, err = self._start(c)
                assert err is None, err
        return c

    def container(self, ref: str) -> FakeContainer | None:
        """A container by id, unique id prefix, or name (with or without the leading '/')."""
        with self._lock:
            if ref in self.containers:
                return self.containers[ref]
            name = ref.lstrip("/")
            for c in self.containers.values():
                if c.name == name:
                    return c
            hits = [c for c in self.containers.values() if len(ref) >= 3 and c.id.startswith(ref)]
            return hits[0] if len(hits) == 1 else None

    def calls_to(self, method: str, pattern: str) -> list[DockerCall]:
        """Recorded calls of this method whose (unversioned) path matches the regex fully."""
        rx = re.compile(pattern)
        with self._lock:
            return [c for c in self.calls if c.method == method and rx.fullmatch(c.path)]

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    # --- internals used by the handler ----------------------------------------------------

    def _record(self, call: DockerCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _start(self, c: FakeContainer) -> tuple[int, dict | None]:
        """Start a container: (HTTP status, error object or None)."""
        if c.running:
            return 304, None
        hc = c.host_config
        if hc.get("DeviceRequests") and not self.gpu_available:
            caps = hc["DeviceRequests"][0].get("Capabilities") or []
            shown = "[" + " ".join("[" + " ".join(c) + "]" for c in caps) + "]"
            return 500, {"message": f'could not select device driver "" with capabilities: {shown}'}
        if self.exit_on_start is not None:
            code, text = self.exit_on_start
            c.status, c.exit_code, c.started_at, c.finished_at = "exited", code, _now(), _now()
            c.logs = text.encode()
            return 204, None
        # the process inside: Ollama on the container's port (here an ephemeral one on loopback)
        # the container's environment over the image's, as the process inside sees it
        servers = [] if self.health == "refuse" else [
            FakeOllama(self.ollama_models(), **concurrency_from_env(self._environment(c))).start()]
        inside = {"11434/tcp": servers[0].port if servers else None}
        proxies: list[DockerProxy] = []
        for spec, bindings in (hc.get("PortBindings") or {}).items():
            for b in bindings or []:
                host_ip = b.get("HostIp", "")
                port = int(b.get("HostPort") or 0)
                c.bound.append((host_ip, port))
                try:
                    proxies.append(DockerProxy(host_ip or "0.0.0.0", port, lambda s=spec: inside.get(s)).start())
                except OSError:
                    for x in [*proxies, *servers]:
                        x.stop()
                    family = "tcp6" if ":" in (host_ip or "") else "tcp4"
                    return 500, {"message": f"driver failed programming external connectivity on endpoint {c.name} "
                                            f"({c.id}): Error starting userland proxy: listen {family} "
                                            f"{host_ip or '0.0.0.0'}:{port}: bind: address already in use"}
        c.ollama, c.proxies = servers, proxies
        c.visible_gpus = self._visible_gpus(c)
        c.status, c.exit_code, c.started_at = "running", 0, _now()
        c.logs += b"time=" + _now().encode() + b" level=INFO source=routes.go msg=\"Listening on [::]:11434 (FAKE)\"\n"
        return 204, None

    def _environment(self, c: FakeContainer) -> dict[str, str]:
        """The container's environment: its own Env over its image's."""
        image = self.images.get(normalize_image(c.body.get("Image", "")), {})
        return dict(e.split("=", 1) for e in (image.get("Config") or {}).get("Env", []) + (c.body.get("Env") or []))

    def _visible_gpus(self, c: FakeContainer) -> list[str]:
        """The GPUs the NVIDIA runtime puts in the container: the device requests' (count -1: all);
        with none, only where nvidia is the default runtime, NVIDIA_VISIBLE_DEVICES of the
        container's env over the image's ("void", "none" or empty: no GPU)."""
        requests = c.host_config.get("DeviceRequests") or []
        if requests:
            return [g for r in requests for g in (self.gpus if r.get("Count") == -1 else r.get("DeviceIDs") or [])]
        if self.default_runtime != "nvidia":
            return []
        value = self._environment(c).get("NVIDIA_VISIBLE_DEVICES", "")
        if value in ("", "void", "none"):
            return []
        return list(self.gpus) if value == "all" else value.split(",")

    def _halt(self, c: FakeContainer, exit_code: int = 0) -> None:
        servers, c.ollama = c.ollama, []
        proxies, c.proxies = c.proxies, []
        for s in [*proxies, *servers]:
            s.stop()
        c.visible_gpus = []
        if c.running:
            c.status, c.exit_code, c.finished_at = "exited", exit_code, _now()

    def _inspect(self, c: FakeContainer) -> dict:
        body, hc = c.body, c.host_config
        mounts = []
        for m in hc.get("Mounts") or []:
            mounts.append({"Type": m.get("Type", "volume"), "Name": m.get("Source"), "Source":
                           f"/var/lib/docker/volumes/{m.get('Source')}/_data", "Destination": m.get("Target"),
                           "Driver": "local", "Mode": "z", "RW": not m.get("ReadOnly", False), "Propagation": ""})
        for bind in hc.get("Binds") or []:
            src, dst, *mode = bind.split(":")
            named = "/" not in src
            mounts.append({"Type": "volume" if named else "bind", "Name": src if named else "",
                           "Source": f"/var/lib/docker/volumes/{src}/_data" if named else src, "Destination": dst,
                           "Driver": "local" if named else "", "Mode": mode[0] if mode else "",
                           "RW": "ro" not in mode, "Propagation": ""})
        running = c.running
        ports = {}
        for spec, bindings in (hc.get("PortBindings") or {}).items():
            ports[spec] = [{"HostIp": b.get("HostIp") or "0.0.0.0", "HostPort": str(b.get("HostPort", ""))}
                           for b in bindings or []] if running else None
        image = self.images.get(normalize_image(body.get("Image", "")), {})
        return {
            "Id": c.id,
            "Created": c.created,
            "Path": "/bin/ollama",
            "Args": ["serve"],
            "State": {"Status": c.status, "Running": running, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 4242 if running else 0, "ExitCode": c.exit_code,
                      "Error": "", "StartedAt": c.started_at, "FinishedAt": c.finished_at},
            "Image": image.get("Id", ""),
            "Name": f"/{c.name}",
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {"Binds": hc.get("Binds"), "NetworkMode": hc.get("NetworkMode", "bridge"),
                           "PortBindings": hc.get("PortBindings") or {}, "RestartPolicy": hc.get(
                               "RestartPolicy", {"Name": "no", "MaximumRetryCount": 0}),
                           "AutoRemove": hc.get("AutoRemove", False), "Mounts": hc.get("Mounts"),
                           "DeviceRequests": hc.get("DeviceRequests"), "LogConfig": {"Type": "json-file", "Config": {}}},
            "Mounts": mounts,
            "Config": {"Hostname": c.id[:12], "Image": body.get("Image"), "Env": body.get("Env") or [],
                       "Cmd": body.get("Cmd") or ["serve"], "Entrypoint": ["/bin/ollama"], "Tty": bool(body.get("Tty")),
                       "ExposedPorts": body.get("ExposedPorts") or {}, "Labels": c.labels},
            "NetworkSettings": {"Ports": ports, "IPAddress": "172.17.0.2" if running else ""},
        }

    def _summary(self, c: FakeContainer) -> dict:
        hc = c.host_config
        ports = [{"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(spec.split("/")[0]),
                  "PublicPort": int(b.get("HostPort") or 0), "Type": spec.split("/")[1]}
                 for spec, bindings in (hc.get("PortBindings") or {}).items() for b in bindings or []] if c.running else []
        return {"Id": c.id, "Names": [f"/{c.name}"], "Image": c.body.get("Image"), "Command": "/bin/ollama serve",
                "Created": 1735689600, "State": c.status, "Status": "Up 1 second" if c.running else
                f"Exited ({c.exit_code}) 1 second ago", "Ports": ports, "Labels": c.labels}

    @staticmethod
    def _matches(c: FakeContainer, filters: dict[str, Any]) -> bool:
        for key, wanted in filters.items():
            values = list(wanted) if isinstance(wanted, list) else [k for k, on in dict(wanted).items() if on]
            if key == "label":
                for v in values:
                    k, _, val = v.partition("=")
                    if k not in c.labels or ("=" in v and c.labels[k] != val):
                        return False
            elif key == "name":
                if not any(re.search(v.lstrip("/"), c.name) for v in values):
                    return False
            elif key == "id":
                if not any(c.id.startswith(v) for v in values):
                    return False
            elif key == "status":
                if c.status not in values:
                    return False
        return True


class _Handler(GoLikeHandler):
    fake: FakeDocker  # set on the per-server subclass
    server_version = "FakeDocker"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        return

    # --- plumbing ------------------------------------------------------------------------

    def _headers(self, status: int, content_type: str | None, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Api-Version", self.fake.api_version)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        self.send_header("Server", f"Docker/{ENGINE_VERSION} (linux)")
        if content_type:
            self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self._headers(status, "application/json", len(data))
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"message": message})

    def _empty(self, status: int) -> None:  # 204 / 304: no body
        self._headers(status, None, None)

    def _text(self, status: int, text: str) -> None:
        data = text.encode()
        self._headers(status, "text/plain; charset=utf-8", len(data))
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        m = _VERSION_PREFIX.match(path)
        api_version = m.group(0)[2:] if m else None
        if m:
            path = path[m.end():]
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        body: Any = None
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        self.fake._record(DockerCall(method, path, query, body, api_version))
        for route_method, rx, fn in _ROUTES:
            if route_method == method and (hit := rx.fullmatch(path)):
                fn(self, query, body, **hit.groupdict())
                return
        self._error(404, "page not found")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _container_or_404(self, ref: str) -> FakeContainer | None:
        c = self.fake.container(ref)
        if c is None:
            self._error(404, f"No such container: {ref}")
        return c

    # --- system --------------------------------------------------------------------------

    def ping(self, query: dict, body: Any) -> None:
        self._text(200, "OK")

    def version(self, query: dict, body: Any) -> None:
        self._json(200, {
            "Platform": {"Name": "FAKE Docker Engine (tests)"},
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION,
                            "Details": {"ApiVersion": self.fake.api_version, "MinAPIVersion": MIN_API_VERSION,
                                        "Os": "linux", "Arch": "amd64"}}],
            "Version": ENGINE_VERSION, "ApiVersion": self.fake.api_version, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "fake", "GoVersion": "go1.22.10", "Os": "linux", "Arch": "amd64",
            "KernelVersion": "6.8.0-fake", "BuildTime": "2025-01-01T00:00:00.000000000+00:00",
        })

    # --- images --------------------------------------------------------------------------

    def image_inspect(self, query: dict, body: Any, name: str) -> None:
        with self.fake._lock:
            image = self.fake.images.get(normalize_image(name)) or next(
                (i for i in self.fake.images.values() if i["Id"] in (name, f"sha256:{name}")), None)
        if image is None:
            self._error(404, f"No such image: {normalize_image(name)}")
        else:
            self._json(200, image)

    def image_create(self, query: dict, body: Any) -> None:
        from_image = query.get("fromImage", "")
        if not from_image:
            self._error(400, "fromImage is required (import is not supported by the fake)")
            return
        tag = query.get("tag") or ""
        if tag and "@" not in from_image:  # as the reference says: a tag parameter wins over one in fromImage
            base = from_image.rsplit(":", 1)[0] if ":" in from_image.rsplit("/", 1)[-1] else from_image
            ref = f"{base}@{tag}" if tag.startswith("sha256:") else f"{base}:{tag}"
        else:
            ref = normalize_image(from_image)
        if self.fake.pull_error and not self.fake.pull_error_in_stream:
            # api/server/router/image/image_routes.go postImagesCreate: an error before anything was
            # flushed is returned as the HTTP status (a registry's "repository does not exist" is 404)
            self._error(404, self.fake.pull_error)
            return
        self.send_response(200)
        self.send_header("Api-Version", self.fake.api_version)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def line(obj: dict) -> None:
            data = json.dumps(obj).encode() + b"\r\n"
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        shown_tag = ref.rsplit(":", 1)[-1] if "@" not in ref else ref.split("@", 1)[1]
        line({"status": f"Pulling from {ref.rsplit(':', 1)[0] if '@' not in ref else ref.split('@')[0]}",
              "id": shown_tag})
        if self.fake.pull_error:  # after progress was flushed: an error line (streamformatter.FormatError)
            line({"errorDetail": {"message": self.fake.pull_error}, "error": self.fake.pull_error})
        else:
            layer = hashlib.sha256(ref.encode()).hexdigest()[:12]
            total = 1_000_000
            line({"status": "Pulling fs layer", "progressDetail": {}, "id": layer})
            for current in (250_000, 1_000_000):
                line({"status": "Downloading", "progressDetail": {"current": current, "total": total},
                      "progress": f"[{'=' * (current * 50 // total):<50}] {current / 1e6:.2f}MB/1MB", "id": layer})
            line({"status": "Pull complete", "progressDetail": {}, "id": layer})
            image = self.fake.add_image(ref)
            line({"status": f"Digest: {image['RepoDigests'][0].split('@')[1]}"})
            line({"status": f"Status: Downloaded newer image for {ref}"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- volumes -------------------------------------------------------------------------

    def volume_inspect(self, query: dict, body: Any, name: str) -> None:
        with self.fake._lock:
            vol = self.fake.volumes.get(name)
        if vol is None:
            self._error(404, f"get {name}: no such volume")
        else:
            self._json(200, vol)

    def volume_create(self, query: dict, body: Any) -> None:
        body = body if isinstance(body, dict) else {}
        name = body.get("Name") or uuid.uuid4().hex
        with self.fake._lock:
            vol = self.fake.volumes.get(name)
            if vol is None:  # as Docker's local driver: creating an existing volume returns it
                vol = {"Name": name, "Driver": body.get("Driver") or "local",
                       "Mountpoint": f"/var/lib/docker/volumes/{name}/_data", "CreatedAt": _now(),
                       "Labels": body.get("Labels") or {}, "Scope": "local", "Options": body.get("DriverOpts") or {}}
                self.fake.volumes[name] = vol
        self._json(201, vol)

    # --- containers ----------------------------------------------------------------------

    def container_create(self, query: dict, body: Any) -> None:
        if not isinstance(body, dict):
            self._error(400, "invalid JSON: expected a container config object")
            return
        name = (query.get("name") or "").lstrip("/") or f"fake_{uuid.uuid4().hex[:8]}"
        fake = self.fake
        with fake._lock:
            fake.create_bodies.append({"_name": name, **body})
            clash = fake.container(name)
            if clash is not None and clash.name == name:
                self._error(409, f'Conflict. The container name "/{name}" is already in use by container '
                                 f'"{clash.id}". You have to remove (or rename) that container to be able to reuse '
                                 f'that name.')
                return
            if normalize_image(body.get("Image", "")) not in fake.images:
                self._error(404, f"No such image: {normalize_image(body.get('Image', ''))}")
                return
            c = FakeContainer(id=hashlib.sha256(uuid.uuid4().bytes).hexdigest(), name=name, body=body, created=_now())
            fake.containers[c.id] = c
        self._json(201, {"Id": c.id, "Warnings": []})

    def container_start(self, query: dict, body: Any, ref: str) -> None:
        c = self._container_or_404(ref)
        if c is None:
            return
        with self.fake._lock:
            status, err = self.fake._start(c)
        if err is not None:
            self._json(status, err)
        else:
            self._empty(status)

    def container_stop(self, query: dict, body: Any, ref: str) -> None:
        c = self._container_or_404(ref)
        if c is None:
            return
        if not c.running:
            self._empty(304)
            return
        self.fake._halt(c, exit_code=0)
        self._empty(204)

    def container_kill(self, query: dict, body: Any, ref: str) -> None:
        c = self._container_or_404(ref)
        if c is None:
            return
        if not c.running:
            self._error(409, f"Cannot kill container: {ref}: container {c.id} is not running")
            return
        self.fake._halt(c, exit_code=137)
        self._empty(204)

    def container_remove(self, query: dict, body: Any, ref: str) -> None:
        c = self._container_or_404(ref)
        if c is None:
            return
        force = query.get("force", "").lower() in ("1", "true")
        if c.running and not force:
            self._error(409, f'cannot remove container "/{c.name}": container is running: stop the container '
                             f'before removing or force remove')
            return
        self.fake._halt(c, exit_code=137)
        with self.fake._lock:
            self.fake.containers.pop(c.id, None)
            self.fake.removed.append(c)
        self._empty(204)

    def container_inspect(self, query: dict, body: Any, ref: str) -> None:
        c = self._container_or_404(ref)
        if c is not None:
            with self.fake._lock:
                out = self.fake._inspect(c)
            self._json(200, out)

    def container_logs(self, query: dict, body: Any, ref: str) -> None:
        c = self._container_or_404(ref)
        if c is None:
            return
        lines = c.logs.splitlines(keepends=True)
        tail = query.get("tail", "all")
        if tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        stream = 2 if query.get("stderr", "0") in ("1", "true") else 1  # Ollama logs to stderr
        data = b"".join(struct.pack(">BxxxL", stream, len(line_)) + line_ for line_ in lines)
        self._headers(200, "application/vnd.docker.multiplexed-stream", len(data))
        self.wfile.write(data)

    def container_list(self, query: dict, body: Any) -> None:
        show_all = query.get("all", "").lower() in ("1", "true")
        try:
            filters = json.loads(query.get("filters") or "{}")
        except ValueError:
            self._error(400, "invalid filter")
            return
        with self.fake._lock:
            out = [self.fake._summary(c) for c in self.fake.containers.values()
                   if (show_all or c.running) and self.fake._matches(c, filters)]
        self._json(200, out)


_ROUTES: list[tuple[str, re.Pattern, Callable[..., None]]] = [
    (method, re.compile(rx), fn) for method, rx, fn in [
        ("GET", r"/_ping", _Handler.ping),
        ("HEAD", r"/_ping", _Handler.ping),
        ("GET", r"/version", _Handler.version),
        ("GET", r"/images/(?P<name>.+)/json", _Handler.image_inspect),
        ("POST", r"/images/create", _Handler.image_create),
        ("GET", r"/volumes/(?P<name>[^/]+)", _Handler.volume_inspect),
        ("POST", r"/volumes/create", _Handler.volume_create),
        ("POST", r"/containers/create", _Handler.container_create),
        ("GET", r"/containers/json", _Handler.container_list),
        ("POST", r"/containers/(?P<ref>[^/]+)/start", _Handler.container_start),
        ("POST", r"/containers/(?P<ref>[^/]+)/stop", _Handler.container_stop),
        ("POST", r"/containers/(?P<ref>[^/]+)/kill", _Handler.container_kill),
        ("GET", r"/containers/(?P<ref>[^/]+)/json", _Handler.container_inspect),
        ("GET", r"/containers/(?P<ref>[^/]+)/logs", _Handler.container_logs),
        ("DELETE", r"/containers/(?P<ref>[^/]+)", _Handler.container_remove),
    ]
]


@pytest.fixture
def fake_docker() -> Iterator[FakeDocker]:
    """A started FAKE Docker engine without images; import this fixture into a test module to use it."""
    with FakeDocker() as engine:
        yield engine
