"""Checks that run before any benchmark time is spent; each failure names instance, check and fix."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import httpx

from trbench.engines import bundled, ollama_api
from trbench.engines.instances import EmbeddedInstance, Instance


class PreflightError(RuntimeError):
    def __init__(self, instance: str, check: str, problem: str, fix: str):
        super().__init__(f"preflight failed: instance {instance}, check '{check}': {problem}; fix: {fix}")
        self.instance, self.check = instance, check


def check_port_free(inst: Instance) -> str:
    """The port of a server we start must be free: a server already there would be measured instead."""
    where = urlsplit(inst.url)
    host, port = where.hostname, where.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers do: connections in TIME_WAIT from an earlier run do not make the port busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PreflightError(inst.name, "port free", f"{host}:{port} is already in use",
                                     "stop the process that holds it, or pick other ports in the spec field 'ports'") from None
            raise PreflightError(inst.name, "port free", f"cannot bind {host}:{port} ({err})",
                                 "use a local address in 'host' and a port in 1024..65535") from None
    return f"{inst.name}: port {port} free"


def check_health(inst: Instance, backend: str, timeout_s: float = 5.0) -> None:
    """An external server must answer before we spend time on it."""
    path = "/api/version" if backend == "ollama" else "/v1/models"
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as http:
            r = http.get(f"{inst.url}{path}")
    except httpx.HTTPError as err:
        raise PreflightError(inst.name, "server answers", f"{inst.url} did not answer ({type(err).__name__})",
                             "start the server or correct the URL in the spec field 'urls'") from None
    if r.status_code != 200:
        raise PreflightError(inst.name, "server answers", f"GET {path} answered HTTP {r.status_code}",
                             f"check that {inst.url} is a {backend} server")


def available_models(inst: Instance, backend: str) -> list[str]:
    if isinstance(inst, EmbeddedInstance):
        return sorted(bundled.BUNDLED_MODELS)
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        if backend == "ollama":
            data = http.get(f"{inst.url}/api/tags").json()
            return sorted({n for m in data.get("models", []) for n in (m.get("name"), m.get("model")) if n})
        data = http.get(f"{inst.url}/v1/models").json()
        return sorted(m.get("id") for m in data.get("data", []) if m.get("id"))


def check_model(inst: Instance, backend: str, model: str, pull: bool = False) -> str:
    """Raise PreflightError unless the model is there; returns what was found or done."""
    if isinstance(inst, EmbeddedInstance):
        try:
            bundled.resolve(model)
        except bundled.ModelNotFound as err:
            problem, _, fix = str(err).partition("; fix: ")
            raise PreflightError(inst.name, "model present", problem, fix) from None
        return f"{inst.name}: {model} bundled"
    names = available_models(inst, backend)
    if model in names:
        return f"{inst.name}: {model} present"
    if backend == "ollama" and pull:
        try:
            ollama_api.pull(inst.url, model)
        except ollama_api.OllamaAPIError as err:
            raise PreflightError(inst.name, "model present", f"pulling {model!r} failed: {err}",
                                 "check the model name and the server's network") from None
        return f"{inst.name}: {model} pulled"
    fix = (f"`ollama pull {model}` on that host, or set pull_models: true in the spec" if backend == "ollama"
           else "load that model on the server")
    raise PreflightError(inst.name, "model present", f"model {model!r} is not on {inst.url} (it has: {', '.join(names) or 'none'})", fix)
