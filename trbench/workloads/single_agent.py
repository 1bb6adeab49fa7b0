"""The single-agent matrix: every run of every cell, in lanes (one per instance, run in parallel;
serial mode: one model loaded at a time), each run measured and written at once.

The fallback ladder: the first out-of-memory answer of a configuration ends its runs (the rest
are recorded as not run) and the configuration is tried again one rung down spec.oom_fallback.
Resume: runs with a finished run file are not measured again, but their outcomes still count for
the ladder, so a crash between a rung and the next resumes on the next rung. A server that stops
answering is marked out: its remaining runs are recorded as not run, with the reason."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow.compute as pc

from trbench.backends import make_client
from trbench.config.spec import MatrixSpec
from trbench.data import failures, store
from trbench.data.rows import NotRun
from trbench.engines import Instance, unanswered
from trbench.measure import energy
from trbench.run import progress
from trbench.run.plan import Lane, apply_budget, oom_decision, plan_lanes, plan_runs
from trbench.run.settings import RunSettings
from trbench.run.single import RunPlan, execute_run, failed_run
from trbench.workloads import server_ops
from trbench.workloads.protocol import Measured, Planned, ReportPart
from trbench.workloads.run_outcomes import RUN_COLUMNS, RunOutcome
from trbench.prose import count

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession

# errors after which the server is asked whether it still answers at all
_SERVER_GONE_KINDS = {"connect", "timeout", "stall"}


def outcome(row: dict[str, Any]) -> RunOutcome:
    """What the final state counts of a run row."""
    return RunOutcome.of_run(row)


def _kinds(o: RunOutcome) -> set[str]:
    return set(o.error_kinds)


def measure_run(session: TRSession, inst: Instance, plan: RunPlan, warmups: int, load_ms: float | None) -> RunOutcome:
    """One run of one cell on `inst`; its Parquet files are written before it returns."""
    s = session
    s.gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    try:
        reloaded = inst.prepare(plan.cell)  # a server that died during the last run is started again
    except Exception as err:  # noqa: BLE001 - whatever the server did, the run is recorded and the matrix goes on
        return record_failed(s, plan, str(err))
    if reloaded is not None:
        load_ms, warmups = reloaded, s.spec.warmup_requests
    client = make_client(s.spec.backend, inst.url, s.spec.timeout_s, s.spec.stall_timeout_s, plan.harness,
                         inst.api_key_env)
    sampler = energy.sampler_for(s.spec.telemetry, [inst], s.spec.shared_lanes)  # GPU and host telemetry beside the run
    try:
        with sampler or contextlib.nullcontext():
            result = execute_run(
                RunSettings.of(s.spec), plan, client, s.prompts, load_ms, s.digest, warmups,
                on_request=lambda i, n, _ex: progress.emit(kind="request_done", run_id=plan.run_id, request=i, requests=n),
                gate=s.gate, on_phase=sampler.mark if sampler else None,
            )
    finally:
        client.close()
    telemetry_rows = energy.finish(sampler, result.run_row, result.run_row["output_tokens_total"], s.spec.telemetry)
    store.write_run(s.root, result.run_row, result.request_rows, s.manifest, telemetry_rows=telemetry_rows)
    row = result.run_row
    progress.emit(kind="run_finished", **progress.run_figures(row))
    return outcome(row)


def record_failed(session: TRSession, plan: RunPlan, reason: str) -> RunOutcome:
    """A run that could not start (its server would not load, or its cell is over the VRAM budget)
    still leaves its row, with the error."""
    row = failed_run(RunSettings.of(session.spec), plan, reason, session.digest)
    row.update(energy.no_telemetry("no telemetry: the run did not start"))
    store.write_run(session.root, row, [], session.manifest)
    progress.emit(kind="run_finished", **progress.run_figures(row))
    return outcome(row)


def record_not_run(session: TRSession, plans: list[RunPlan], code: NotRun, reason: str) -> list[RunOutcome]:
    """Planned runs that are not measured, kept as invalid rows with the code (what a resume does with
    them) and the reason ("not run: ..."); the failure log holds their cause once, not once per run."""

    def record() -> list[RunOutcome]:
        outcomes = []
        for plan in plans:
            row = failed_run(RunSettings.of(session.spec), plan, reason, session.digest)
            row.update(invalid_reason=f"{store.NOT_RUN}{reason}", not_run=code, error_kinds=[], gpu_memory_at_error=None)
            row.update(energy.no_telemetry("no telemetry: the run was not run"))
            store.write_run(session.root, row, [], session.manifest)
            progress.emit(kind="run_finished", run_id=plan.run_id, valid=False)
            outcomes.append(outcome(row))
        return outcomes

    return session.steps.call("record-not-run", f"not run: {count(len(plans), 'run')}", record) if plans else []


def _run_group(session: TRSession, inst: Instance, group: list[RunPlan]) -> list[RunOutcome]:
    """The runs of one server configuration. The first out-of-memory answer ends them: the rest
    are not run (the ladder moves on), so the failure log holds one OOM per rung; so does a
    server that no longer answers after a run that lost it."""
    s = session
    s.gate.check()
    label = group[0].cell.label
    try:
        load_ms = server_ops.prepare(s, inst, group[0].cell)
    except Exception as err:  # noqa: BLE001 - a server that would not load fails this configuration only
        first = [record_failed(s, group[0], str(err))]
        return first + record_not_run(s, group[1:], "not_loaded", f"{inst.name} would not load {label} (see run {group[0].run_id})")
    outcomes = []
    for i, plan in enumerate(group):
        first_of_cell = i == 0 or plan.cell != group[i - 1].cell
        warmups = s.spec.warmup_requests if first_of_cell else 0
        o = s.steps.call("bench-run", f"run {plan.run_id}", measure_run, s, inst, plan, warmups,
                         load_ms if i == 0 else None)
        outcomes.append(o)
        kinds = _kinds(o)
        rest = group[i + 1:]
        if "oom" in kinds:
            return outcomes + record_not_run(s, rest, "oom_rung", f"{label} ran out of memory in run {plan.run_id}")
        if kinds & _SERVER_GONE_KINDS and (gone := unanswered(inst, s.spec.backend)):
            s.faults.record("health", inst.name, f"after run {plan.run_id} ({', '.join(sorted(kinds))})",
                            model=plan.cell.model, config=label, unusable=f"it does not answer ({gone})")
            return outcomes + record_not_run(s, rest, "server_down", f"{inst.name} {store.SERVER_DOWN}: {s.faults.down(inst.name)}")
    return outcomes


def _stored_outcomes(root: Path, run_ids: list[str]) -> list[RunOutcome]:
    """The outcomes of runs a crashed flow run already finished, from their run files."""
    if not run_ids:
        return []
    runs = store.read_arrow(root, "runs", list(RUN_COLUMNS), pc.field("run_id").isin(run_ids))
    return [outcome(row) for row in runs.to_pylist()]


def run_lane(lane: Lane, session: TRSession) -> list[RunOutcome]:
    """Per server configuration: load the instance, then its runs, down the ladder on out-of-memory;
    in serial mode a model is unloaded before the next one is loaded. The outcomes of the runs
    measured now (finished ones it skipped are not among them)."""
    s = session
    spec, root = s.spec, s.root
    inst = s.instances[lane.instance]
    outcomes: list[RunOutcome] = []
    groups = [list(g) for _, g in itertools.groupby(lane.plans, key=lambda p: p.cell.server_key)]
    loaded = False
    for n, group in enumerate(groups):
        rungs = list(spec.oom_fallback)
        while group:
            done = store.done_run_ids(root)
            todo = [p for p in group if p.run_id not in done]
            if todo and (down := s.faults.down(inst.name)):
                outcomes += record_not_run(s, todo, "server_down", f"{inst.name} {store.SERVER_DOWN}: {down}")
                break
            stored = _stored_outcomes(root, [p.run_id for p in group if p.run_id in done])
            oom_before = sorted(o.run_id for o in stored if "oom" in _kinds(o))
            if todo and oom_before:  # a crash came between an OOM and the not-run rows of its rung
                ran = record_not_run(s, todo, "oom_rung", f"{group[0].cell.label} ran out of memory in run {oom_before[0]}")
            else:
                ran = _run_group(s, inst, todo) if todo else []
                loaded = loaded or bool(todo)
            outcomes += ran
            oom = sorted(o.run_id for o in ran + stored if "oom" in _kinds(o))
            if not oom:
                break
            decision, group = oom_decision(group, oom, rungs, spec, s.prompts)
            failures.record_fallbacks(root, [decision])
        next_model = groups[n + 1][0].cell.model if n + 1 < len(groups) else None
        if spec.execution.mode == "serial" and loaded and next_model != groups[n][0].cell.model:
            if not s.faults.down(inst.name):  # a failed unload is recorded; the next model is tried all the same
                server_ops.unload(s, inst, groups[n][0].cell.model)
            loaded = False
    return outcomes


class SingleAgent:
    """The single-agent matrix (spec `single_agent`, `grid`, `runs`)."""

    name: ClassVar[str] = "single"
    tables: ClassVar[tuple[str, ...]] = ("runs", "requests")

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.single_agent

    def plan(self, session: TRSession) -> Planned:
        s = session
        every, over_budget = apply_budget(plan_runs(s.spec, s.prompts, s.instances, s.facts), s.manifest.vram_budget,
                                          s.spec, s.prompts)
        finished = store.finished_run_ids(s.root)
        over_budget = [(p, why) for p, why in over_budget if p.run_id not in finished]
        todo = s.selection.single(every, s.root)
        # resuming, the lanes see every planned run: they skip the finished ones, but an out-of-memory
        # config finished before the crash still moves on to its next rung
        lanes = plan_lanes(todo if s.selection.rerun else every, s.spec, s.instances)
        skipped = 0 if s.selection.rerun else len(every) - len(todo)
        return Planned(units=lanes, runs=len(todo) + len(over_budget), skipped=skipped,
                       extra={"over_budget": over_budget})

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        s = session
        for plan, reason in planned.extra["over_budget"]:
            measured.runs.append(s.steps.call("record-failed-runs", f"over budget {plan.run_id}", record_failed, s,
                                              plan, reason))
        results = s.steps.map("lane", "lane {item.instance}", run_lane, planned.units, s)
        errors = [r for r in results if isinstance(r, Exception)]
        for r in results:
            if not isinstance(r, Exception):
                measured.runs += r
        if errors:  # one lane's failure leaves the others' outcomes counted; reported in the state
            raise errors[0]

    def report_section(self, root: Path) -> ReportPart | None:
        return None  # the report's Results sections
