"""tr: one Technical Report run, every part its spec names, from the CLI, the UI or a schedule alike.

  1. load and validate the spec, its prompts and agents          (a bad spec stops here)
  2. open the session: the servers made, their ports free or the servers answering
  3. start the servers once, preflight every model (pulled where the spec allows)
  4. model facts, the VRAM budget per configuration, the environment manifest
  5. single-agent matrix: runs mapped over lanes of cells (serial: one model at a time)
  6. quality suites (spec `suites:`) on the same servers, mapped over lanes too
  7. multi-agent matrix: per model x scenario, both agents at once, then each alone
  8. load steps (spec `load:`) on the first server, then the embeddings workload
  9. close the session: the servers stopped, whatever happened
 10. the closing step: failure log, outlier flags, suite results, report, validation, final state
Runs and steps already finished under the same tr_id are skipped: running it again resumes.
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

from tasks.instances import start_instances, stop_instances
from tasks.preflight import check_instance, check_model, vram_budget
from tasks.progress import track_progress
from tasks.quality import flag_outliers, validate
from tasks.report import render_report, write_failure_log
from tasks.setup import collect_model_facts, load_matrix_spec, record_manifest, resolve_path
from tasks.steps import PrefectSteps
from tasks.suites import suite_results
from trbench.config.agents import AgentSuite
from trbench.config.prompts import PromptSuite
from trbench.config.spec import MatrixSpec
from trbench.engines import InstanceError
from trbench.measure import manifest as env_manifest
from trbench.report import regression
from trbench.validation import validate as validation
from trbench.validation.validate import ValidationResult
from trbench.report import compare_tr
from trbench.run import progress
from trbench.run.preflight import PreflightError
from trbench.run.single import RunCancelled
from trbench.workloads import Measured, active
from trbench.workloads.session import Selection, TRSession, open_session

# where a failure whose own words name no fix is explained, under the TR run's folder
_RUN_FIX = "each request's error is in the report's Failures section and failures/failures.parquet"
_CHECKS_FIX = "the failing rows of each check are in validation/validation.json"
_LOAD_FIX = "each request's error_kind and error_message are in {}/ (Parquet)"

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


def load_state(spec: MatrixSpec, rows: list[dict], skipped: int, report: Path | str,
               embedded: list[dict] | None = None) -> State:
    """The load part's state: Completed when a step measured something; Failed when none did, its
    message opening with the first invalid step's reason (the CLI prints it as its last line)."""
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
    cause = (f"load step {bad[0]['run_id']} invalid: {bad[0]['invalid_reason']}; fix: {_LOAD_FIX.format('load_requests')}"
             if bad else f"no embeddings request answered; fix: {_LOAD_FIX.format('emb_requests')}")
    more = "; ".join(f"{r['run_id']}: {r['invalid_reason']}" for r in bad[1:3])
    return Failed(message=f"{cause}; {msg}" + (f"; {len(bad) - 1} more invalid: {more}" if more else ""))


def joint_state(matrix: State | None, load: State | None) -> State:
    """One final state for a TR with both parts: Failed when either failed, its first cause first;
    the load part's counts follow the matrix's (its tr_id and report path said once)."""
    if matrix is None or load is None:
        state = matrix or load
        assert state is not None
        return state
    load_words = (load.message or "").split(": ", 1)[-1]
    load_words = "; ".join(p for p in load_words.split("; ") if not p.startswith("report "))
    if matrix.is_completed() and not load.is_completed():
        return Failed(message=f"{load.message}; {matrix.message}")
    message = f"{matrix.message}; load: {load_words}"
    return Completed(message=message) if matrix.is_completed() else Failed(message=message)


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


# --- the parts of a TR run, in the order the flow runs them ------------------------------------------

def start_servers(session: TRSession) -> None:
    """Start the servers once, check every model on each, then record the model facts, the VRAM
    budget (in the manifest) and the manifest."""
    spec = session.spec
    start_instances(session.instances, session.faults)
    if not session.live:
        raise NoServerStarted(session.faults.start_cause(len(session.instances)))
    for inst in session.live:
        for model in spec.models:
            check_model(inst, spec.backend, model, getattr(spec.server, "pull_models", False))
    session.facts = collect_model_facts(spec, session.live[0])
    matrix = spec.single_agent or spec.multi_agent is not None
    budget = vram_budget(spec, session.facts) if matrix else []  # a TR of load steps alone has no matrix to budget
    session.manifest = record_manifest(spec, session.instances, session.root, session.facts, budget)
    session.digest = env_manifest.digest(session.manifest)


def measure_workloads(session: TRSession, measured: Measured) -> None:
    """Every workload the spec names, in the registry's order: all planned first (the runs planned
    up front announced as one count), then each measured. A workload that stops early leaves what it
    measured kept and the next workloads measured; the first such failure is raised at the end."""
    workloads = active(session.spec, session.selection.rerun)
    plans = [(w, w.plan(session)) for w in workloads]
    runs, skipped = sum(p.runs for _, p in plans), sum(p.skipped for _, p in plans)
    measured.skipped = skipped
    if runs or skipped:
        progress.emit(kind="planned", total_runs=runs + skipped, message=f"{skipped} already finished")
        for _ in range(skipped):
            progress.emit(kind="run_skipped")
    errors = []
    for workload, planned in plans:
        try:
            workload.execute(session, planned, measured)
        except (RunCancelled, CancelledRun, PreflightError):
            raise
        except Exception as err:  # noqa: BLE001 - the next workloads still run; the state names the first
            get_run_logger().error("%s stopped early: %s: %s", workload.name, type(err).__name__, err)
            errors.append(err)
    if errors:
        raise errors[0]


def close_servers(session: TRSession) -> None:
    """Stop every server (recorded when one fails, as a task in the UI), then once more plainly:
    also when the interrupt hit the task machinery itself."""
    session.gate.close()  # before the servers go: a run cut short by this is not written
    try:
        stop_instances(session.instances, session.faults)
    finally:
        session.close()


def run_tr(spec: MatrixSpec, prompts: PromptSuite, agents: AgentSuite | None, selection: Selection) -> State:
    """The body of a TR run, shared by tr (every unfinished run and step) and rerun_flagged (the
    flagged configs, as a new attempt: runs only, no suites or load).

    Nothing a server does ends it early without the closing step: whatever stops the measuring
    (but an interrupt, or a preflight error before anything is measured), the failure log, outlier
    flags, report and validation are written for what was measured, and the state says what
    stopped it."""
    session = open_session(spec, prompts, agents, resolve_path(spec.output_dir), PrefectSteps(), selection)
    for inst in session.instances:
        check_instance(inst, spec.backend)
    measured = Measured()
    untrack = None
    stopped: Exception | None = None
    try:
        start_servers(session)
        untrack = track_progress(spec.tr_id)
        measure_workloads(session, measured)
    except (RunCancelled, CancelledRun, PreflightError):
        raise  # an interrupt or a cancel, or bad input found before anything was measured: no checks
    except Exception as err:  # noqa: BLE001 - what was measured is still checked and reported below
        stopped = err
        get_run_logger().error("the measuring stopped early: %s: %s", type(err).__name__, err)
    finally:
        if untrack:
            untrack()
        close_servers(session)
    return closing_step(session, measured, stopped)


def _attempt(problems: list[str], what: str, fn: Callable, *args: Any) -> Any:
    """One part of the closing step; a failure is noted and the others still run."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - the state names it
        get_run_logger().error("%s failed: %s: %s", what, type(err).__name__, err)
        problems.append(f"{what} failed: {type(err).__name__}: {err}")
        return None


def closing_step(session: TRSession, measured: Measured, stopped: Exception | None) -> State:
    """The failure log, outlier flags, suite results, report and validation, each attempted whatever
    came before; the final state says what went wrong first, then what was measured. A TR of load
    steps alone has no runs to flag or validate: its state counts its steps."""
    spec, root, faults = session.spec, session.root, session.faults
    matrix = spec.single_agent or spec.multi_agent is not None
    problems: list[str] = []
    flagged = None
    if matrix:
        _attempt(problems, "failure log", write_failure_log, root)
        flagged = _attempt(problems, "outlier flags", flag_outliers, root, spec)
        _attempt(problems, "suite results", suite_results, root, spec)
    files = _attempt(problems, "report", render_report, root, spec)
    report = files.markdown if files is not None else root / "report" / f"{spec.tr_id}.md"
    checked = _attempt(problems, "validation", validate, root, spec, report) if matrix else None
    causes = ([stop_cause(stopped)] if stopped is not None else []) + problems
    cause = "; ".join(causes) or None
    matrix_state = final_state(spec, measured.runs, measured.skipped, report, checked, flagged, cause) if matrix else None
    load_part = None
    if spec.load is not None:
        load_part = load_state(spec, measured.load_steps, measured.load_skipped, report, measured.embeddings)
        if not matrix and cause is not None:
            load_part = Failed(message=f"{cause}; {load_part.message}")
    state = joint_state(matrix_state, load_part)
    if spec.baseline_tr_id:  # the regression check's verdict belongs in the state message too
        # the report compared the two TR runs already; built again only when the report failed
        verdict = files.data.regression if files is not None else _attempt(
            problems, "regression check", compare_tr, root, root.parent / spec.baseline_tr_id,
            spec.regression_threshold_pct)
        if verdict is not None:
            state.message = f"{state.message}; {regression.summary_message(verdict)}"
    if faults.messages and not isinstance(stopped, NoServerStarted):  # that one's cause is the start failures
        state.message = (f"{state.message}; {len(faults.messages)} instance failure(s) in the failure log: "
                         + "; ".join(faults.messages[:2]) + (" ..." if len(faults.messages) > 2 else ""))
    get_run_logger().info(state.message)
    return state


# Parallelism is decided by the spec (lanes), never by the task runner: runs within a lane and the
# multi-agent runs are measured one at a time.
@flow(name="tr", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)
def tr(
    spec_path: str = "deployments/quickstart.yaml",
    spec: dict[str, Any] | None = None,
    tr_id: str | None = None,
    models: list[str] | None = None,
    runs: int | None = None,
    requests_per_run: int | None = None,
    output_dir: str | None = None,
    ports: list[int] | None = None,
) -> State:
    """Run a TR spec (a YAML path, or the spec itself) with optional overrides: every part it names
    (single-agent matrix, suites, multi-agent, load, embeddings). The same tr_id again resumes,
    running only what has no finished run or step file.

    Args:
        spec_path: TR spec (YAML), relative to the repository, e.g. deployments/tr116.yaml.
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
    return run_tr(spec_obj, prompts, agents, Selection())
