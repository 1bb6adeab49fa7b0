"""The single-agent benchmark run as a task: measure, then persist the run at once."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

from prefect import task
from pydantic import BaseModel
from prefect.cache_policies import NO_CACHE

from trbench.measure import energy
from trbench.data import failures
from trbench.run import progress
from trbench.data import store
from trbench.backends import make_client
from trbench.engines import Instance, unanswered
from trbench.data.failures import InstanceFaults
from trbench.config.prompts import PromptSuite
from trbench.run.settings import RunSettings
from trbench.run.single import Gate, RunPlan, execute_run, failed_run
from trbench.config.spec import MatrixSpec
from trbench.run.plan import Lane, oom_decision
from trbench.run.session import TRSession
from tasks.instances import prepare_instance, unload_model

# errors after which the server is asked whether it still answers at all
_SERVER_GONE_KINDS = {"connect", "timeout", "stall"}


@task(name="bench-run", cache_policy=NO_CACHE, task_run_name="run {plan.run_id}")
def bench_run(
    plan: RunPlan,
    spec: MatrixSpec,
    inst: Instance,
    prompts: PromptSuite,
    manifest: dict,
    manifest_digest: str,
    root: Path,
    warmups: int,
    load_ms: float | None,
    gate: Gate,
) -> dict:
    """One run of one cell; its Parquet files are written before the task returns."""
    gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    try:
        reloaded = inst.prepare(plan.cell)  # a server that died during the last run is started again
    except Exception as err:  # noqa: BLE001 - whatever the server did, the run is recorded and the matrix goes on
        return _persist_failed(plan, spec, str(err), manifest, manifest_digest, root)
    if reloaded is not None:
        load_ms, warmups = reloaded, spec.warmup_requests
    client = make_client(spec.backend, inst.url, spec.timeout_s, spec.stall_timeout_s, plan.harness)
    sampler = energy.sampler_for(spec.telemetry, [inst], spec.shared_lanes)  # GPU and host telemetry beside the run
    try:
        with sampler or contextlib.nullcontext():
            result = execute_run(
                RunSettings.of(spec), plan, client, prompts, load_ms, manifest_digest, warmups,
                on_request=lambda i, n, _ex: progress.emit(kind="request_done", run_id=plan.run_id, request=i, requests=n),
                gate=gate, on_phase=sampler.mark if sampler else None,
            )
    finally:
        client.close()
    telemetry_rows = energy.finish(sampler, result.run_row, result.run_row["output_tokens_total"], spec.telemetry)
    store.write_run(root, result.run_row, result.request_rows, manifest, telemetry_rows=telemetry_rows)
    row = result.run_row
    progress.emit(kind="run_finished", **progress.run_figures(row))
    return _outcome(row)


@task(name="record-failed-runs", cache_policy=NO_CACHE)
def record_failed_runs(plans: list[RunPlan], session: TRSession, reason: str) -> list[dict]:
    """A cell whose server would not load still leaves a row per planned run, with the error."""
    s = session
    return [_persist_failed(plan, s.spec, reason, s.manifest, s.digest, s.root) for plan in plans]


def _persist_failed(plan: RunPlan, spec: MatrixSpec, reason: str, manifest: dict, manifest_digest: str, root: Path) -> dict:
    row = failed_run(RunSettings.of(spec), plan, reason, manifest_digest)
    row.update(energy.no_telemetry("no telemetry: the run did not start"))
    store.write_run(root, row, [], manifest)
    progress.emit(kind="run_finished", **progress.run_figures(row))
    return _outcome(row)


@task(name="record-not-run", cache_policy=NO_CACHE)
def record_not_run(plans: list[RunPlan], spec: MatrixSpec, reason: str, manifest: dict, manifest_digest: str,
                   root: Path) -> list[dict]:
    """Planned runs that are not measured, kept as invalid rows with the reason ("not run: ...");
    the failure log holds their cause once, not once per run."""
    outcomes = []
    for plan in plans:
        row = failed_run(RunSettings.of(spec), plan, reason, manifest_digest)
        row.update(invalid_reason=f"not run: {reason}", error_kinds=None, gpu_memory_at_error=None)
        row.update(energy.no_telemetry("no telemetry: the run was not run"))
        store.write_run(root, row, [], manifest)
        progress.emit(kind="run_finished", run_id=plan.run_id, valid=False)
        outcomes.append(_outcome(row))
    return outcomes


def _outcome(row: dict) -> dict:
    return {k: row[k] for k in ("run_id", "model", "valid", "n_ok", "n_errors", "invalid_reason", "decode_tps_p50",
                                "error_kinds")}


class LaneResult(BaseModel):
    outcomes: list[dict]  # the runs this lane measured (finished ones it skipped are not among them)


def _run_group(group: list[RunPlan], spec: MatrixSpec, inst: Instance, prompts: PromptSuite, manifest: dict,
               manifest_digest: str, root: Path, gate: Gate, faults: InstanceFaults) -> list[dict]:
    """The runs of one server configuration. The first out-of-memory answer ends them: the rest
    are not run (the ladder moves on), so the failure log holds one OOM per rung; so does a
    server that no longer answers after a run that lost it."""
    gate.check()
    label = group[0].cell.label
    try:
        load_ms = prepare_instance(inst, group[0].cell)
    except Exception as err:  # noqa: BLE001 - a server that would not load fails this configuration only
        first = [_persist_failed(group[0], spec, str(err), manifest, manifest_digest, root)]
        return first + record_not_run(group[1:], spec, f"{inst.name} would not load {label} (see run "
                                      f"{group[0].run_id})", manifest, manifest_digest, root)
    outcomes = []
    for i, plan in enumerate(group):
        first_of_cell = i == 0 or plan.cell != group[i - 1].cell
        outcome = bench_run(plan, spec, inst, prompts, manifest, manifest_digest, root,
                            spec.warmup_requests if first_of_cell else 0, load_ms if i == 0 else None, gate)
        outcomes.append(outcome)
        kinds = set((outcome.get("error_kinds") or "").split(","))
        rest = group[i + 1:]
        if "oom" in kinds:
            return outcomes + record_not_run(rest, spec, f"{label} ran out of memory in run {plan.run_id}",
                                             manifest, manifest_digest, root)
        if kinds & _SERVER_GONE_KINDS and (gone := unanswered(inst, spec.backend)):
            faults.record("health", inst.name, f"after run {plan.run_id} ({outcome.get('error_kinds')})",
                          model=plan.cell.model, config=label, unusable=f"it does not answer ({gone})")
            return outcomes + record_not_run(rest, spec, f"{inst.name} {store.SERVER_DOWN}: {faults.down(inst.name)}",
                                             manifest, manifest_digest, root)
    return outcomes


def _stored_outcomes(root: Path, run_ids: list[str]) -> list[dict]:
    """The outcomes of runs a crashed flow run already finished, from their run files."""
    if not run_ids:
        return []
    runs = store.read_frame(root, "runs")
    runs = runs[runs["run_id"].isin(run_ids)].astype(object)
    return [_outcome(row) for row in runs.where(runs.notna(), None).to_dict("records")]


@task(name="lane", cache_policy=NO_CACHE, task_run_name="lane {lane.instance}")
def run_lane(lane: Lane, session: TRSession) -> LaneResult:
    """Per server configuration: load the instance, then its runs; a configuration that runs out of
    memory is tried again one rung down spec.oom_fallback; in serial mode a model is unloaded
    before the next one is loaded.

    Runs that already have a run file (a resumed TR run) are not measured again, but their
    outcomes still count for the ladder: a crash between an out-of-memory rung and the next one
    resumes on the next rung. Each decision is kept at once, so a crash does not lose it.

    An instance marked unusable (it did not start, or stopped answering) measures nothing more:
    its remaining runs are recorded as not run, with the reason."""
    spec, prompts, manifest, manifest_digest = session.spec, session.prompts, session.manifest, session.digest
    root, gate, faults = session.root, session.gate, session.faults
    inst = session.instances[lane.instance]
    outcomes: list[dict] = []
    groups = [list(g) for _, g in itertools.groupby(lane.plans, key=lambda p: p.cell.server_key)]
    loaded = False
    for n, group in enumerate(groups):
        rungs = list(spec.oom_fallback)
        while group:
            done = store.done_run_ids(root)
            todo = [p for p in group if p.run_id not in done]
            if todo and (down := faults.down(inst.name)):
                outcomes += record_not_run(todo, spec, f"{inst.name} {store.SERVER_DOWN}: {down}", manifest,
                                           manifest_digest, root)
                break
            stored = _stored_outcomes(root, [p.run_id for p in group if p.run_id in done])
            oom_before = sorted(o["run_id"] for o in stored if "oom" in (o.get("error_kinds") or ""))
            if todo and oom_before:  # a crash came between an OOM and the not-run rows of its rung
                ran = record_not_run(todo, spec, f"{group[0].cell.label} ran out of memory in run {oom_before[0]}",
                                     manifest, manifest_digest, root)
            else:
                ran = _run_group(todo, spec, inst, prompts, manifest, manifest_digest, root, gate, faults) if todo else []
                loaded = loaded or bool(todo)
            outcomes += ran
            oom = sorted(o["run_id"] for o in ran + stored if "oom" in (o.get("error_kinds") or ""))
            if not oom:
                break
            decision, group = oom_decision(group, oom, rungs, spec, prompts)
            failures.record_fallbacks(root, [decision])
        next_model = groups[n + 1][0].cell.model if n + 1 < len(groups) else None
        if spec.execution.mode == "serial" and loaded and next_model != groups[n][0].cell.model:
            if not faults.down(inst.name):  # a failed unload is recorded; the next model is tried all the same
                unload_model(inst, groups[n][0].cell.model, spec.backend, faults)
            loaded = False
    return LaneResult(outcomes=outcomes)
