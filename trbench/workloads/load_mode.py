"""Load mode (spec `load:`): per cell, the load steps in order on the first live server (many
requests in flight at once; a sweep's rates follow its first two steps), each step written as soon
as it is measured."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.engines import Instance
from trbench.run import progress
from trbench.run.load_step import StepPlan, execute_step, failed_step, plan_steps, prepare_server, server_slots, sweep_plans
from trbench.run.load_step import wire_client
from trbench.workloads.protocol import Measured, Planned, ReportPart
from trbench.workloads.run_outcomes import StepOutcome

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession


def _summary(row: dict[str, Any]) -> str:
    def f(v: float | None, d: int = 1) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"
    return (f"{row['run_id']}: {row['n_ok']}/{row['n_requests']} ok, {f(row['request_rps'], 2)} req/s, "
            f"{f(row['output_tps'])} output tok/s, TTFT p95 {f(row['ttft_ms_p95'])} ms, queue p50 "
            f"{f(row['queue_ms_p50'])} ms, goodput {f(row['goodput_rps'], 2)} req/s")


def measure_step(session: TRSession, plan: StepPlan, inst: Instance) -> dict[str, Any]:
    """One load step of one cell on `inst`; its Parquet files are written before it returns. A server
    that will not load for the cell is recorded as the step's failure, and the sweep goes on."""
    s = session
    s.gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    try:
        prepare_server(inst, s.spec, plan)  # the cell's model loaded before the clock; a dead server started again
    except Exception as err:  # noqa: BLE001 - recorded, the other steps go on
        row = failed_step(s.spec, plan, str(err), s.digest)
        store.write_run(s.root, row, [], s.manifest, kind="load")
        progress.emit(kind="run_finished", **progress.load_step_figures(row))
        return row
    row, rows = execute_step(s.spec, plan, wire_client(s.spec), s.prompts, s.digest, s.gate)
    s.gate.check()  # the server may have been stopped under this step: a step cut short is not written
    store.write_run(s.root, row, rows, s.manifest, kind="load")
    s.steps.log.info(_summary(row))
    progress.emit(kind="run_finished", **progress.load_step_figures(row))
    return row


def measure_cell(session: TRSession, plans: list[StepPlan], inst: Instance, measured: Measured) -> None:
    """One cell's load steps in order, a sweep's rates after its first two."""
    s = session
    done = store.finished_run_ids(s.root, "load")
    kept: list[dict[str, Any]] = []
    queue = list(plans)
    while queue:
        plan = queue.pop(0)
        if plan.run_id in done:
            measured.load_skipped += 1
            progress.emit(kind="run_skipped")
            stored = store.read_frame(s.root, "load_steps")
            row = stored[stored["run_id"] == plan.run_id].iloc[0].to_dict()
        else:
            row = s.steps.call("load-step", f"load {plan.run_id}", measure_step, s, plan, inst)
            measured.load_steps.append(StepOutcome.of_step(row))
        kept.append(row)
        if s.spec.load is not None and s.spec.load.sweep and len(kept) == 2:  # its rates from the first two steps
            rates = sweep_plans(s.spec, plans, kept)
            progress.emit(kind="planned", total_runs=len(rates), message="load steps: the sweep's rates")
            queue += rates


class LoadMode:
    """Throughput against latency under concurrent streams or request rates (spec `load:`)."""

    name: ClassVar[str] = "load"
    tables: ClassVar[tuple[str, ...]] = ("load_steps", "load_requests")

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.load is not None and not rerun

    def plan(self, session: TRSession) -> Planned:
        inst = session.live[0]
        batching = inst.concurrency or {}
        steps = plan_steps(session.spec, inst.name, inst.url, server_slots(batching), session.facts,
                           batching.get("max_queue"))
        return Planned(units=steps, extra={"instance": inst})

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        steps: list[StepPlan] = planned.units
        progress.emit(kind="planned", total_runs=len(steps), message="load steps")
        for cell in dict.fromkeys(p.cell for p in steps):
            measure_cell(session, [p for p in steps if p.cell == cell], planned.extra["instance"], measured)

    def report_section(self, root: Path) -> ReportPart | None:
        return None  # the report's Load section
