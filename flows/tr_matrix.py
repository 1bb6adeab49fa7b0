"""tr_matrix: one Technical Report run.

  1. load and validate the spec, its prompts and agents  (a bad spec stops here)
  2. preflight: ports free or servers answering
  3. start the instances, then preflight every model (pulled where the spec allows)
  4. model facts, the VRAM budget per configuration, the environment manifest
  5. single-agent matrix: runs mapped over lanes of cells (serial: one model at a time)
     then the quality suites (spec `suites:`) on the same servers, mapped over lanes too
  6. multi-agent matrix: per model x scenario, both agents at once, then each alone
  7. stop the instances, whatever happened
  8. the suites' summary and results matrix, then the report
Runs already finished under the same tr_id are skipped: running it again resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.exceptions import CancelledRun
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from tasks.bench import record_failed_runs, run_lane
from tasks.instances import start_instances, stop_instances
from tasks.multi_agent import multi_agent_run
from tasks.preflight import check_instance, check_model, vram_budget
from tasks.progress import track_progress
from tasks.quality import flag_outliers, validate
from tasks.suites import run_suites, suite_results
from tasks.report import render_report, write_failure_log
from tasks.setup import collect_model_facts, load_matrix_spec, record_manifest, resolve_path
from trbench.measure import manifest as env_manifest
from trbench.run import progress, stopping
from trbench.quality import regression
from trbench.report import compare_tr
from trbench.data import store
from trbench.config.agents import ROLES, AgentSuite
from trbench.engines import InstanceError, create_instances
from trbench.data.failures import InstanceFaults
from trbench.run.preflight import PreflightError
from trbench.run.multi import MultiRunPlan
from trbench.run.plan import apply_budget, plan_lanes, plan_multi_runs, plan_runs, unfinished
from trbench.config.prompts import PromptSuite
from trbench.run.single import Gate, RunCancelled, RunPlan
from trbench.config.spec import MatrixSpec
from trbench.quality import validation
from trbench.quality.validation import ValidationResult


# where a failure whose own words name no fix is explained, under the TR run's folder
_RUN_FIX = "each request's error is in the report's Failures section and failures/failures.parquet"
_CHECKS_FIX = "the failing rows of each check are in validation/validation.json"


def final_state(spec: MatrixSpec, outcomes: list[dict], skipped: int, report: Path | str,
                checked: ValidationResult | None = None, flagged: list[dict] | None = None,
                cause: str | None = None) -> State:
    """Completed with a message when something was measured; Failed when `cause` (what stopped the
    measuring) is given, nothing was valid, or a Great Expectations check failed.

    A Failed message opens with its first cause, as one line the CLI prints last: what stopped the
    measuring, else the first invalid run's reason, else the failed checks; then what was measured.
    The runs a stop left unmeasured fail the run-count checks: that is the stop again, said in one
    clause, not as the checks' messages."""
    valid = sum(o["valid"] for o in outcomes)
    invalid = [o for o in outcomes if not o["valid"]]
    failures = checked.failures if checked is not None and not checked.success else []
    consequences = []
    if cause is not None and any(validation.is_missing_runs(f) for f in failures):
        nothing = any(f.table == "tr" for f in failures if validation.is_missing_runs(f))
        consequences.append("nothing measured, so nothing to validate" if nothing
                            else "validation: only the runs that never ran are missing")
        failures = [f for f in failures if not validation.is_missing_runs(f)]
    checks = "validation failed: " + "; ".join(f.message for f in failures[:3]) if failures else None
    first_invalid = cause is None and bool(outcomes) and valid == 0
    if first_invalid:
        reason = invalid[0]["invalid_reason"]
        cause = f"run {invalid[0]['run_id']} invalid: {reason}" + ("" if "fix: " in reason else f"; fix: {_RUN_FIX}")
        invalid = invalid[1:]
    elif cause is None and checks is not None:
        cause, checks = f"{checks}; fix: {_CHECKS_FIX}", None
    summary = (f"{spec.tr_id}: {valid} of {len(outcomes)} run(s) valid"
               + (f", {skipped} already finished" if skipped else "") + f"; report {report}")
    if invalid:
        reasons = "; ".join(f"{o['run_id']}: {o['invalid_reason']}" for o in invalid[:3])
        summary += (f"; {len(invalid)} more invalid: " if first_invalid else "; invalid: ") + reasons
        summary += " ..." if len(invalid) > 3 else ""
    if flagged:
        summary += f"; {len(flagged)} config(s) with outlier runs (rerun_flagged runs them again)"
    message = "; ".join(part for part in (cause, summary, checks, *consequences) if part)
    return Completed(message=message) if cause is None else Failed(message=message)


Selector = Callable[[list[RunPlan], list[MultiRunPlan], Path], tuple[list[RunPlan], list[MultiRunPlan]]]


def run_tr(spec: MatrixSpec, prompts: PromptSuite, agents: AgentSuite | None, select: Selector) -> State:
    """The body of a TR run, shared by tr_matrix (every unfinished run) and rerun_flagged (the
    flagged configs, as a new attempt): preflight, instances, runs, checks, report.

    Nothing a server does ends it early without the checks: whatever stops the measuring (but an
    interrupt, or a preflight error before anything is measured), the failure log, outlier flags,
    report and validation are written for what was measured, and the state says what stopped it."""
    logger = get_run_logger()
    root = store.tr_dir(resolve_path(spec.output_dir), spec.tr_id)
    instances = create_instances(spec.server, root / "logs", spec.instance_count, load_timeout_s=spec.load_timeout_s,
                                 backend=spec.backend)
    for inst in instances:
        check_instance(inst, spec.backend)

    outcomes: list[dict] = []
    gate = Gate()
    faults = InstanceFaults(root, spec.tr_id)
    untrack = None
    skipped = 0
    stopped: Exception | None = None
    try:
        start_instances(instances, faults)
        live = [inst for inst in instances if not faults.down(inst.name)]
        if not live:
            raise NoServerStarted(faults.start_cause(len(instances)))
        for inst in live:
            for model in spec.models:
                check_model(inst, spec.backend, model, getattr(spec.server, "pull_models", False))
        facts = collect_model_facts(spec, live[0])
        budget = vram_budget(spec, facts)
        manifest = record_manifest(spec, instances, root, facts, budget)
        digest = env_manifest.digest(manifest)

        single, over_budget = apply_budget(plan_runs(spec, prompts, instances, facts), budget, spec, prompts)
        multi = plan_multi_runs(spec, agents, instances, facts)
        todo_single, todo_multi = select(single, multi, root)
        for plan, reason in over_budget:
            if plan.run_id not in store.finished_run_ids(root):
                outcomes += record_failed_runs([plan], spec, reason, manifest, digest, root)
        planned = len(todo_single) + len(todo_multi)
        skipped = len(single) + len(multi) - planned if select is unfinished else 0
        progress.emit(kind="planned", total_runs=planned + skipped, message=f"{skipped} already finished")
        for _ in range(skipped):
            progress.emit(kind="run_skipped")
        untrack = track_progress(spec.tr_id, planned + skipped, skipped)

        # resuming, the lanes see every planned run: they skip the finished ones, but an
        # out-of-memory config finished before the crash still moves on to its next rung
        lanes = plan_lanes(single if select is unfinished else todo_single, spec, instances)
        futures = run_lane.map(lanes, unmapped(spec), unmapped(instances), unmapped(prompts), unmapped(manifest),
                               unmapped(digest), unmapped(root), unmapped(gate), unmapped(faults))
        lane_errors = []
        for future in stopping.wait_each(futures):  # one lane's failure leaves the others' outcomes counted
            try:
                outcomes += future.result().outcomes
            except (RunCancelled, CancelledRun):
                raise
            except Exception as err:  # noqa: BLE001 - reported in the state, after the checks
                lane_errors.append(err)

        if select is unfinished:  # a rerun of flagged configs measures speed only
            run_suites(spec, instances, facts, manifest, digest, root, gate, faults)

        pair = dict(zip(ROLES, instances))
        for i, ma_plan in enumerate(todo_multi):
            stopping.raise_if_requested()
            assert agents is not None  # multi-agent runs are planned only with the spec's agents
            first = i == 0 or (ma_plan.model, ma_plan.scenario) != (todo_multi[i - 1].model, todo_multi[i - 1].scenario)
            outcomes.append(multi_agent_run(ma_plan, spec, pair, agents, manifest, digest, root, first, gate, faults))
        if lane_errors:
            raise lane_errors[0]
    except (RunCancelled, CancelledRun, PreflightError):
        raise  # an interrupt or a cancel, or bad input found before anything was measured: no checks
    except Exception as err:  # noqa: BLE001 - what was measured is still checked and reported below
        stopped = err
        logger.error("the measuring stopped early: %s: %s", type(err).__name__, err)
    finally:
        gate.close()  # before the servers go: a run cut short by this is not written
        if untrack:
            untrack()
        try:
            stop_instances(instances, faults)
        finally:
            for inst in instances:  # again, plainly: also when the interrupt hit the task machinery itself
                try:
                    inst.stop()
                except Exception:  # noqa: BLE001 - recorded by stop_instances; the rest are stopped
                    pass

    return check_and_report(spec, root, outcomes, skipped, stopped, faults)


def _attempt(problems: list[str], what: str, fn: Callable, *args: Any) -> Any:
    """One of the closing checks; a failure is noted and the others still run."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - the state names it
        get_run_logger().error("%s failed: %s: %s", what, type(err).__name__, err)
        problems.append(f"{what} failed: {type(err).__name__}: {err}")
        return None


def check_and_report(spec: MatrixSpec, root: Path, outcomes: list[dict], skipped: int, stopped: Exception | None,
                     faults: InstanceFaults) -> State:
    """The failure log, outlier flags, report and validation, each attempted whatever came before;
    the final state says what went wrong first, then what was measured."""
    problems: list[str] = []
    _attempt(problems, "failure log", write_failure_log, root)
    flagged = _attempt(problems, "outlier flags", flag_outliers, root, spec)
    _attempt(problems, "suite results", suite_results, root, spec)
    files = _attempt(problems, "report", render_report, root, spec)
    report = files.markdown if files is not None else root / "report" / f"{spec.tr_id}.md"
    checked = _attempt(problems, "validation", validate, root, spec, report)
    causes = ([stop_cause(stopped)] if stopped is not None else []) + problems
    state = final_state(spec, outcomes, skipped, report, checked, flagged, "; ".join(causes) or None)
    if spec.baseline_tr_id:  # the regression check's verdict belongs in the state message too
        # the report compared the two TR runs already; built again only when the report failed
        verdict = files.data.regression if files is not None else _attempt(
            problems, "regression check", compare_tr, root, root.parent / spec.baseline_tr_id,
            spec.regression_threshold_pct)
        if verdict is not None:
            state.message = f"{state.message}; {regression.summary_message(verdict)}"
    if faults.messages and not isinstance(stopped, NoServerStarted):  # that one's cause is the start failures
        state.message = (state.message or "") + (f"; {len(faults.messages)} instance failure(s) in the failure log: "
                                                 + "; ".join(faults.messages[:2])
                                                 + (" ..." if len(faults.messages) > 2 else ""))
    get_run_logger().info(state.message)
    return state


class NoServerStarted(InstanceError):
    """Every server of the TR failed to start: the message is the first start failure (what
    failed and the fix)."""


def stop_cause(err: Exception) -> str:
    """What stopped the measuring, as the state's first words: an instance error as it explains
    itself (instance, what failed, fix); anything else, unforeseen, with its type (its traceback
    is in the run's log)."""
    if isinstance(err, InstanceError):
        return str(err)
    return f"the measuring stopped early: {type(err).__name__}: {err}"


def expand_tr_id(tr_id: str | None) -> str | None:
    """`{date}` in a tr_id becomes the flow run's scheduled date (UTC, YYYY-MM-DD), so each run of a
    cron schedule is a TR run of its own (the same tr_id would resume, i.e. do nothing)."""
    if not tr_id or "{date}" not in tr_id:
        return tr_id
    from prefect.runtime import flow_run

    when = flow_run.scheduled_start_time.astimezone(timezone.utc)
    return tr_id.replace("{date}", when.strftime("%Y-%m-%d"))


# Parallelism is decided by the spec (lanes), never by the task runner: runs within a lane and the
# multi-agent runs are measured one at a time.
# Prefect types task_runner as TaskRunner[PrefectFuture] (invariant), which its own ThreadPoolTaskRunner is not
@flow(name="tr_matrix", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)  # type: ignore[arg-type]
def tr_matrix(
    spec_path: str = "deployments/quickstart.yaml",
    spec: dict[str, Any] | None = None,
    tr_id: str | None = None,
    models: list[str] | None = None,
    runs: int | None = None,
    requests_per_run: int | None = None,
    output_dir: str | None = None,
    ports: list[int] | None = None,
) -> State:
    """Run a TR matrix spec (a YAML path, or the spec itself) with optional overrides; the same
    tr_id again resumes, running only what has no finished run file.

    Args:
        spec_path: TR matrix spec (YAML), relative to the repository, e.g. deployments/tr116.yaml.
        spec: the spec itself as a JSON object; replaces spec_path when given.
        tr_id: override the spec's tr_id (the same id again resumes); `{date}` becomes the run's date.
        models: override the spec's models, e.g. ["smollm2:135m"].
        runs: override the runs per cell.
        requests_per_run: override the measured requests per run.
        output_dir: where the results go (default: the spec's, 'outputs').
        ports: override the local ports of the servers trbench starts (one per instance).
    """
    overrides = {"tr_id": expand_tr_id(tr_id), "models": models, "runs": runs,
                 "requests_per_run": requests_per_run, "output_dir": output_dir, "ports": ports}
    spec_obj, prompts, agents = load_matrix_spec(spec_path, spec, overrides)
    return run_tr(spec_obj, prompts, agents, unfinished)
