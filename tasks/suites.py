"""The quality suites as tasks: a lane per instance (mapped), a task per suite run inside it, and
the per-scenario summary and results matrix written from the stored rows."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import unmapped

from tasks.instances import prepare_instance
from trbench.backends import make_client
from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.data.failures import InstanceFaults
from trbench.engines import Instance
from trbench.run.session import TRSession
from trbench.run.single import Gate
from trbench.run.suite_runs import SuitePlan, Suites, execute_suite, load_suites, plan_suites, suite_lanes
from trbench.suites.results import EnsembleError, add_ensemble, write_suite_results


@task(name="suite-run", cache_policy=NO_CACHE, task_run_name="suite {plan.run_id}")
def suite_run(plan: SuitePlan, spec: MatrixSpec, inst: Instance, suites: Suites, manifest: dict,
              manifest_digest: str, root: Path, gate: Gate) -> dict:
    """One suite run for one model; its rows are written before the task returns. A server that
    would not load the model leaves a row per item with the error; the next run goes on."""
    gate.check()
    failed = None
    try:
        prepare_instance(inst, plan.cell)
    except Exception as err:  # noqa: BLE001 - recorded in the rows, the other suites go on
        failed = f"{inst.name} would not load {plan.model}: {err}"
    client = None if failed else make_client(spec.backend, inst.url, spec.timeout_s, spec.stall_timeout_s)
    try:
        rows = execute_suite(spec, plan, client, suites, manifest_digest, gate, failed)
    finally:
        if client is not None:
            client.close()
    store.write_suite_run(root, plan.run_id, plan.model, rows, manifest)
    errors = sum(r["status"] != "ok" for r in rows)
    get_run_logger().info("suite run %s: %d request(s), %d failed", plan.run_id, len(rows), errors)
    return {"run_id": plan.run_id, "requests": len(rows), "errors": errors}


@task(name="suite-lane", cache_policy=NO_CACHE, task_run_name="suites on instance {plans[0].instance_name}")
def suite_lane(plans: list[SuitePlan], spec: MatrixSpec, instances: list[Instance], suites: Suites, manifest: dict,
               manifest_digest: str, root: Path, gate: Gate, faults: InstanceFaults) -> list[dict]:
    """The suite runs of one instance, one after the other; finished ones (a resumed TR) are skipped,
    and an instance marked unusable runs none (the failure log says why)."""
    inst = instances[plans[0].instance]
    done = store.finished_suite_run_ids(root)
    outcomes = []
    for plan in plans:
        if plan.run_id in done:
            continue
        if faults.down(inst.name):
            get_run_logger().warning("suite run %s not run: %s is down", plan.run_id, inst.name)
            continue
        outcomes.append(suite_run(plan, spec, inst, suites, manifest, manifest_digest, root, gate))
    return outcomes


@task(name="suite-results", cache_policy=NO_CACHE)
def suite_results(root: Path, spec: MatrixSpec) -> list[Path]:
    """The per-scenario summary and the QA results matrix, from every stored suite row (with the
    ensemble of all the suites' models, when the spec asks for it)."""
    if not spec.suites:
        return []
    if spec.suites.ensemble and spec.suites.qa and len(spec.suite_models) > 1:
        try:
            add_ensemble(root, spec.suite_models)
        except EnsembleError as err:  # e.g. a model whose server never loaded: the matrix without it
            get_run_logger().warning("no ensemble: %s", err)
    return write_suite_results(root, load_suites(spec).qa)


def run_suites(session: TRSession) -> list[dict]:
    """Every suite run the spec selects, as lanes mapped over the instances (one request at a time
    per instance, as the single-agent lanes)."""
    s = session
    lanes = suite_lanes(plan_suites(s.spec, s.instances, s.facts))
    if not lanes:
        return []
    futures = suite_lane.map(lanes, unmapped(s.spec), unmapped(s.instances), unmapped(load_suites(s.spec)),
                             unmapped(s.manifest), unmapped(s.digest), unmapped(s.root), unmapped(s.gate),
                             unmapped(s.faults))
    return [o for f in futures for o in f.result()]
