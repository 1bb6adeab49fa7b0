"""tr_matrix: one Technical Report run of the single-agent matrix.

  1. load and validate the spec          (a bad spec stops here, before any server starts)
  2. preflight every instance and model  (before any benchmark time is spent)
  3. record the environment manifest
  4. plan the runs, skipping those already finished under this tr_id (resume)
  5. per server configuration: load the server, then map the runs over it
  6. stop the instances, whatever happened
  7. render the report
"""

from __future__ import annotations

import itertools
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from tasks.bench import bench_run, record_failed_runs
from tasks.instances import prepare_instance, stop_instances
from tasks.preflight import check_instance, check_model
from tasks.report import render_report
from tasks.setup import load_matrix_spec, record_manifest, resolve_path
from trbench import manifest as env_manifest
from trbench import progress, storage
from trbench.engines.instances import Instance, create_instances
from trbench.prompts import PromptSuite
from trbench.runner import RunPlan
from trbench.spec import MatrixSpec


def plan_runs(spec: MatrixSpec, prompts: PromptSuite, inst: Instance, finished: set[str]) -> list[RunPlan]:
    plans = [
        RunPlan(tr_id=spec.tr_id, cell=cell, cell_hash=spec.cell_hash(cell, prompts.digest), run_index=i,
                instance=inst.name, instance_url=inst.url)
        for cell in spec.cells()
        for i in range(spec.runs)
    ]
    return [p for p in plans if p.run_id not in finished]


def final_state(spec: MatrixSpec, outcomes: list[dict], skipped: int, report: Path) -> State:
    valid = sum(o["valid"] for o in outcomes)
    invalid = [o for o in outcomes if not o["valid"]]
    summary = (f"{spec.tr_id}: {valid} of {len(outcomes)} run(s) valid"
               + (f", {skipped} already finished" if skipped else "") + f"; report {report}")
    if invalid:
        reasons = "; ".join(f"{o['run_id']}: {o['invalid_reason']}" for o in invalid[:3])
        summary += f"; invalid: {reasons}" + (" ..." if len(invalid) > 3 else "")
    if outcomes and valid == 0:
        return Failed(message=summary)
    return Completed(message=summary)


# One task at a time: two runs measured at once would contend for the same cores and GPU.
@flow(name="tr_matrix", task_runner=ThreadPoolTaskRunner(max_workers=1), log_prints=True)
def tr_matrix(
    spec_path: str = "deployments/quickstart.yaml",
    spec: dict | None = None,
    tr_id: str | None = None,
    models: list[str] | None = None,
    runs: int | None = None,
    requests_per_run: int | None = None,
    output_dir: str | None = None,
) -> State:
    """Run a TR matrix spec (a YAML path, or the spec itself) with optional overrides."""
    logger = get_run_logger()
    overrides = {"tr_id": tr_id, "models": models, "runs": runs, "requests_per_run": requests_per_run,
                 "output_dir": output_dir}
    spec_obj, prompts = load_matrix_spec(spec_path, spec, overrides)
    root = storage.tr_dir(resolve_path(spec_obj.output_dir), spec_obj.tr_id)
    instances = create_instances(spec_obj, root / "logs")

    for inst in instances:
        check_instance(inst, spec_obj.backend)
        for model in spec_obj.models:
            check_model(inst, spec_obj.backend, model)

    manifest = record_manifest(spec_obj, instances, root)
    manifest_digest = env_manifest.digest(manifest)
    inst = instances[0]
    finished = storage.finished_run_ids(root)
    plans = plan_runs(spec_obj, prompts, inst, finished)
    skipped = len(spec_obj.cells()) * spec_obj.runs - len(plans)
    progress.emit(kind="planned", total_runs=len(plans) + skipped, message=f"{skipped} already finished")
    for run_id in sorted(finished):
        progress.emit(kind="run_skipped", run_id=run_id)

    outcomes: list[dict] = []
    try:
        for _key, group in itertools.groupby(plans, key=lambda p: p.cell.server_key):
            group = list(group)
            loaded = prepare_instance.submit(inst, group[0].cell)
            wait([loaded])
            if loaded.state.is_failed():
                reason = str(loaded.state.message or "server did not load")
                logger.error("%s: %s; its %d run(s) are recorded as failed", group[0].cell.model, reason, len(group))
                outcomes += record_failed_runs(group, spec_obj, reason, manifest, manifest_digest, root)
                continue
            load_ms = loaded.result()
            # warm-ups once per cell, on the cell's first run after the server is ready
            warmups = [spec_obj.warmup_requests if i == 0 or p.cell != group[i - 1].cell else 0 for i, p in enumerate(group)]
            futures = bench_run.map(
                group, unmapped(spec_obj), unmapped(inst), unmapped(prompts), unmapped(manifest),
                unmapped(manifest_digest), unmapped(root), warmups, [load_ms] + [None] * (len(group) - 1),
            )
            outcomes += [f.result() for f in futures]
    finally:
        try:
            stop_instances(instances)
        finally:
            for i in instances:  # again, plainly: also when the interrupt hit the task machinery itself
                i.stop()

    report = render_report(root, spec_obj)
    state = final_state(spec_obj, outcomes, skipped, report)
    logger.info(state.message)
    return state
