"""Load mode (spec `load:`): per cell, the load steps in order on the first live server (many
requests in flight at once; a sweep's rates follow its first two steps), each step written as soon
as it is measured."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.engines import Instance
from trbench.measure import energy
from trbench.run import progress
from trbench.run.load_step import StepPlan, execute_step, failed_step, plan_steps, prepare_server, server_slots, sweep_plans
from trbench.run.load_step import output_tokens, wire_client
from trbench.run.sweep_stop import ramp_step, stop_reason
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


def measure_step(session: TRSession, plan: StepPlan, inst: Instance, previous: dict[str, Any] | None = None,
                 later: int = 0) -> dict[str, Any]:
    """One load step of one cell on `inst`; its Parquet files are written before it returns. A server
    that will not load for the cell is recorded as the step's failure, and the sweep goes on. previous,
    later: the step before it that the stopping rules read, and how many steps follow it (sweep_stop)."""
    s = session
    s.gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    try:
        prepare_server(inst, s.spec, plan)  # the cell's model loaded before the clock; a dead server started again
    except Exception as err:  # noqa: BLE001 - recorded, the other steps go on
        row = failed_step(s.spec, plan, str(err), s.digest)
        row.update(energy.no_telemetry("no telemetry: the step did not start"))
        store.write_run(s.root, row, [], s.manifest, kind="load")
        progress.emit(kind="run_finished", **progress.load_step_figures(row))
        return row
    sampler = energy.sampler_for(s.spec.telemetry, [inst])  # GPU and host telemetry beside the step
    with sampler or contextlib.nullcontext():
        row, rows = execute_step(s.spec, plan, wire_client(s.spec), s.prompts, s.digest, s.gate,
                                 sampler.mark if sampler else None)
    s.gate.check()  # the server may have been stopped under this step: a step cut short is not written
    telemetry_rows = energy.finish(sampler, row, output_tokens(rows), s.spec.telemetry)
    load = s.spec.load
    if load is not None and ramp_step(load, plan.step):
        row["stop_reason"] = stop_reason(load, row, previous, later)
    store.write_run(s.root, row, rows, s.manifest, kind="load", telemetry_rows=telemetry_rows)
    s.steps.log.info(_summary(row))
    progress.emit(kind="run_finished", **progress.load_step_figures(row))
    return row


def measure_cell(session: TRSession, plans: list[StepPlan], inst: Instance, measured: Measured) -> None:
    """One cell's load steps in order, a sweep's rates after its first two; the steps after one that
    stopped them (its stop_reason) are not run."""
    s = session
    done = store.finished_run_ids(s.root, "load")
    kept: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None  # the last step the stopping rules read
    queue = list(plans)
    while queue:
        plan = queue.pop(0)
        if plan.run_id in done:
            measured.load_skipped += 1
            progress.emit(kind="run_skipped")
            stored = store.read_frame(s.root, "load_steps")
            row = stored[stored["run_id"] == plan.run_id].iloc[0].to_dict()
        else:
            row = s.steps.call("load-step", f"load {plan.run_id}", measure_step, s, plan, inst, previous, len(queue))
            measured.load_steps.append(StepOutcome.of_step(row))
        kept.append(row)
        if s.spec.load is not None and ramp_step(s.spec.load, plan.step):
            previous = row
        if isinstance(row.get("stop_reason"), str):  # stored rows too: a resume stops where the run did
            s.steps.log.info(f"{plan.run_id}: {row['stop_reason']}")
            for _ in queue:
                progress.emit(kind="run_skipped")
            return
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
