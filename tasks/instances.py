"""Tasks that load a server for a matrix cell and stop instances."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from trbench.engines.instances import Instance
from trbench.spec import Cell


@task(name="prepare-instance", cache_policy=NO_CACHE, task_run_name="prepare {inst.name} for {cell.model} {cell.label}")
def prepare_instance(inst: Instance, cell: Cell) -> float | None:
    """(Re)load the server for this cell's model, GPU layers and context; the load time in ms."""
    load_ms = inst.prepare(cell)
    if load_ms is not None:
        get_run_logger().info("%s loaded %s (%s) in %.0f ms", inst.name, cell.model, cell.label, load_ms)
    return load_ms


@task(name="stop-instances", cache_policy=NO_CACHE)
def stop_instances(instances: list[Instance]) -> None:
    for inst in instances:
        inst.stop()


@task(name="start-instances", cache_policy=NO_CACHE)
def start_instances(instances: list[Instance]) -> list[str]:
    """Start every server the provider starts (containers, `ollama serve`); embedded ones load per cell."""
    for inst in instances:
        inst.start()
    return [f"{i.name}: {i.url}" for i in instances]


@task(name="unload-model", cache_policy=NO_CACHE, task_run_name="unload {model} from {inst.name}")
def unload_model(inst: Instance, model: str) -> None:
    inst.unload(model)
