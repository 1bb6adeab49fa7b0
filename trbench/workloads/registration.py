"""The one place workloads are registered, in the order a TR run measures them."""

from __future__ import annotations

from trbench.config.spec import MatrixSpec
from trbench.workloads.protocol import Workload

WORKLOADS: list[Workload] = []


def register(workload: Workload) -> Workload:
    """Add a workload after those registered before (one of the same name is replaced in place)."""
    for i, known in enumerate(WORKLOADS):
        if known.name == workload.name:
            WORKLOADS[i] = workload
            return workload
    WORKLOADS.append(workload)
    return workload


def unregister(name: str) -> None:
    WORKLOADS[:] = [w for w in WORKLOADS if w.name != name]


def active(spec: MatrixSpec, rerun: bool = False) -> list[Workload]:
    """The workloads this TR run measures, in order."""
    return [w for w in WORKLOADS if w.wanted(spec, rerun)]
