"""Data QA of one TR's Parquet tables with Great Expectations (GX Core 1.x), suites built in code.

validate_tr() reads the tables of one TR (<output_dir>/<tr_id>), runs one expectation suite per
table on an ephemeral GX context (pandas datasource, dataframe asset, whole-frame batch) and
returns a ValidationResult: one entry per expectation, each with a stable human name
(e.g. 'ttft_positive_on_ok_rows'), its GX type, the column(s), pass/fail, how many rows fail,
a few failing rows (run_id / model / config and the offending values) and a one-line message
naming the table, column(s) and config(s).

Tables validated:
  requests, ma_requests   every request row (warm-ups included): schema, keys, ranges on ok rows
  runs, ma_runs           every run row: schema, keys, counts, efficiency = speedup / n_agents x 100
  run_counts              derived: runs per model x config (latest attempt of each run_index)
  ma_run_counts           derived: runs per model x scenario           } only with expected_runs
  report, appendix        derived: the report's and its appendix's section headings } only with report_path
  tr                      derived: the TR has at least one finished run

Expected-run keys (expected_runs, see expected_runs_for): single-agent "model|num_gpu|num_ctx|temperature"
with the temperature formatted like the cell label ({:g}: 0.8, 1), e.g. "smollm2:135m|0|512|0.8";
multi-agent "model|scenario", e.g. "smollm2:135m|chimera_homo"; a harness other than python adds
"|<harness>" (trbench.data.cells), e.g. "smollm2:135m|chimera_homo|rust". A run counts once per run_index (its
latest attempt), valid or not: a missing run is a run_index that has no run row at all. Whether the
latest attempts are valid is checked separately, as a warning (an expected OOM leaves invalid runs).
A single-agent OOM fallback run (fallback_from = the label of the cell it replaces) counts for the
cell it replaces, so a cell that fell back to fewer GPU layers or a smaller context is not missing.

Types are checked against the pandas dtypes that pyarrow produces under pandas 3 from the storage
schemas: string -> `str` (StringDtype, whose scalar type is str; an object column of str passes
too), int32/int64 -> int32/int64 (a nullable integer column that holds nulls comes back as
float64, so nullable ones also accept float64), float64 -> float64, bool -> bool (a nullable one
with nulls comes back as object; its values must be bool), timestamp -> Timestamp (DatetimeTZDtype);
list columns (chunk_offsets_ms, chunk_kinds) come back as objects (arrays).

What each check reads (a TR of a million requests, with their chunk lists and texts, validates in
seconds): a table's schema checks (columns_present, column_dtypes) run on its dtype frame, one row
per column naming the dtype pandas gives the whole column (see _dtype_frame, dtype_rows); its row
checks run on every row of the columns they name (plus keys and conditions), read as a projection,
strings as pandas categories for the request tables. Both parts are reported under the table's name.

Absent kinds: a TR with no runs of one kind (no single-agent or no multi-agent rows at all, neither
runs nor requests) has nothing in that kind's tables to check, so their suites are not built or run:
ValidationResult.skipped names each such table and why (and so do summary_rows and validation.json).
A run count table is skipped likewise when it has no rows (no runs of its kind and none expected);
expected runs of an absent kind still fail its count check. A kind with any row is checked in full.

Severity: 'error' expectations decide ValidationResult.success; 'warning' ones are reported only.
Great Expectations is imported inside the functions (the import takes seconds).

The parts: checks.py (the checks as plain data, one suite per table), frames.py (the projected
reads, config keys and derived frames), gx.py (the GX driver); this module assembles the tables
and runs them (validate_tr) and writes the result.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from trbench.data import remote, store
from trbench.report.outline import appendix_file
from trbench.data.cells import multi_key, single_key  # noqa: F401 (re-exported: the expected-run keys)
from trbench.validation.checks import (
    TableCheck, count_checks, decode_vs_server_pct, ma_run_checks, report_checks, request_checks, run_checks, tr_checks)
from trbench.validation.frames import (  # noqa: F401 (expected_runs_for, is_multi_key: re-exported)
    config_column, count_frame, expected_runs_for, is_multi_key, read_table, report_frame, request_rows_per_run)
from trbench.validation.gx import ExpectationOutcome, import_gx, make_context, run_table


class SkippedTable(BaseModel):
    """A table whose suite was not run: the TR has no rows of its kind, so there is nothing to check."""

    table: str
    reason: str


class ValidationResult(BaseModel):
    tr_root: str
    success: bool
    gx_version: str
    elapsed_s: float
    results: list[ExpectationOutcome]
    skipped: list[SkippedTable] = []

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == "error"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success and r.severity == "warning"]

    def get(self, table: str, expectation: str) -> ExpectationOutcome:
        for r in self.results:
            if r.table == table and r.expectation == expectation:
                return r
        raise KeyError(f"no expectation {expectation!r} on table {table!r}")


_KIND_WORDS = {"single": "single-agent", "multi": "multi-agent"}

# The checks that fail only because expected runs are absent. After the measuring stopped early
# they restate the stop, not a fault in the data: the state names the stop and counts these.
_MISSING_RUN_CHECKS = frozenset({("run_counts", "expected_runs_per_config"),
                                 ("ma_run_counts", "expected_runs_per_config"), ("tr", "tr_has_finished_runs")})


def is_missing_runs(outcome: ExpectationOutcome) -> bool:
    """A failure that says only that expected runs are absent."""
    return (outcome.table, outcome.expectation) in _MISSING_RUN_CHECKS


def _prepare(root: Path, expected_runs: dict[str, int] | None,
             report_path: Path | None) -> tuple[list[TableCheck], list[SkippedTable]]:
    req_schema, request_dtypes, req_rows, requests = read_table(
        root, "requests", lambda f: request_checks(f, multi=False), categorical=True)
    ma_req_schema, ma_request_dtypes, ma_req_rows, ma_requests = read_table(
        root, "ma_requests", lambda f: request_checks(f, multi=True), categorical=True)
    run_schema, run_dtypes, run_rows, runs = read_table(root, "runs", run_checks, categorical=False)
    ma_run_schema, ma_run_dtypes, ma_run_rows, ma_runs = read_table(root, "ma_runs", ma_run_checks, categorical=False)

    requests = requests.assign(config=config_column(requests, "single").astype("category"),
                               _chk_decode_vs_server_pct=decode_vs_server_pct(requests))
    ma_requests = ma_requests.assign(config=config_column(ma_requests, "multi").astype("category"),
                                     _chk_decode_vs_server_pct=decode_vs_server_pct(ma_requests))
    runs = runs.assign(config=config_column(runs, "single"),
                       _chk_ok_plus_errors=(runs["n_ok"].astype("float64") + runs["n_errors"].astype("float64")),
                       _chk_request_rows=request_rows_per_run(requests, runs))
    ma_runs = ma_runs.assign(config=config_column(ma_runs, "multi"),
                             _chk_request_rows=request_rows_per_run(ma_requests, ma_runs))
    n_agents = ma_runs["n_agents"].astype("float64")
    speedup = ma_runs["speedup"].astype("float64")
    ma_runs["_chk_efficiency_error_pct"] = ma_runs["efficiency_pct"].astype("float64") - speedup / n_agents * 100.0
    ratio = ma_runs["sequential_wall_s"].astype("float64") / ma_runs["concurrent_wall_s"].astype("float64")
    ma_runs["_chk_speedup_rel_error"] = (speedup / ratio - 1.0).replace([np.inf, -np.inf], np.nan)

    req_examples = ["run_id", "model", "config", "request_index", "status"]
    run_examples = ["run_id", "model", "config", "valid"]
    # each table's schema checks on its dtype frame, then its row checks on the rows (see read_table)
    # a kind with no row in any of its tables (a TR without multi-agent runs): nothing to check there
    present = {"single": not (requests.empty and runs.empty), "multi": not (ma_requests.empty and ma_runs.empty)}
    skipped = [SkippedTable(table=t, reason=f"absent: the TR has no {_KIND_WORDS[kind]} runs")
               for kind, names in (("single", ("requests", "runs")), ("multi", ("ma_requests", "ma_runs")))
               if not present[kind] for t in names]
    tables = []
    if present["single"]:
        tables += [
            TableCheck("requests", request_dtypes, req_schema, "none", []),
            TableCheck("requests", requests, req_rows, "single", req_examples),
            TableCheck("runs", run_dtypes, run_schema, "none", []),
            TableCheck("runs", runs, run_rows, "single", run_examples),
        ]
    if present["multi"]:
        tables += [
            TableCheck("ma_requests", ma_request_dtypes, ma_req_schema, "none", []),
            TableCheck("ma_requests", ma_requests, ma_req_rows, "multi", [*req_examples, "agent", "phase"]),
            TableCheck("ma_runs", ma_run_dtypes, ma_run_schema, "none", []),
            TableCheck("ma_runs", ma_runs, ma_run_rows, "multi", run_examples),
        ]
    if expected_runs is not None:
        cols = ["config", "model", "n_runs", "n_valid", "expected", "run_indexes", "missing_run_indexes", "measured_as"]
        for table, kind, frame in (("run_counts", "single", runs), ("ma_run_counts", "multi", ma_runs)):
            counts = count_frame(frame, kind, expected_runs)
            if counts.empty:  # no runs of this kind and none expected
                skipped.append(SkippedTable(table=table, reason=f"absent: no {_KIND_WORDS[kind]} runs, none expected"))
            else:
                tables.append(TableCheck(table, counts, count_checks(), kind, cols))
    if report_path is not None:
        with_runs = {kind for kind, frame in (("single", runs), ("multi", ma_runs)) if not frame.empty}
        tables.append(TableCheck("report", report_frame(Path(report_path), with_runs),
                                 report_checks(), "none", ["heading", "found", "body_chars", "has_table"]))
        # the appendix beside it (<tr_id>-appendix.md) holds the detail tables and the definitions
        appendix = Path(report_path).with_name(appendix_file(Path(report_path).stem))
        tables.append(TableCheck("appendix", report_frame(appendix, with_runs, "appendix"),
                                 report_checks(), "none", ["heading", "found", "body_chars", "has_table"]))
    ledger = pd.DataFrame({"run_id": pd.concat([runs["run_id"], ma_runs["run_id"]], ignore_index=True).astype("str")})
    tables.append(TableCheck("tr", ledger, tr_checks(), "none", []))
    return tables, skipped


def validate_tr(tr_root: Path, expected_runs: dict[str, int] | None = None, report_path: Path | None = None,
                *, context=None) -> ValidationResult:
    """Validate every table of one TR. expected_runs: config key -> expected run count (see the module
    doc and expected_runs_for; None skips the count checks); report_path: the report Markdown to check
    (None skips it); context: a GX context to reuse (default: a fresh ephemeral one)."""
    t0 = time.perf_counter()
    root = Path(tr_root)
    gx = import_gx()
    ctx = context if context is not None else make_context()
    tables, skipped = _prepare(root, expected_runs, report_path)
    name = f"trbench_{uuid.uuid4().hex[:12]}"
    datasource = ctx.data_sources.add_pandas(name)
    try:
        results = [outcome for tc in tables for outcome in run_table(datasource, tc)]
    finally:
        try:
            ctx.data_sources.delete(name)
        except Exception:  # noqa: BLE001 (cleanup of an ephemeral context only)
            pass
    success = all(r.success for r in results if r.severity == "error")
    return ValidationResult(tr_root=remote.where(root), success=success, gx_version=str(gx.__version__),
                            elapsed_s=round(time.perf_counter() - t0, 3), results=results, skipped=skipped)


def write_validation_json(result: ValidationResult, path: Path) -> Path:
    """The whole result as JSON, written atomically."""
    path = Path(path)
    store.write_json_atomic(path, result.model_dump(mode="json"))
    return path


def summary_rows(result: ValidationResult, failed_only: bool = False) -> list[dict]:
    """Rows for a Prefect table artifact: failures first, then warnings, then passes, then the
    tables skipped as absent."""
    order = {("error", False): 0, ("warning", False): 1}
    rows = sorted(result.results, key=lambda r: order.get((r.severity, r.success), 2))
    return [
        {"table": r.table, "expectation": r.expectation,
         "result": "pass" if r.success else ("FAIL" if r.severity == "error" else "warn"),
         "columns": ", ".join(r.columns), "unexpected": r.unexpected_count, "message": r.message}
        for r in rows if not (failed_only and r.success)
    ] + ([] if failed_only else [
        {"table": s.table, "expectation": "(suite)", "result": "skipped", "columns": "", "unexpected": None,
         "message": f"{s.table}: skipped, {s.reason}"} for s in result.skipped])
