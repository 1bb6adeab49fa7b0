"""Preflight tasks: nothing is loaded or measured until every check passes."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from trbench import preflight
from trbench.engines.instances import EmbeddedInstance, Instance


@task(name="preflight-instance", cache_policy=NO_CACHE)
def check_instance(inst: Instance, backend: str) -> str:
    """Embedded: the port is free. External: the server answers."""
    if isinstance(inst, EmbeddedInstance):
        preflight.check_port_free(inst)
        return f"{inst.name}: port {inst.port} free"
    preflight.check_health(inst, backend)
    return f"{inst.name}: {inst.url} answers"


@task(name="preflight-model", cache_policy=NO_CACHE, task_run_name="preflight {model} on {inst.name}")
def check_model(inst: Instance, backend: str, model: str, pull: bool = False) -> str:
    """The model is on the instance; an Ollama server pulls it first when the spec allows."""
    return preflight.check_model(inst, backend, model, pull)
