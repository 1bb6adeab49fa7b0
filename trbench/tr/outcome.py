"""A TR run's final word: completed or failed, and one message whose first clause is the first cause
(the CLI prints it as its last line; under Prefect it is the flow run's final state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.measure.outliers import FlaggedConfig
from trbench.validation import validate as validation
from trbench.validation.validate import ValidationResult
from trbench.workloads.run_outcomes import EmbeddingsOutcome, RunOutcome, StepOutcome
from trbench.prose import count

# where a failure whose own words name no fix is explained, under the TR run's folder
_RUN_FIX = "each request's error is in the report's Failures section and failures/failures.parquet"
_CHECKS_FIX = "the failing rows of each check are in validation/validation.json"
_LOAD_FIX = "each request's error_kind and error_message are in {}/ (Parquet)"


class Outcome(BaseModel):
    completed: bool
    message: str

    @property
    def name(self) -> str:
        """As Prefect names the final state."""
        return "Completed" if self.completed else "Failed"

    def is_completed(self) -> bool:
        return self.completed

    def is_failed(self) -> bool:
        return not self.completed


def runs_outcome(spec: MatrixSpec, outcomes: list[RunOutcome], skipped: int, report: Path | str,
                 checked: ValidationResult | None = None, flagged: list[FlaggedConfig] | None = None,
                 cause: str | None = None) -> Outcome:
    """Completed with a message when something was measured; failed when `cause` (what stopped the
    measuring) is given, nothing was valid, or a Great Expectations check failed.

    A failed message opens with its first cause: what stopped the measuring, else the first invalid
    run's reason, else the failed checks; then what was measured. The runs a stop left unmeasured
    fail the run-count checks: that is the stop again, said in one clause, not as the checks' messages."""
    valid = sum(o.valid for o in outcomes)
    invalid = [o for o in outcomes if not o.valid]
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
        reason = invalid[0].invalid_reason or ""
        cause = f"run {invalid[0].run_id} invalid: {reason}" + ("" if "fix: " in reason else f"; fix: {_RUN_FIX}")
        invalid = invalid[1:]
    elif cause is None and checks is not None:
        cause, checks = f"{checks}; fix: {_CHECKS_FIX}", None
    summary = (f"{spec.tr_id}: {valid} of {count(len(outcomes), 'run')} valid"
               + (f", {skipped} already finished" if skipped else "") + f"; report {report}")
    if invalid:
        reasons = "; ".join(f"{o.run_id}: {o.invalid_reason}" for o in invalid[:3])
        summary += (f"; {len(invalid)} more invalid: " if first_invalid else "; invalid: ") + reasons
        summary += " ..." if len(invalid) > 3 else ""
    if flagged:
        summary += f"; {count(len(flagged), 'config')} with outlier runs (rerun_flagged runs them again)"
    message = "; ".join(part for part in (cause, summary, checks, *consequences) if part)
    return Outcome(completed=cause is None, message=message)


def load_outcome(spec: MatrixSpec, rows: list[StepOutcome], skipped: int, report: Path | str,
                 embedded: list[EmbeddingsOutcome] | None = None) -> Outcome:
    """The load part: completed when a step measured something; failed when none did, its message
    opening with the first invalid step's reason."""
    valid = sum(r.valid for r in rows)
    emb_ok = sum(r.n_ok > 0 for r in embedded or [])
    msg = (f"{spec.tr_id}: {valid} of {count(len(rows), 'load step')} valid"
           + (f", {emb_ok} of {count(len(embedded), 'embeddings step')} with ok requests" if embedded else "")
           + (f", {skipped} already finished" if skipped else "") + f"; report {report}")
    bad = [r for r in rows if not r.valid]
    if not (rows or embedded) or valid or emb_ok:
        if bad:
            msg += "; invalid: " + "; ".join(f"{r.run_id}: {r.invalid_reason}" for r in bad[:3])
        return Outcome(completed=True, message=msg)
    cause = (f"load step {bad[0].run_id} invalid: {bad[0].invalid_reason}; fix: {_LOAD_FIX.format('load_requests')}"
             if bad else f"no embeddings request answered; fix: {_LOAD_FIX.format('emb_requests')}")
    more = "; ".join(f"{r.run_id}: {r.invalid_reason}" for r in bad[1:3])
    return Outcome(completed=False, message=f"{cause}; {msg}" + (f"; {len(bad) - 1} more invalid: {more}" if more else ""))


def other_outcome(spec: MatrixSpec, other: dict[str, list], report: Path | str, cause: str | None) -> Outcome:
    """A TR of registered workloads alone (no matrix, no load): completed unless `cause` stopped it;
    its message counts what each workload measured (a row with `valid` counts as valid or not)."""
    parts = []
    for name, items in other.items():
        rows = [r for r in items if isinstance(r, dict) and "valid" in r]
        parts.append(f"{name}: {sum(bool(r['valid']) for r in rows)} of {count(len(rows), 'run')} valid" if rows
                     else f"{name}: {len(items)} measured")
    msg = f"{spec.tr_id}: " + ("; ".join(parts) or "nothing measured") + f"; report {report}"
    return Outcome(completed=cause is None, message=f"{cause}; {msg}" if cause else msg)


def joint_outcome(runs: Outcome | None, load: Outcome | None) -> Outcome:
    """One outcome for a TR with both parts: failed when either failed, its first cause first; the
    load part's counts follow the runs' (its tr_id and report path said once)."""
    if runs is None or load is None:
        only = runs or load
        assert only is not None
        return only
    load_words = load.message.split(": ", 1)[-1]
    load_words = "; ".join(p for p in load_words.split("; ") if not p.startswith("report "))
    if runs.completed and not load.completed:
        return Outcome(completed=False, message=f"{load.message}; {runs.message}")
    return Outcome(completed=runs.completed, message=f"{runs.message}; load: {load_words}")


def conversations_outcome(outcome: Outcome | None, spec: MatrixSpec, root: Path, rows: list[dict[str, Any]],
                          report: Path | str, cause: str | None) -> Outcome:
    """The TR's outcome with its multi-turn conversations counted (rows: those measured now): failed when
    conversations were measured and none answered every turn (opening with the first one's reason), or when
    the other parts failed; alone (no other part), it carries the closing step's cause as well."""
    valid = sum(r["valid"] for r in rows)
    skipped = len(store.finished_run_ids(root, "multi_turn")) - len(rows)
    counts = (f"{valid} of {count(len(rows), 'conversation')} answered every turn"
              + (f", {skipped} already finished" if skipped > 0 else ""))
    failed = bool(rows) and not valid
    why = (f"conversation {rows[0]['run_id']} invalid: {rows[0]['invalid_reason']}; fix: see the error_message of "
           "its turns in mt_turns and the server's log") if failed else None
    if outcome is None:
        message = "; ".join(p for p in (cause, why, f"{spec.tr_id}: {counts}; report {report}") if p)
        return Outcome(completed=cause is None and not failed, message=message)
    message = "; ".join(p for p in (why, outcome.message, f"multi-turn: {counts}") if p)
    return Outcome(completed=outcome.completed and not failed, message=message)
