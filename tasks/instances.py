"""Tasks that start and stop instances (loading and unloading between runs is the workloads'
business: trbench/workloads/server_ops.py). Nothing a server does here ends the flow:
a failed operation is recorded (trbench.data.failures.InstanceFaults) and the matrix goes on."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from trbench.engines import Instance
from trbench.data.failures import InstanceFaults


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
