"""Tasks that start, load, unload and stop instances. Nothing a server does here ends the flow:
a failed operation is recorded (trbench.data.failures.InstanceFaults) and the matrix goes on."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from trbench.engines import Instance, unanswered
from trbench.data.failures import InstanceFaults
from trbench.config.spec import Cell


@task(name="prepare-instance", cache_policy=NO_CACHE, task_run_name="prepare {inst.name} for {cell.model} {cell.label}")
def prepare_instance(inst: Instance, cell: Cell) -> float | None:
    """(Re)load the server for this cell's model, GPU layers and context; the load time in ms."""
    load_ms = inst.prepare(cell)
    if load_ms is not None:
        get_run_logger().info("%s loaded %s (%s) in %.0f ms", inst.name, cell.model, cell.label, load_ms)
    return load_ms


def _stop_one(inst: Instance, faults: InstanceFaults | None) -> None:
    try:
        inst.stop()
    except Exception as err:  # noqa: BLE001 - the other instances are stopped all the same
        if faults is None:
            raise
        get_run_logger().error(faults.record("stop", inst.name, err))


@task(name="stop-instances", cache_policy=NO_CACHE)
def stop_instances(instances: list[Instance], faults: InstanceFaults | None = None) -> None:
    for inst in instances:
        _stop_one(inst, faults)


@task(name="start-instances", cache_policy=NO_CACHE)
def start_instances(instances: list[Instance], faults: InstanceFaults | None = None) -> list[str]:
    """Start every server the provider starts (containers, `ollama serve`); embedded ones load per
    cell. With `faults`, a server that will not start is recorded and marked out, the others start."""
    started = []
    for inst in instances:
        try:
            inst.start()
        except Exception as err:
            if faults is None:
                raise
            get_run_logger().error(faults.record("start", inst.name, err, unusable="it did not start"))
            _stop_one(inst, faults)  # whatever half of it was created
            continue
        started.append(f"{inst.name}: {inst.url}")
    return started


@task(name="unload-model", cache_policy=NO_CACHE, task_run_name="unload {model} from {inst.name}")
def unload_model(inst: Instance, model: str, backend: str = "ollama", faults: InstanceFaults | None = None) -> bool:
    """Free the model's memory; with `faults`, a failed unload is recorded, and the instance is
    marked out when it no longer answers. True when the unload succeeded."""
    try:
        inst.unload(model)
        return True
    except Exception as err:
        if faults is None:
            raise
        gone = unanswered(inst, backend)
        get_run_logger().error(faults.record("unload", inst.name, err, model=model,
                                             unusable=f"it does not answer ({gone})" if gone else None))
        return False
