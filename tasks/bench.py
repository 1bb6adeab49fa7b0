"""The single-agent benchmark run as a task: measure, then persist the run at once."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from trbench import progress, storage
from trbench.backends import make_client
from trbench.engines.instances import Instance, InstanceError
from trbench.prompts import PromptSuite
from trbench.runner import RunPlan, execute_run, failed_run
from trbench.spec import MatrixSpec


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
) -> dict:
    """One run of one cell; its Parquet files are written before the task returns."""
    progress.emit(kind="run_started", run_id=plan.run_id)
    try:
        reloaded = inst.prepare(plan.cell)  # a server that died during the last run is started again
    except InstanceError as err:
        return _persist_failed(plan, spec, str(err), manifest, manifest_digest, root)
    if reloaded is not None:
        load_ms, warmups = reloaded, spec.warmup_requests
    client = make_client(spec.backend, inst.url, spec.timeout_s)
    try:
        result = execute_run(
            spec, plan, client, prompts, load_ms, manifest_digest, warmups,
            on_request=lambda i, n, _ex: progress.emit(kind="request_done", run_id=plan.run_id, request=i, requests=n),
        )
    finally:
        client.close()
    storage.write_run(root, result.run_row, result.request_rows, manifest)
    row = result.run_row
    progress.emit(kind="run_finished", run_id=plan.run_id, valid=row["valid"])
    return _outcome(row)


@task(name="record-failed-runs", cache_policy=NO_CACHE)
def record_failed_runs(plans: list[RunPlan], spec: MatrixSpec, reason: str, manifest: dict, manifest_digest: str, root: Path) -> list[dict]:
    """A cell whose server would not load still leaves a row per planned run, with the error."""
    return [_persist_failed(plan, spec, reason, manifest, manifest_digest, root) for plan in plans]


def _persist_failed(plan: RunPlan, spec: MatrixSpec, reason: str, manifest: dict, manifest_digest: str, root: Path) -> dict:
    row = failed_run(spec, plan, reason, manifest_digest)
    storage.write_run(root, row, [], manifest)
    progress.emit(kind="run_finished", run_id=plan.run_id, valid=False)
    return _outcome(row)


def _outcome(row: dict) -> dict:
    return {k: row[k] for k in ("run_id", "model", "valid", "n_ok", "n_errors", "invalid_reason", "decode_tps_p50")}
