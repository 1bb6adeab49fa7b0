"""The report task: Markdown from the Parquet data alone, also shown as a Prefect artifact."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from trbench import failures
from trbench.report import write_report
from trbench.spec import MatrixSpec


def artifact_key(tr_id: str, what: str) -> str:
    # artifact keys allow lowercase letters, digits and dashes only
    return re.sub(r"[^a-z0-9-]+", "-", f"{tr_id}-{what}".lower()).strip("-")


@task(name="render-report", cache_policy=NO_CACHE)
def render_report(root: Path, spec: MatrixSpec) -> Path:
    path = write_report(root, spec)
    create_markdown_artifact(key=artifact_key(spec.tr_id, "report"), markdown=path.read_text(),
                             description=f"Technical report {spec.tr_id}")
    return path


@task(name="failure-log", cache_policy=NO_CACHE)
def write_failure_log(root: Path, fallbacks: list[dict]) -> Path:
    """Keep this flow run's fallback decisions, then rewrite the failure log of the whole TR run."""
    failures.record_fallbacks(root, fallbacks)
    return failures.write_failure_log(root)
