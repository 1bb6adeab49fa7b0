"""report: the Technical Report of a stored TR run, from its Parquet data alone.

  1. build the report (the spec recorded in the run's manifest gives title, objective, baseline model)
  2. with a baseline TR run: compare cell by cell (trbench.regression; threshold_pct)
  3. write report/<tr_id>.md, report/<tr_id>.html (self-contained: plots inline), their appendix
     report/<tr_id>-appendix.md and .html (every detail table and definition) and report/plots/*.png;
     the publishable Markdown as an artifact (naming where the appendix is), regressions and
     improvements as a table artifact
  4. Failed, with the regressions in the message, when the check finds any, or when it compared no
     cell (the message names the settings that differ); Completed otherwise

No server is started: run it any time after a tr run (e.g. nightly against last week's run).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from tasks.steps import PrefectSteps
from trbench.config.paths import output_root
from trbench.tr.closing import render_report
from trbench.data import remote, store
from trbench.report.regression import DEFAULT_THRESHOLD_PCT, summary_message
from trbench.report import ReportFiles


def report_state(files: ReportFiles) -> State:
    """Completed with the files written; Failed when the regression check found regressions, or
    compared no cell (a check that did not happen is not a pass)."""
    where = f"report {remote.where(files.markdown)}" + (f" and {remote.where(files.html)}" if files.html else "")
    regression = files.data.regression
    if regression is None:
        return Completed(message=f"{files.data.tr_id}: {where}; no baseline given")
    message = f"{summary_message(regression)}; {where}"
    failed = regression.has_regressions or regression.nothing_compared
    return Failed(message=message) if failed else Completed(message=message)


@flow(name="report", log_prints=True)
def report(tr_id: str, baseline: str | None = None, output_dir: str = "outputs",
           threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> State:
    """Render the report of TR run `tr_id` (Markdown, HTML, plots) from its Parquet data.

    Args:
        tr_id: the TR run to report on.
        baseline: another TR run under the same output_dir to check for regressions against.
        output_dir: where the TR runs' data is.
        threshold_pct: a change worse than this (in %) on a matched cell is a regression.
    """
    folder = output_root(output_dir)
    root = store.open_tr(folder, tr_id)
    baseline_root = store.open_tr(folder, baseline) if baseline else None
    if not any((root / t).is_dir() for t in ("runs", "ma_runs", "load_steps")):
        raise FileNotFoundError(f"no TR data under {root}; fix: check tr_id and output_dir")
    files = render_report(PrefectSteps(), root, None, baseline_root, threshold_pct)
    state = report_state(files)
    (get_run_logger().error if state.is_failed() else get_run_logger().info)(state.message)
    return state
