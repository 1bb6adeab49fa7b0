"""The quality suites' closing task: the per-scenario summary and results matrix, written from the
stored rows (the suite runs themselves are a workload: trbench/workloads/quality_suites.py)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from trbench.config.spec import MatrixSpec
from trbench.run.suite_runs import load_suites
from trbench.suites.results import EnsembleError, add_ensemble, write_suite_results


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
