"""The Great Expectations driver: builds each TableCheck's expectations on an ephemeral GX context
(pandas datasource, dataframe asset, whole-frame batch) and turns GX's results into
ExpectationOutcome rows with a one-line message and a few failing rows. GX is imported only here,
inside the functions (the import takes seconds)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import math
import os
import sys
import uuid
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from trbench.validation.checks import MAX_EXAMPLES, Check, Severity, TableCheck
from trbench.prose import count, noun



class ExpectationOutcome(BaseModel):
    table: str
    expectation: str = Field(description="stable human name, e.g. ttft_positive_on_ok_rows")
    gx_type: str = Field(description="the GX expectation type, e.g. expect_column_values_to_be_between")
    columns: list[str]
    severity: Severity = "error"
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_examples: list[dict[str, Any]] = Field(default_factory=list)
    observed: Any = None
    message: str


# --- running the suites ---------------------------------------------------------------------------


# Great Expectations imports scipy.stats at module level for expectations trbench never runs (KL
# divergence, KS tests) and uses it only inside those expectations' functions: loaded lazily, it costs
# nothing unless such an expectation runs, and about 1 s of every validation's start otherwise.
_UNUSED_AT_IMPORT = ("scipy.stats",)


def _load_lazily(name: str) -> None:
    """Put a module in sys.modules whose code runs on its first attribute access (importlib's
    LazyLoader); nothing happens where it is imported already or not installed."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def import_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in _UNUSED_AT_IMPORT:
        _load_lazily(name)
    import great_expectations as gx  # noqa: PLC0415 (seconds to import: only when validating)

    # this GX module pins its logger to INFO and announces its temporary docs folder on every
    # context: noise in the CLI and the flow logs
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    return gx


def make_context():
    """An ephemeral GX context with progress bars off (reuse it across calls: validate_tr(context=...))."""
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: PLC0415

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


def _json_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_json_value(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        return v.isoformat()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v if isinstance(v, (int, str)) else str(v)


def _examples(tc: TableCheck, check: Check, index: list) -> list[dict]:
    out = []
    frame = tc.frame
    for i in index[:MAX_EXAMPLES]:
        if i not in frame.index:
            continue
        row = frame.loc[i]
        ex = {c: _json_value(row[c]) for c in tc.example_columns if c in frame.columns}
        for c in check.columns:
            if c in frame.columns and c not in ex:
                ex[c] = _json_value(row[c])
        out.append(ex)
    return out


def _message(tc: TableCheck, check: Check, success: bool, element_count, unexpected_count, examples, observed) -> str:
    where = tc.table if check.name == "columns_present" else f"{tc.table}.{'/'.join(check.columns)}"
    if success:
        return f"{where}: {check.name} passed ({check.what})"
    if check.explain is not None:
        return f"{where}: {check.name} failed: {'; '.join(check.explain(e) for e in examples)} ({check.what})"
    configs = sorted({str(e["config"]) for e in examples if e.get("config")})
    if tc.table in ("run_counts", "ma_run_counts"):
        detail = "; ".join(
            f"config {e['config']}: "
            f"{count(int(e['n_runs'] if check.name != 'valid_runs_per_config' else e['n_valid']), 'valid run' if check.name == 'valid_runs_per_config' else 'run')} of "
            f"{'?' if e.get('expected') is None else int(e['expected'])} expected"
            + (f", missing run_index {e['missing_run_indexes']}" if e.get("missing_run_indexes") else "")
            for e in examples)
        return f"{where}: {check.name} failed: {detail} ({check.what})"
    if tc.table == "report":
        heads = ", ".join(repr(e.get("heading")) for e in examples)
        return f"{where}: {check.name} failed in {tc.frame['path'].iloc[0] if len(tc.frame) else '?'}: {heads} ({check.what})"
    if unexpected_count is None:
        obs = f"; observed {observed!r}" if observed is not None else ""
        return f"{where}: {check.name} failed ({check.what}{obs})"
    of = f" of {element_count}" if element_count is not None else ""
    cfg = f" in {noun('config', len(configs))} {', '.join(configs)}" if configs else ""
    runs = sorted({str(e["run_id"]) for e in examples if e.get("run_id")})
    run_txt = f" (e.g. run {runs[0]})" if runs else ""
    rows = noun("row", element_count if element_count is not None else unexpected_count)
    return f"{where}: {check.name} failed on {unexpected_count}{of} {rows}{cfg}{run_txt}: expected {check.what}"


def _suite_results(batch, tc: TableCheck, checks: list[Check], result_format: str) -> dict:
    """Each check's GX result (ExpectationValidationResult) by name, from one suite run on the batch."""
    gx = import_gx()
    import great_expectations.expectations as gxe  # noqa: PLC0415
    from great_expectations.expectations.row_conditions import Column as C  # noqa: PLC0415

    expectations = []
    for check in checks:
        exp = check.build(gxe, C)
        exp.meta = {"name": check.name, "table": tc.table}
        expectations.append(exp)
    # given at construction: add_expectation() compares each new one with all before it (quadratic)
    suite = gx.ExpectationSuite(name=f"trbench.{tc.table}", expectations=expectations)
    validation = batch.validate(suite, result_format=result_format)
    return {er.expectation_config.meta["name"]: er for er in validation.results}


def run_table(datasource, tc: TableCheck) -> list[ExpectationOutcome]:
    by_name: dict[str, Check] = {}
    for check in tc.checks:
        if check.name in by_name:
            raise ValueError(f"duplicate expectation name {check.name!r} on table {tc.table}")
        by_name[check.name] = check
    asset = datasource.add_dataframe_asset(f"{tc.table}.{uuid.uuid4().hex[:8]}")  # a table may come in parts
    batch = asset.add_batch_definition_whole_dataframe(f"{tc.table}.all").get_batch(
        batch_parameters={"dataframe": tc.frame})
    # BASIC first: the counts and observed values, without collecting every failing row's index (half
    # the work on a million rows); the checks that did not pass run again in COMPLETE, for their rows
    results = _suite_results(batch, tc, tc.checks, "BASIC")
    again = [c for c in tc.checks if not results[c.name].success]
    if again:
        results.update(_suite_results(batch, tc, again, "COMPLETE"))
    outcomes: dict[str, ExpectationOutcome] = {}
    for name, er in results.items():
        cfg = er.expectation_config
        check = by_name[name]
        res = er.result or {}
        exc = er.exception_info or {}
        raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
        index = res.get("unexpected_index_list") or []
        examples = _examples(tc, check, list(index))
        observed = _json_value(res.get("observed_value"))
        success = bool(er.success) and not raised
        msg = _message(tc, check, success, res.get("element_count"), res.get("unexpected_count"), examples, observed)
        if raised:
            msg = f"{tc.table}.{'/'.join(check.columns)}: {check.name} could not run: {exc.get('exception_message')}"
        outcomes[check.name] = ExpectationOutcome(
            table=tc.table, expectation=check.name, gx_type=cfg.type, columns=check.columns,
            severity=check.severity, success=success, element_count=res.get("element_count"),
            unexpected_count=res.get("unexpected_count"), unexpected_examples=examples,
            observed=None if index else observed, message=msg.replace("\n", " "))
    return [outcomes[c.name] for c in tc.checks]  # in suite order
