"""The report tasks: Markdown, HTML and plots from the Parquet data alone, also shown as Prefect artifacts."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from trbench.data import failures
from trbench.quality.regression import DEFAULT_THRESHOLD_PCT
from trbench.report import publish, render_markdown
from trbench.report.models import ReportFiles  # not through the package: its lazy names are Any to mypy
from trbench.config.spec import MatrixSpec


def artifact_key(tr_id: str, what: str) -> str:
    # artifact keys allow lowercase letters, digits and dashes only
    return re.sub(r"[^a-z0-9-]+", "-", f"{tr_id}-{what}".lower()).strip("-")


def _artifacts(files: ReportFiles) -> None:
    data = files.data
    # the artifact is the Markdown without the plot links (relative files the UI cannot show);
    # the HTML beside the data has them inline
    text = render_markdown(data)
    if files.html is not None:
        text += f"\n---\n\nHTML report with plots: `{files.html}`\n"
    create_markdown_artifact(key=artifact_key(data.tr_id, "report"), markdown=text,
                             description=f"Technical report {data.tr_id}")
    if data.regression is not None:
        r = data.regression
        rows = [{"cell": c.label, "metric": c.metric, "baseline": c.baseline, "current": c.current,
                 "change_pct": None if c.change_pct is None else round(c.change_pct, 2), "verdict": c.verdict}
                for c in r.regressions + r.improvements]
        empty = ({"verdict": f"nothing compared: {r.why_nothing_compared}"} if r.nothing_compared
                 else {"verdict": f"none beyond {r.threshold_pct:g}%"})
        create_table_artifact(key=artifact_key(data.tr_id, "regression"), table=rows or [empty],
                              description=f"{data.tr_id} against {r.baseline_tr_id}: "
                              f"regressions and improvements beyond {r.threshold_pct:g}%")


@task(name="render-report", cache_policy=NO_CACHE)
def render_report(root: Path, spec: MatrixSpec) -> ReportFiles:
    """The TR run's report (Markdown, HTML, plots), checked against the spec's baseline TR run when it
    names one, and its artifact; returns the files and the built report (its regression result included)."""
    baseline = root.parent / spec.baseline_tr_id if spec.baseline_tr_id else None
    files = publish(root, spec, baseline_root=baseline, threshold_pct=spec.regression_threshold_pct)
    _artifacts(files)
    return files


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(root: Path, baseline_root: Path | None = None,
                   threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> ReportFiles:
    """The report of a stored TR run (its recorded spec, from the manifest), optionally checked
    against a baseline TR run; Markdown, HTML, plots and the artifacts."""
    if not any((root / t).is_dir() for t in ("runs", "ma_runs", "load_steps")):
        raise FileNotFoundError(f"no TR data under {root}; fix: check tr_id and output_dir")
    files = publish(root, baseline_root=baseline_root, threshold_pct=threshold_pct)
    _artifacts(files)
    return files


@task(name="failure-log", cache_policy=NO_CACHE)
def write_failure_log(root: Path) -> Path:
    """Rewrite the failure log of the whole TR run (the lanes keep each fallback decision as it is taken)."""
    return failures.write_failure_log(root)
