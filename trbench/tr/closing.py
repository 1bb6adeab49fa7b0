"""The closing step of a TR run, whatever came before it: the failure log, outlier flags, the suites'
results, the report and its validation, each attempted on its own, then one outcome that names what
went wrong first and then what was measured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trbench.config.spec import MatrixSpec
from trbench.data import failures, remote
from trbench.engines import InstanceError
from trbench.measure import outliers
from trbench.report import ReportFiles, compare_tr, publish, regression, render_markdown
from trbench.report.outline import report_file
from trbench.run.suite_runs import load_suites
from trbench.suites.results import EnsembleError, add_ensemble, write_suite_results
from trbench.tr.opening import NoServerStarted
from trbench.tr.outcome import Outcome, conversations_outcome, joint_outcome, load_outcome, other_outcome, runs_outcome
from trbench.validation import validate as validation
from trbench.validation.worker import ValidationProcess
from trbench.workloads import Measured
from trbench.workloads import multi_turn
from trbench.workloads.session import TRSession
from trbench.workloads.steps import Steps
from trbench.prose import count


def write_failure_log(steps: Steps, root: Path) -> Path:
    """Rewrite the failure log of the whole TR run (the lanes keep each fallback decision as it is taken)."""
    return steps.call("failure-log", "failure-log", failures.write_failure_log, root)


def flag_outliers(steps: Steps, root: Path, spec: MatrixSpec) -> list[outliers.FlaggedConfig]:
    """Flag runs far from their config's median; the flags (with median, MAD, threshold) go to Parquet."""

    def flag() -> list[outliers.FlaggedConfig]:
        frame = outliers.flag_outliers(root, spec.outliers)
        outliers.write_flags(root, frame)
        return outliers.flagged_configs(frame)

    return steps.call("flag-outliers", "flag-outliers", flag)


def suite_results(steps: Steps, root: Path, spec: MatrixSpec) -> list[Path]:
    """The per-scenario summary and the QA results matrix, from every stored suite row (with the
    ensemble of all the suites' models, when the spec asks for it)."""

    def write() -> list[Path]:
        if not spec.suites:
            return []
        if spec.suites.ensemble and spec.suites.qa and len(spec.suite_models) > 1:
            try:
                add_ensemble(root, spec.suite_models)
            except EnsembleError as err:  # e.g. a model whose server never loaded: the matrix without it
                steps.log.warning("no ensemble: %s", err)
        return write_suite_results(root, load_suites(spec).qa)

    return steps.call("suite-results", "suite-results", write)


def report_artifacts(steps: Steps, files: ReportFiles) -> None:
    """The publishable report beside the run (without the plot links: relative files the UI cannot
    show; the HTML beside the data has them inline), where its appendix is, and the regression
    check's cells."""
    data = files.data
    text = render_markdown(data)
    text += "\n---\n\n"
    if files.html is not None:
        text += f"HTML report with plots: `{remote.where(files.html)}`\n\n"
    if files.appendix_markdown is not None:
        text += f"Appendix (every detail table and definition): `{remote.where(files.appendix_markdown)}`\n"
    steps.markdown_artifact(f"{data.tr_id}-report", text, f"Technical report {data.tr_id}")
    if data.regression is not None:
        r = data.regression
        rows: list[dict[str, Any]] = [
            {"cell": c.label, "metric": c.metric, "baseline": c.baseline, "current": c.current,
             "change_pct": None if c.change_pct is None else round(c.change_pct, 2), "verdict": c.verdict}
            for c in r.regressions + r.improvements]
        empty = ({"verdict": f"nothing compared: {r.why_nothing_compared}"} if r.nothing_compared
                 else {"verdict": f"none beyond {r.threshold_pct:g}%"})
        steps.table_artifact(f"{data.tr_id}-regression", rows or [empty], f"{data.tr_id} against {r.baseline_tr_id}: "
                             f"regressions and improvements beyond {r.threshold_pct:g}%")


def render_report(steps: Steps, root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
                  threshold_pct: float | None = None) -> ReportFiles:
    """The TR run's report (Markdown, HTML, plots), checked against the spec's baseline TR run when it
    names one (or baseline_root), and its artifacts; the files and the built report (its regression
    result included)."""

    def render() -> ReportFiles:
        baseline = baseline_root or (root.parent / spec.baseline_tr_id if spec and spec.baseline_tr_id else None)
        threshold = threshold_pct if threshold_pct is not None else (
            spec.regression_threshold_pct if spec else regression.DEFAULT_THRESHOLD_PCT)
        files = publish(root, spec, baseline_root=baseline, threshold_pct=threshold)
        report_artifacts(steps, files)
        return files

    return steps.call("render-report", "render-report", render)


def validate(steps: Steps, root: Path, spec: MatrixSpec, report: Path,
             checker: ValidationProcess | None = None) -> validation.ValidationResult:
    """Great Expectations suites over the request, run and multi-agent tables and the report (in the
    checker's process where there is one); the results go to validation/validation.json and beside
    the run, failures first."""

    def check() -> validation.ValidationResult:
        expected = validation.expected_runs_for(spec)
        result = (checker.validate(root, expected, report) if checker is not None
                  else validation.validate_tr(root, expected, report))
        validation.write_validation_json(result, root / "validation" / "validation.json")
        steps.table_artifact(f"{spec.tr_id}-validation", validation.summary_rows(result),
                             f"{spec.tr_id}: Great Expectations results, failures first")
        if not result.success:
            steps.log.error("validation failed: %s", "; ".join(f.message for f in result.failures[:5]))
        return result

    return steps.call("validate", "validate", check)


def stop_cause(err: Exception) -> str:
    """What stopped the measuring, as the outcome's first words: an instance error as it explains
    itself (instance, what failed, fix); anything else, unforeseen, with its type (its traceback
    is in the run's log)."""
    if isinstance(err, InstanceError):
        return str(err)
    return f"the measuring stopped early: {type(err).__name__}: {err}"


def _attempt(steps: Steps, problems: list[str], what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """One part of the closing step; a failure is noted and the others still run."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - the outcome names it
        steps.log.error("%s failed: %s: %s", what, type(err).__name__, err)
        problems.append(f"{what} failed: {type(err).__name__}: {err}")
        return None


def closing_step(session: TRSession, measured: Measured, stopped: Exception | None,
                 checker: ValidationProcess | None = None) -> Outcome:
    """The failure log, outlier flags, suite results, report and validation, each attempted whatever
    came before; the outcome says what went wrong first, then what was measured. A TR of load steps
    alone has no runs to flag or validate: its outcome counts its steps."""
    spec, root, faults, steps = session.spec, session.root, session.faults, session.steps
    matrix = spec.single_agent or spec.multi_agent is not None
    problems: list[str] = []
    flagged = None
    if matrix:
        _attempt(steps, problems, "failure log", write_failure_log, steps, root)
        flagged = _attempt(steps, problems, "outlier flags", flag_outliers, steps, root, spec)
        _attempt(steps, problems, "suite results", suite_results, steps, root, spec)
    files = _attempt(steps, problems, "report", render_report, steps, root, spec)
    report = files.markdown if files is not None else root / "report" / report_file(spec.tr_id)
    checked = _attempt(steps, problems, "validation", validate, steps, root, spec, report,
                       checker) if matrix else None
    causes = ([stop_cause(stopped)] if stopped is not None else []) + problems
    cause = "; ".join(causes) or None
    shown = remote.where(report)  # object storage: the report's URL, not the working copy's path
    runs = runs_outcome(spec, measured.runs, measured.skipped, shown, checked, flagged, cause) if matrix else None
    load = None
    if spec.load is not None:
        load = load_outcome(spec, measured.load_steps, measured.load_skipped, shown, measured.embeddings)
        if not matrix and cause is not None:
            load = Outcome(completed=False, message=f"{cause}; {load.message}")
    base = joint_outcome(runs, load) if runs is not None or load is not None else None
    others = {k: v for k, v in measured.other.items() if k != multi_turn.KIND}
    if base is None and (others or spec.multi_turn is None):
        base = other_outcome(spec, others, shown, cause)
    outcome = (conversations_outcome(base, spec, root, measured.other.get(multi_turn.KIND, []), shown, cause)
               if spec.multi_turn is not None else base)
    assert outcome is not None  # without a multi_turn section, base is made above
    if spec.baseline_tr_id:  # the regression check's verdict belongs in the message too
        # the report compared the two TR runs already; built again only when the report failed
        verdict = files.data.regression if files is not None else _attempt(
            steps, problems, "regression check", compare_tr, root, root.parent / spec.baseline_tr_id,
            spec.regression_threshold_pct)
        if verdict is not None:
            outcome.message = f"{outcome.message}; {regression.summary_message(verdict)}"
    if faults.messages and not isinstance(stopped, NoServerStarted):  # that one's cause is the start failures
        outcome.message = (f"{outcome.message}; {count(len(faults.messages), 'instance failure')} in the failure log: "
                           + "; ".join(faults.messages[:2]) + (" ..." if len(faults.messages) > 2 else ""))
    steps.log.info(outcome.message)
    return outcome
