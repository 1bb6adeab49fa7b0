"""tr: one Technical Report run, every part its spec names, from the CLI, the UI or a schedule alike.

  1. load and validate the spec, its prompts and agents          (a bad spec stops here)
  2. open the session: the servers made, their ports free or the servers answering
  3. start the servers once, preflight every model (pulled where the spec allows)
  4. model facts, the VRAM budget per configuration, the environment manifest
  5. every workload the spec names, in order: single-agent matrix (lanes mapped over the
     instances), quality suites, multi-agent runs, load steps, embeddings (trbench.workloads)
  6. close the session: the servers stopped, whatever happened
  7. the closing step: failure log, outlier flags, suite results, report, validation, final state
Runs and steps already finished under the same tr_id are skipped: running it again resumes.

The body is trbench.tr.run_tr, Prefect-free; here each of its steps is a Prefect task run.
"""

from __future__ import annotations

from datetime import timezone
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.exceptions import CancelledRun
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.signals import flag_stops_first
from tasks.steps import PrefectSteps
from trbench.config.agents import AgentSuite
from trbench.config.prompts import PromptSuite
from trbench.config.spec import MatrixSpec
from trbench.measure.outliers import FlaggedConfig
from trbench.tr.opening import load_tr_spec
from trbench.tr.outcome import Outcome, load_outcome, runs_outcome
from trbench.tr.runner import STOP_ERRORS, run_tr
from trbench.validation.validate import ValidationResult
from trbench.workloads.run_outcomes import EmbeddingsOutcome, RunOutcome, StepOutcome
from trbench.workloads.session import Selection


def as_state(outcome: Outcome) -> State:
    """The flow run's final state: Completed or Failed, with the outcome's message."""
    return Completed(message=outcome.message) if outcome.completed else Failed(message=outcome.message)


def final_state(spec: MatrixSpec, outcomes: list[RunOutcome], skipped: int, report: Path | str,
                checked: ValidationResult | None = None, flagged: list[FlaggedConfig] | None = None,
                cause: str | None = None) -> State:
    """The runs' part of a TR's final state (trbench.tr.outcome.runs_outcome)."""
    return as_state(runs_outcome(spec, outcomes, skipped, report, checked, flagged, cause))


def load_state(spec: MatrixSpec, rows: list[StepOutcome], skipped: int, report: Path | str,
               embedded: list[EmbeddingsOutcome] | None = None) -> State:
    """The load part of a TR's final state (trbench.tr.outcome.load_outcome)."""
    return as_state(load_outcome(spec, rows, skipped, report, embedded))


def run_tr_flow(spec: MatrixSpec, prompts: PromptSuite, agents: AgentSuite | None, selection: Selection,
                steps: PrefectSteps | None = None, server_logs: str | None = None) -> State:
    """The TR body with each step a task run of the current flow run; shared with rerun_flagged."""
    flag_stops_first()
    return as_state(run_tr(spec, prompts, agents, steps or PrefectSteps(), selection, STOP_ERRORS + (CancelledRun,),
                           server_logs))


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
@flow(name="tr", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)  # type: ignore[arg-type]
def tr(
    spec_path: str = "deployments/quickstart.yaml",
    spec: dict[str, Any] | None = None,
    tr_id: str | None = None,
    models: list[str] | None = None,
    runs: int | None = None,
    requests_per_run: int | None = None,
    output_dir: str | None = None,
    ports: list[int] | None = None,
    server_logs: str | None = None,
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
        server_logs: the servers' logs under logs/<server_logs>/ instead of logs/: the fan-out gives each
            sub-run its own, so hosts writing one TR keep each other's logs.
    """
    steps = PrefectSteps()
    overrides = {"tr_id": expand_tr_id(tr_id), "models": models, "runs": runs,
                 "requests_per_run": requests_per_run, "output_dir": output_dir, "ports": ports}
    spec_obj, prompts, agents = load_tr_spec(steps, spec_path, spec, overrides)
    return run_tr_flow(spec_obj, prompts, agents, Selection(), steps, server_logs)
