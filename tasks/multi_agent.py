"""The multi-agent run as a task: load both instances for the scenario, measure, persist at once."""

from __future__ import annotations

import contextlib
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from trbench.measure import energy
from trbench.run import progress
from trbench.data import store
from trbench.config.agents import AgentSuite
from trbench.backends import make_client
from trbench.run.multi_external import runner_phase
from trbench.engines import Instance
from trbench.data.failures import InstanceFaults
from trbench.run.single import Gate
from trbench.run.multi import MultiRunPlan, execute_multi_run, failed_multi_run, multi_agent_section
from trbench.config.spec import Cell, MatrixSpec, OptionSet


def cell_for(model: str, opts: OptionSet) -> Cell | None:
    """The server configuration an instance must load, when every setting is given."""
    if None in (opts.num_gpu, opts.num_ctx):
        return None  # an Ollama server takes its defaults (or the options) per request
    return Cell(model=model, num_gpu=opts.num_gpu, num_ctx=opts.num_ctx, temperature=opts.temperature or 0.0)


@task(name="multi-agent-run", cache_policy=NO_CACHE, task_run_name="multi-agent {plan.run_id}")
def multi_agent_run(plan: MultiRunPlan, spec: MatrixSpec, instances: dict[str, Instance], suite: AgentSuite,
                    manifest: dict, manifest_digest: str, root: Path, first_of_config: bool, gate: Gate,
                    faults: InstanceFaults | None = None) -> dict:
    """Collector and insight at once, then alone; the run's Parquet files are written before returning.
    An instance marked unusable leaves the run recorded as not run, with the reason."""
    gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    down = [f"{i.name} {store.SERVER_DOWN}: {why}" for i in instances.values()
            if faults and (why := faults.down(i.name))]
    if down:
        return _persist_failed(plan, spec, "; ".join(down), manifest, manifest_digest, root, prefix="not run: ")
    reloaded = False
    try:
        for slot in plan.slots:
            cell = cell_for(plan.model, slot.options)
            if cell is not None:
                reloaded |= instances[slot.role].prepare(cell) is not None
    except Exception as err:  # noqa: BLE001 - whatever the server did, the run is recorded and the matrix goes on
        return _persist_failed(plan, spec, str(err), manifest, manifest_digest, root)
    clients = {role: make_client(spec.backend, inst.url, spec.timeout_s, spec.stall_timeout_s, plan.harness)
               for role, inst in instances.items()}
    sampler = energy.sampler_for(spec.telemetry, list(instances.values()), spec.shared_lanes)  # GPU and host telemetry beside the run
    try:
        warmups = multi_agent_section(spec).warmup_rounds if (reloaded or first_of_config) else 0
        with sampler or contextlib.nullcontext():
            result = execute_multi_run(spec, plan, suite, clients, warmups, manifest_digest,
                                       on_phase=sampler.mark if sampler else None, phase_runner=runner_phase)
    finally:
        for c in clients.values():
            c.close()
    gate.check()  # the servers may have been stopped under this run
    tokens = sum(r["output_tokens"] or 0 for r in result.request_rows if r["phase"] != "warmup" and r["status"] == "ok")
    telemetry_rows = energy.finish(sampler, result.run_row, tokens, spec.telemetry)
    store.write_run(root, result.run_row, result.request_rows, manifest, kind="multi", telemetry_rows=telemetry_rows)
    progress.emit(kind="run_finished", **progress.multi_run_figures(result.run_row))
    return _outcome(result.run_row)


def _persist_failed(plan: MultiRunPlan, spec: MatrixSpec, reason: str, manifest: dict, manifest_digest: str,
                    root: Path, prefix: str | None = None) -> dict:
    row = failed_multi_run(spec, plan, reason, manifest_digest)
    if prefix:
        row.update(invalid_reason=f"{prefix}{reason}", error_kinds=None)
    row.update(energy.no_telemetry("no telemetry: the run did not start"))
    store.write_run(root, row, [], manifest, kind="multi")
    progress.emit(kind="run_finished", run_id=plan.run_id, valid=False)
    return _outcome(row)


def _outcome(row: dict) -> dict:
    return {"run_id": row["run_id"], "model": row["model"], "valid": row["valid"], "invalid_reason": row["invalid_reason"],
            "speedup": row.get("speedup"), "contention": row.get("contention")}
