"""What the workloads ask of a server between runs: load it for a configuration, free a model's
memory. Nothing a server does here ends the TR: a failed operation is recorded in the session's
failure log of the servers, and the matrix goes on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trbench.config.spec import Cell
from trbench.engines import Instance, unanswered

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession


def prepare(session: TRSession, inst: Instance, cell: Cell) -> float | None:
    """(Re)load the server for this cell's model, GPU layers and context, as one step; the load time in ms."""

    def load() -> float | None:
        load_ms = inst.prepare(cell)
        if load_ms is not None:
            session.steps.log.info("%s loaded %s (%s) in %.0f ms", inst.name, cell.model, cell.label, load_ms)
        return load_ms

    return session.steps.call("prepare-instance", f"prepare {inst.name} for {cell.model} {cell.label}", load)


def unload(session: TRSession, inst: Instance, model: str) -> bool:
    """Free the model's memory, as one step; a failed unload is recorded, and the instance is marked
    out when it no longer answers. True when the unload succeeded."""

    def free() -> bool:
        try:
            inst.unload(model)
            return True
        except Exception as err:  # noqa: BLE001 - recorded; the next model is tried all the same
            gone = unanswered(inst, session.spec.backend)
            session.steps.log.error(session.faults.record("unload", inst.name, err, model=model,
                                                          unusable=f"it does not answer ({gone})" if gone else None))
            return False

    return session.steps.call("unload-model", f"unload {model} from {inst.name}", free)
