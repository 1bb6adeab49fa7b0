"""tr_load: the load part of a TR run (the spec's `load:` section).

  1. load and validate the spec and its prompts  (a bad spec stops here)
  2. preflight: the port is free or the server answers
  3. start the instance, then preflight every model it loads
  4. model facts and the environment manifest
  5. per cell, the load steps in order, each a task (a sweep's rates follow its first two steps);
     then the embeddings workload, a step per batch size (load.embeddings)
  6. stop the instance, whatever happened
  7. the report (the load section beside whatever the single-agent matrix measured)
Steps already finished under the same tr_id are skipped: running it again resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from flows.tr_matrix import expand_tr_id
from tasks.embeddings import embeddings_workload
from tasks.instances import start_instances, stop_instances
from tasks.load import load_step
from tasks.preflight import check_instance, check_model
from tasks.report import render_report
from tasks.setup import collect_model_facts, load_matrix_spec, record_manifest, resolve_path
from trbench.config.prompts import PromptSuite
from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.data.failures import InstanceFaults
from trbench.engines import Instance, InstanceError, create_instances
from trbench.measure import manifest as env_manifest
from trbench.run import progress
from trbench.run.load import StepPlan, load_section, plan_steps, server_slots, sweep_plans
from trbench.run.single import Gate


def load_state(spec: MatrixSpec, rows: list[dict], skipped: int, report: Path | str,
               embedded: list[dict] | None = None) -> State:
    """Completed when a step measured something; Failed when none did, its message opening with
    the first invalid step's reason (the CLI prints it as its last line)."""
    valid = sum(r["valid"] for r in rows)
    emb_ok = sum(r["n_ok"] > 0 for r in embedded or [])
    msg = (f"{spec.tr_id}: {valid} of {len(rows)} load step(s) valid"
           + (f", {emb_ok} of {len(embedded)} embeddings step(s) with ok requests" if embedded else "")
           + (f", {skipped} already finished" if skipped else "") + f"; report {report}")
    bad = [r for r in rows if not r["valid"]]
    measured = rows + (embedded or [])
    if not measured or valid or emb_ok:
        if bad:
            msg += "; invalid: " + "; ".join(f"{r['run_id']}: {r['invalid_reason']}" for r in bad[:3])
        return Completed(message=msg)
    cause = (f"load step {bad[0]['run_id']} invalid: {bad[0]['invalid_reason']}; fix: {_FIX.format('load_requests')}"
             if bad else f"no embeddings request answered; fix: {_FIX.format('emb_requests')}")
    more = "; ".join(f"{r['run_id']}: {r['invalid_reason']}" for r in bad[1:3])
    return Failed(message=f"{cause}; {msg}" + (f"; {len(bad) - 1} more invalid: {more}" if more else ""))


# where the reasons are, under the TR run's folder
_FIX = "each request's error_kind and error_message are in {}/ (Parquet)"


def run_cell(plans: list[StepPlan], spec: MatrixSpec, inst: Instance, prompts: PromptSuite, manifest: dict,
             digest: str, root: Path, gate: Gate) -> tuple[list[dict], int]:
    """One cell's steps in order, a sweep's rates after its first two; (rows measured now, steps skipped)."""
    done = store.finished_run_ids(root, "load")
    rows, kept, skipped = [], [], 0
    queue = list(plans)
    while queue:
        plan = queue.pop(0)
        if plan.run_id in done:
            skipped += 1
            progress.emit(kind="run_skipped")
            stored = store.read_frame(root, "load_steps")
            row = stored[stored["run_id"] == plan.run_id].iloc[0].to_dict()
        else:
            row = load_step(plan, spec, inst, prompts, manifest, digest, root, gate)
            rows.append(row)
        kept.append(row)
        if load_section(spec).sweep and len(kept) == 2:  # a sweep: its rates from the synchronous and throughput steps
            rates = sweep_plans(spec, plans, kept)
            progress.emit(kind="planned", total_runs=len(rates), message="load steps: the sweep's rates")
            queue += rates
    return rows, skipped


def run_load(spec: MatrixSpec, prompts: PromptSuite) -> State:
    """Preflight, the instance, every cell's steps, the report; the instance is stopped on every path."""
    root = store.tr_dir(resolve_path(spec.output_dir), spec.tr_id)
    (inst,) = create_instances(spec.server, root / "logs", 1, load_timeout_s=spec.load_timeout_s, backend=spec.backend)
    check_instance(inst, spec.backend)
    faults = InstanceFaults(root, spec.tr_id)
    gate = Gate()
    rows: list[dict] = []
    embedded: list[dict] = []
    skipped = 0
    try:
        start_instances([inst], faults)
        if faults.down(inst.name):
            raise InstanceError(faults.start_cause(1))
        emb = load_section(spec).embeddings
        for model in dict.fromkeys(spec.load_models + ([emb.model or spec.models[0]] if emb else [])):
            check_model(inst, spec.backend, model, getattr(spec.server, "pull_models", False))
        facts = collect_model_facts(spec, inst)
        manifest = record_manifest(spec, [inst], root, facts, [])
        digest = env_manifest.digest(manifest)
        batching = getattr(inst, "concurrency", None) or {}
        plans = plan_steps(spec, inst.name, inst.url, server_slots(batching), facts, batching.get("max_queue"))
        progress.emit(kind="planned", total_runs=len(plans), message="load steps")
        for cell in dict.fromkeys(p.cell for p in plans):
            measured, n = run_cell([p for p in plans if p.cell == cell], spec, inst, prompts, manifest, digest,
                                   root, gate)
            rows += measured
            skipped += n
        if emb is not None:  # last: the embedded engine restarts llama.cpp in embedding mode for it
            embedded = embeddings_workload(emb, spec, [inst], manifest, digest, root)
    finally:
        gate.close()
        try:
            stop_instances([inst], faults)
        finally:
            inst.stop()
    report = render_report(root, spec).markdown
    state = load_state(spec, rows, skipped, report, embedded)
    get_run_logger().info(state.message)
    return state


@flow(name="tr_load", log_prints=True)
def tr_load(
    spec_path: str = "deployments/load-quickstart.yaml",
    spec: dict[str, Any] | None = None,
    tr_id: str | None = None,
    models: list[str] | None = None,
    output_dir: str | None = None,
    ports: list[int] | None = None,
) -> State:
    """Run the load steps of a spec (a YAML path, or the spec itself) with optional overrides; the same
    tr_id again resumes, running only the steps with no finished step file.

    Args:
        spec_path: TR spec with a `load:` section (YAML), relative to the repository.
        spec: the spec itself as a JSON object; replaces spec_path when given.
        tr_id: override the spec's tr_id (the same id again resumes); `{date}` becomes the run's date.
        models: override the spec's models, e.g. ["smollm2:135m"].
        output_dir: where the results go (default: the spec's, 'outputs').
        ports: override the local port of the server trbench starts.
    """
    overrides = {"tr_id": expand_tr_id(tr_id), "models": models, "output_dir": output_dir, "ports": ports}
    spec_obj, prompts, _agents = load_matrix_spec(spec_path, spec, overrides)
    if spec_obj.load is None:
        return Failed(message=f"{spec_obj.tr_id}: the spec has no load section; fix: add one (docs/load-mode.md)")
    return run_load(spec_obj, prompts)
