"""Checks that run before any benchmark time is spent; each failure names instance, check and fix."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

import httpx

from trbench.backends import backend_kind
from trbench.backends.auth import auth_headers
from trbench.run import progress
from trbench.backends.base import error_text
from trbench.data.model_facts import ModelFacts
from trbench.engines import bundled, ollama_api, ollama_names, ollama_pull
from trbench.engines.instance import Instance
from trbench.engines.embedded import EmbeddedInstance


class PreflightError(RuntimeError):
    def __init__(self, instance: str, check: str, problem: str, fix: str):
        super().__init__(f"preflight failed: instance {instance}, check '{check}': {problem}; fix: {fix}")
        self.instance, self.check = instance, check


def remove_leftovers(inst: Instance) -> list[str]:
    """What a crashed earlier run left of this instance and still holds its port (a container
    whose reaper died with it keeps publishing the port): removed before the port is checked, so
    that the check sees only what trbench did not start. The names of what was removed."""
    return list(inst.remove_leftovers())


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
            # only the embedded section has a host; the others listen on 127.0.0.1
            where_fix = "a local address in server.host and " if isinstance(inst, EmbeddedInstance) else ""
            raise PreflightError(inst.name, "port free", f"cannot bind {host}:{port} ({err})",
                                 f"use {where_fix}another port in the spec field 'ports'") from None
    return f"{inst.name}: port {port} free"


def _refused(inst: Instance, check: str, status: int) -> PreflightError | None:
    """A server that refuses the request for want of the right key (HTTP 401 or 403): the error naming
    the variable the key came from (never the key), or the field that would send one."""
    if status not in (401, 403):
        return None
    if inst.api_key_env:
        return PreflightError(inst.name, check, f"the server at {inst.url} refused the key in ${inst.api_key_env} "
                              f"(HTTP {status})", f"export the server's own key as {inst.api_key_env} (vLLM: the "
                              "value of its --api-key), or point server.api_key_env at the variable that holds it")
    return PreflightError(inst.name, check, f"the server at {inst.url} asks for an API key (HTTP {status})",
                          "export the key in an environment variable and name that variable in "
                          "server.api_key_env (e.g. api_key_env: TRBENCH_API_KEY)")


def check_health(inst: Instance, backend: str, timeout_s: float = 5.0) -> None:
    """An external server must answer before we spend time on it (with its key, if it asks for one)."""
    path = backend_kind(backend).health_path
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False, headers=auth_headers(inst.api_key_env)) as http:
            r = http.get(f"{inst.url}{path}")
    except httpx.HTTPError as err:
        raise PreflightError(inst.name, "server answers", f"{inst.url} did not answer ({type(err).__name__})",
                             "start the server or correct the URL in the spec field 'urls'") from None
    if (refused := _refused(inst, "server answers", r.status_code)) is not None:
        raise refused
    if r.status_code != 200:
        raise PreflightError(inst.name, "server answers", f"GET {path} answered HTTP {r.status_code}",
                             f"check that {inst.url} is a {backend} server")


def available_models(inst: Instance, backend: str) -> list[str]:
    if isinstance(inst, EmbeddedInstance):
        return sorted(bundled.BUNDLED_MODELS)
    kind = backend_kind(backend)
    path = kind.models_path
    try:
        with httpx.Client(timeout=10.0, trust_env=False, headers=auth_headers(inst.api_key_env)) as http:
            r = http.get(f"{inst.url}{path}")
        data = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as err:
        raise PreflightError(inst.name, "model present", f"listing the models of {inst.url} failed "
                             f"({type(err).__name__}: {err})", f"check that {inst.url} is a {backend} server") from None
    if (refused := _refused(inst, "model present", r.status_code)) is not None:
        raise refused
    if not isinstance(data, dict):
        raise PreflightError(inst.name, "model present", f"GET {path} answered HTTP {r.status_code}: "
                             f"{error_text(r.content)[:200]}", f"check that {inst.url} is a {backend} server")
    return kind.listed(data)


def _report_pull(inst: Instance, p: ollama_pull.PullProgress) -> None:
    progress.emit(kind="pull", message=f"{inst.name}: {p.model}: {p.status}", model=p.model,
                  completed=p.completed, total=p.total)


def _store_fix(inst: Instance, model: str) -> str:
    """How to get the model onto the instance, naming the model store the instance uses. A server
    trbench does not start (external) is pulled to by hand: its section has no pull_models."""
    fix = inst.pull_fix(model)
    if fix is not None:
        return fix
    return f"`ollama pull {model}` on the host of {inst.url}, or correct the name in the spec field 'models'"


def check_model(inst: Instance, backend: str, model: str, pull: bool = False) -> str:
    """Raise PreflightError unless the model is there; returns what was found or done. Ollama
    names are compared as Ollama does ("llama3.2" is "llama3.2:latest")."""
    if isinstance(inst, EmbeddedInstance):
        try:
            bundled.resolve(model)
        except bundled.ModelNotFound as err:
            problem, _, fix = str(err).partition("; fix: ")
            raise PreflightError(inst.name, "model present", problem, fix) from None
        return f"{inst.name}: {model} bundled"
    if inst.any_model:
        return f"{inst.name}: {model} (the mock server answers any model name)"
    kind = backend_kind(backend)
    names = available_models(inst, backend)
    found = ollama_names.find(model, names) if kind.ollama_names else (model if model in names else None)
    if found is not None:
        return f"{inst.name}: {model} present" + (f" (as {found})" if found != model else "")
    if kind.pulls and pull:
        try:
            ollama_pull.pull(inst.url, model, on_progress=lambda p: _report_pull(inst, p))
        except ollama_api.OllamaAPIError as err:
            raise PreflightError(inst.name, "model present", f"pulling {model!r} failed: {err}",
                                 "check the model name (ollama.com/library) and the server's network") from None
        if ollama_names.find(model, available_models(inst, backend)) is None:
            raise PreflightError(inst.name, "model present", f"{model!r} was pulled but {inst.url} does not list it",
                                 "check the server's log")
        return f"{inst.name}: {model} pulled"
    fix = (_store_fix(inst, model) if kind.pulls
           else "load that model on the server, or correct the name in the spec field 'models'")
    raise PreflightError(inst.name, "model present", f"model {model!r} is not on {inst.url} (it has: {', '.join(names) or 'none'})", fix)


def model_facts(inst: Instance, backend: str, model: str) -> ModelFacts:
    """What the manifest records of a model (digest, size, context, template), read from the
    instance. A model preflight found but whose facts cannot be read (an Ollama model that
    /api/tags lists and /api/show cannot describe, a GGUF whose header does not parse) fails
    preflight for that model: nothing can be planned or recorded for it."""
    try:
        return inst.model_facts(model)
    except Exception as err:  # noqa: BLE001 - whatever the server or file says, it is this model's preflight
        problem = str(err) if model in str(err) else f"{model!r}: {err}"
        raise PreflightError(inst.name, "model facts", problem, _facts_fix(inst, backend, model, err)) from err


def _facts_fix(inst: Instance, backend: str, model: str, err: Exception) -> str:
    if isinstance(inst, EmbeddedInstance):
        return "reinstall the model's package: `make setup`"
    if backend_kind(backend).describes_models and isinstance(err, ollama_api.OllamaAPIError) and err.kind == "http_4xx":
        # listed but not described: its manifest names files the store no longer has; a pull
        # fetches what is missing (pull_models does not: preflight found the model listed)
        return f"`ollama pull {model}` again into the model store of the server at {inst.url}"
    return f"check that {inst.url} is a {backend} server that answers, and its log"
