"""Tasks that check what was measured: outliers (median/MAD) and Great Expectations suites."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.report import artifact_key
from trbench.measure import outliers
from trbench.validation import validate as validation
from trbench.config.spec import MatrixSpec


@task(name="flag-outliers", cache_policy=NO_CACHE)
def flag_outliers(root: Path, spec: MatrixSpec) -> list[dict]:
    """Flag runs far from their config's median; the flags (with median, MAD, threshold) go to Parquet."""
    frame = outliers.flag_outliers(root, spec.outliers)
    outliers.write_flags(root, frame)
    return outliers.flagged_configs(frame)


@task(name="validate", cache_policy=NO_CACHE)
def validate(root: Path, spec: MatrixSpec, report: Path) -> validation.ValidationResult:
    """Great Expectations suites over the request, run and multi-agent tables and the report;
    the results go to validation/validation.json and a Prefect table artifact."""
    result = validation.validate_tr(root, validation.expected_runs_for(spec), report)
    validation.write_validation_json(result, root / "validation" / "validation.json")
    create_table_artifact(key=artifact_key(spec.tr_id, "validation"), table=validation.summary_rows(result),
                          description=f"{spec.tr_id}: Great Expectations results, failures first")
    if not result.success:
        get_run_logger().error("validation failed: %s", "; ".join(f.message for f in result.failures[:5]))
    return result
