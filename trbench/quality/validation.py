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
  report                  derived: the report's section headings       } only with report_path
  tr                      derived: the TR has at least one finished run

Expected-run keys (expected_runs, see expected_runs_for): single-agent "model|num_gpu|num_ctx|temperature"
with the temperature formatted like the cell label ({:g}: 0.8, 1), e.g. "smollm2:135m|0|512|0.8";
multi-agent "model|scenario", e.g. "smollm2:135m|chimera_homo". A run counts once per run_index (its
latest attempt), valid or not: a missing run is a run_index that has no run row at all. Whether the
latest attempts are valid is checked separately, as a warning (an expected OOM leaves invalid runs).
A single-agent OOM fallback run (fallback_from = the label of the cell it replaces) counts for the
cell it replaces, so a cell that fell back to fewer GPU layers or a smaller context is not missing.

Types are checked against the pandas dtypes that pyarrow produces under pandas 3 from the storage
schemas: string -> `str` (StringDtype, whose scalar type is str; an object column of str passes
too), int32/int64 -> int32/int64 (a nullable integer column that holds nulls comes back as
float64, so nullable ones also accept float64), float64 -> float64, bool -> bool (a nullable one
with nulls comes back as object; its values must be bool), timestamp -> Timestamp (DatetimeTZDtype);
list columns (chunk_offsets_ms, chunk_kinds) are only required to exist.

What each check reads (a TR of a million requests, with their chunk lists and texts, validates in
seconds): a table's schema checks (columns_present, type_of_<column>) run on its dtype frame, two
rows that carry, per column, the dtype pandas gives the whole column (see _dtype_frame); its row
checks run on every row of the columns they name (plus keys and conditions), read as a projection,
strings as pandas categories for the request tables. Both parts are reported under the table's name.

Severity: 'error' expectations decide ValidationResult.success; 'warning' ones are reported only.
Great Expectations is imported inside the functions (the import takes seconds).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import time
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from trbench.data.cells import MULTI_CONFIG_COLUMNS, SINGLE_CONFIG_COLUMNS, latest_attempts, multi_key, parse_config_label, single_key
from trbench.data import store
from trbench.backends.base import ErrorKind

ERROR_KINDS: tuple[str, ...] = typing.get_args(ErrorKind)
STATUSES = ("ok", "error")
CACHE_STATES = ("cold", "partial", "cached", "unknown")  # trbench.metrics.CACHE_STATES
DECODE_VS_SERVER_TOL_PCT = 0.1  # rounding only: the server view must be the server's own figure
AGENTS = ("collector", "insight")
PHASES = ("warmup", "concurrent", "solo")
SCENARIO_NAMES = ("baseline_vs_chimera", "chimera_homo", "chimera_hetero")

EFFICIENCY_TOL_PCT = 0.01  # |efficiency_pct - speedup / n_agents x 100|, percentage points
SPEEDUP_REL_TOL = 1e-6  # |speedup / (sequential_wall_s / concurrent_wall_s) - 1|
MAX_EXAMPLES = 5

SINGLE_CONFIG, MULTI_CONFIG = SINGLE_CONFIG_COLUMNS, MULTI_CONFIG_COLUMNS

# The report's section headings (trbench/templates/report.md.j2); multi-agent only with ma runs.
REPORT_SECTIONS = ["## Key findings", "## Objective", "## Setup", "## Methodology", "## Results",
                   "### % of baseline", "### Answer sanity", "## Cross-model comparison", "### Winner by scenario",
                   "## Efficiency frontier", "## VRAM and quantization", "## Regression against a baseline",
                   "## Outliers and re-runs", "## Failures", "## Recommendations", "## Appendix: metric definitions"]
REPORT_MULTI_SECTIONS = ["## Multi-agent results"]
REPORT_TABLE_SECTIONS = {"## Results", "### % of baseline", "### Winner by scenario", "## Multi-agent results"}  # a table when there are runs

Severity = Literal["error", "warning"]


# --- the result --------------------------------------------------------------------------------


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


class ValidationResult(BaseModel):
    tr_root: str
    success: bool
    gx_version: str
    elapsed_s: float
    results: list[ExpectationOutcome]

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


# --- config keys -------------------------------------------------------------------------------


def is_multi_key(key: str) -> bool:
    return key.rsplit("|", 1)[-1] in SCENARIO_NAMES


def expected_runs_for(spec) -> dict[str, int]:
    """The expected run count per config key of a MatrixSpec: spec.runs per single-agent cell
    (when single_agent is on), multi_agent.runs per model x scenario."""
    out: dict[str, int] = {}
    if spec.single_agent:
        for c in spec.cells():
            out[single_key(c.model, c.num_gpu, c.num_ctx, c.temperature)] = spec.runs
    if spec.multi_agent:
        for m in spec.multi_agent_models:
            for s in spec.multi_agent.scenarios:
                out[multi_key(m, s)] = spec.multi_agent.runs
    return out


def _config_column(frame: pd.DataFrame, kind: str) -> pd.Series:
    """Each row's config key, built once per distinct config (a million rows hold a few dozen)."""
    if frame.empty:
        return pd.Series([], dtype="str", index=frame.index)
    columns, key = (MULTI_CONFIG, multi_key) if kind == "multi" else (SINGLE_CONFIG, single_key)
    group = frame.groupby(columns, dropna=False, sort=False).ngroup().to_numpy()
    _, first = np.unique(group, return_index=True)  # the first row of each group, in group order
    keys = np.array([key(*(frame[c].iloc[i] for c in columns)) for i in first], dtype=object)
    return pd.Series(keys[group], index=frame.index, dtype="str")


# --- checks: plain data, GX objects built from them -------------------------------------------


@dataclass
class Check:
    """One expectation: `build(gxe, C)` returns the GX expectation (gxe = great_expectations.expectations,
    C = its row-condition Column); `what` is the rule in words, for the message."""

    name: str
    columns: list[str]
    what: str
    build: Callable[[Any, Any], Any]
    severity: Severity = "error"


@dataclass
class TableCheck:
    table: str
    frame: pd.DataFrame
    checks: list[Check]
    kind: str = "single"  # how rows name their config: single / multi / none
    example_columns: list[str] = field(default_factory=list)


def _dtype_checks(schema: pa.Schema, frame: pd.DataFrame, not_null: set[str]) -> list[Check]:
    """columns_present, then one type check per present column (pandas-3 dtypes, see module doc)."""
    names = [f.name for f in schema]
    missing = [n for n in names if n not in frame.columns]
    checks = [Check("columns_present", names,
                    f"all {len(names)} schema columns present" + (f"; missing: {', '.join(missing)}" if missing else ""),
                    lambda gxe, C, names=names: gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=False))]
    for f in schema:
        if f.name not in frame.columns:
            continue
        t = f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            expected: str | list[str] | None = "str"
        elif pa.types.is_integer(t):
            expected = str(t) if f.name in not_null else [str(t), "float64"]
        elif pa.types.is_floating(t):
            expected = "float64"
        elif pa.types.is_boolean(t):
            expected = "bool" if f.name in not_null else ["bool"]
        elif pa.types.is_timestamp(t):
            expected = "Timestamp"
        else:
            expected = None  # list columns: existence only
        if expected is None:
            continue
        if isinstance(expected, str):
            what = f"dtype of {f.name} is {expected} (arrow {t})"
            build = (lambda gxe, C, col=f.name, e=expected: gxe.ExpectColumnValuesToBeOfType(column=col, type_=e))
        else:
            what = f"dtype of {f.name} is one of {', '.join(expected)} (arrow {t}, nullable)"
            build = (lambda gxe, C, col=f.name, e=expected: gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=e))
        checks.append(Check(f"type_of_{f.name}", [f.name], what, build))
    return checks


def _not_null(columns: list[str], frame: pd.DataFrame) -> list[Check]:
    return [Check(f"{c}_not_null", [c], f"{c} is never null",
                  lambda gxe, C, c=c: gxe.ExpectColumnValuesToNotBeNull(column=c))
            for c in columns if c in frame.columns]


def _between(name: str, column: str, what: str, *, min_value=None, max_value=None, strict_min=False,
             strict_max=False, when: Callable[[Any], Any] | None = None, severity: Severity = "error") -> Check:
    def build(gxe, C):
        kw = {"row_condition": when(C)} if when else {}
        return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=min_value, max_value=max_value,
                                                 strict_min=strict_min, strict_max=strict_max, **kw)
    return Check(name, [column], what, build, severity)


def _in_set(name: str, column: str, values, what: str, when=None, severity: Severity = "error") -> Check:
    def build(gxe, C):
        kw = {"row_condition": when(C)} if when else {}
        return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values), **kw)
    return Check(name, [column], what, build, severity)


def _pair_ge(name: str, a: str, b: str, what: str, when=None, severity: Severity = "error",
             columns: list[str] | None = None) -> Check:
    """a >= b on every row (rows where either is null are left out; nulls are checked elsewhere)."""
    def build(gxe, C):
        kw = {"row_condition": when(C)} if when else {}
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True,
                                                           ignore_row_if="either_value_is_missing", **kw)
    return Check(name, columns or [b, a], what, build, severity)


def _pair_eq(name: str, a: str, b: str, what: str, columns: list[str] | None = None) -> Check:
    def build(gxe, C):
        return gxe.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b, ignore_row_if="either_value_is_missing")
    return Check(name, columns or [a, b], what, build)


def _ok(C):
    return C("status") == "ok"


def _error(C):
    return C("status") == "error"


def _valid(C):
    return C("valid") == True  # noqa: E712 (a GX row condition, not a Python comparison)


def _invalid(C):
    return C("valid") == False  # noqa: E712


# --- the suites ---------------------------------------------------------------------------------

_REQUEST_KEYS = ["tr_id", "run_id", "attempt", "cell_hash", "model", "provider", "backend", "instance",
                 "ttft_mode", "run_index", "request_index", "is_warmup", "status", "sent_at", "e2e_ms"]


def request_checks(frame: pd.DataFrame, multi: bool) -> list[Check]:
    schema = store.MA_REQUEST_SCHEMA if multi else store.REQUEST_SCHEMA
    keys = _REQUEST_KEYS + (["scenario", "agent", "phase", "call"] if multi else ["num_gpu", "num_ctx", "temperature"])
    checks = _dtype_checks(schema, frame, set(keys)) + _not_null(keys, frame)
    checks += [
        Check("request_index_unique_per_run", ["run_id", "request_index"], "(run_id, request_index) is unique",
              lambda gxe, C: gxe.ExpectCompoundColumnsToBeUnique(column_list=["run_id", "request_index"])),
        _between("attempt_at_least_1", "attempt", "attempt >= 1", min_value=1),
        _between("run_index_non_negative", "run_index", "run_index >= 0", min_value=0),
        _in_set("status_in_set", "status", STATUSES, f"status is one of {', '.join(STATUSES)}"),
        _in_set("error_kind_in_documented_set", "error_kind", ERROR_KINDS,
                f"error_kind is one of {', '.join(ERROR_KINDS)} on error rows", when=_error),
        Check("error_kind_not_null_on_error_rows", ["error_kind"], "error rows carry an error_kind",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="error_kind", row_condition=_error(C))),
        Check("ttft_not_null_on_ok_rows", ["ttft_ms"], "ok rows have a ttft_ms",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="ttft_ms", row_condition=_ok(C))),
        Check("output_tokens_not_null_on_ok_rows", ["output_tokens"], "ok rows have output_tokens",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="output_tokens", row_condition=_ok(C))),
        _between("output_tokens_at_least_1_on_ok_rows", "output_tokens", "output_tokens >= 1 on ok rows",
                 min_value=1, when=_ok),
        _between("ttft_positive_on_ok_rows", "ttft_ms", "ttft_ms > 0 on ok rows", min_value=0, strict_min=True, when=_ok),
        _between("e2e_positive_on_ok_rows", "e2e_ms", "e2e_ms > 0 on ok rows", min_value=0, strict_min=True, when=_ok),
        _between("e2e_non_negative", "e2e_ms", "e2e_ms >= 0 on every row", min_value=0),
        _pair_ge("ttft_not_above_e2e_on_ok_rows", "e2e_ms", "ttft_ms", "ttft_ms <= e2e_ms on ok rows", when=_ok),
        _between("decode_tps_positive_on_ok_rows", "decode_tps", "decode_tps > 0 on ok rows (where reported)",
                 min_value=0, strict_min=True, when=_ok),
        _between("prompt_tokens_non_negative", "prompt_tokens", "prompt_tokens >= 0", min_value=0),
        # the server view is the server's own figure (llama.cpp predicted_per_second): one convention
        Check("decode_tps_is_the_servers_own_rate", ["decode_tps", "server_decode_tps_reported"],
              f"decode_tps within {DECODE_VS_SERVER_TOL_PCT:g} % of the server's own published rate, where it reports one",
              lambda gxe, C: gxe.ExpectColumnValuesToBeBetween(column="_chk_decode_vs_server_pct",
                                                               min_value=-DECODE_VS_SERVER_TOL_PCT,
                                                               max_value=DECODE_VS_SERVER_TOL_PCT)),
        _in_set("cache_state_in_set", "cache_state", list(CACHE_STATES), f"cache_state is one of {', '.join(CACHE_STATES)}"),
        # a warning, not a failure: the numbers stand, but a reader must know the answers were not answers
        _in_set("answers_sane_on_ok_rows", "answer_check", ["ok"], "ok rows carry a sane answer (not empty, no chat-"
                "template tokens, not an echo of the prompt)", when=_ok, severity="warning"),
    ]
    if multi:
        checks += [
            _in_set("agent_in_set", "agent", AGENTS, f"agent is one of {', '.join(AGENTS)}"),
            _in_set("phase_in_set", "phase", PHASES, f"phase is one of {', '.join(PHASES)}"),
            _in_set("scenario_in_set", "scenario", SCENARIO_NAMES, f"scenario is one of {', '.join(SCENARIO_NAMES)}"),
        ]
    return checks


_RUN_KEYS = ["tr_id", "run_id", "attempt", "cell_hash", "model", "provider", "backend", "num_gpu", "num_ctx",
             "temperature", "run_index", "started_at", "n_requests", "n_warmup", "n_ok", "n_errors", "valid"]


def _run_table_checks(schema: pa.Schema, keys: list[str], frame: pd.DataFrame) -> list[Check]:
    """What every run table (single- and multi-agent) must hold: its types, non-null keys, one row
    per run_id, attempts from 1, run indices from 0."""
    return _dtype_checks(schema, frame, set(keys)) + _not_null(keys, frame) + [
        Check("run_id_unique", ["run_id"], "run_id is unique",
              lambda gxe, C: gxe.ExpectColumnValuesToBeUnique(column="run_id")),
        _between("attempt_at_least_1", "attempt", "attempt >= 1", min_value=1),
        _between("run_index_non_negative", "run_index", "run_index >= 0", min_value=0),
    ]


def run_checks(frame: pd.DataFrame) -> list[Check]:
    checks = _run_table_checks(store.RUN_SCHEMA, _RUN_KEYS, frame)
    checks += [
        _pair_eq("ok_plus_errors_equals_requests", "n_requests", "_chk_ok_plus_errors",
                 "n_ok + n_errors == n_requests", columns=["n_requests", "n_ok", "n_errors"]),
        _pair_eq("run_has_its_requests", "n_requests", "_chk_request_rows",
                 "n_requests == the run's measured rows in the requests table", columns=["n_requests", "run_id"]),
        _pair_ge("valid_runs_have_min_ok", "n_ok", "min_ok_requests", "n_ok >= min_ok_requests on valid runs",
                 when=_valid),
        Check("invalid_runs_have_reason", ["invalid_reason"], "invalid runs carry an invalid_reason",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="invalid_reason", row_condition=_invalid(C))),
        _between("decode_tps_mean_positive_on_valid_runs", "decode_tps_mean", "decode_tps_mean > 0 on valid runs",
                 min_value=0, strict_min=True, when=_valid),
        *[_between(f"ttft_{st}_p50_positive_on_valid_runs", f"ttft_{st}_ms_p50",
                   f"ttft_{st}_ms_p50 > 0 on valid runs (where measured)", min_value=0, strict_min=True, when=_valid)
          for st in CACHE_STATES],
        _between("wall_s_non_negative", "wall_s", "wall_s >= 0", min_value=0),
    ]
    return checks


_MA_RUN_KEYS = ["tr_id", "run_id", "attempt", "cell_hash", "model", "scenario", "provider", "backend",
                "run_index", "started_at", "n_agents", "n_requests", "n_errors", "valid"]


def ma_run_checks(frame: pd.DataFrame) -> list[Check]:
    checks = _run_table_checks(store.MA_RUN_SCHEMA, _MA_RUN_KEYS, frame)
    checks += [
        _in_set("scenario_in_set", "scenario", SCENARIO_NAMES, f"scenario is one of {', '.join(SCENARIO_NAMES)}"),
        _between("n_agents_at_least_1", "n_agents", "n_agents >= 1", min_value=1),
        _pair_eq("run_has_its_requests", "n_requests", "_chk_request_rows",
                 "n_requests == the run's measured rows in the ma_requests table", columns=["n_requests", "run_id"]),
        Check("speedup_not_null_on_valid_runs", ["speedup"], "valid runs have a speedup",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="speedup", row_condition=_valid(C))),
        _between("speedup_positive_on_valid_runs", "speedup", "speedup > 0 on valid runs", min_value=0,
                 strict_min=True, when=_valid),
        _between("concurrent_wall_positive_on_valid_runs", "concurrent_wall_s", "concurrent_wall_s > 0 on valid runs",
                 min_value=0, strict_min=True, when=_valid),
        _between("sequential_wall_positive_on_valid_runs", "sequential_wall_s", "sequential_wall_s > 0 on valid runs",
                 min_value=0, strict_min=True, when=_valid),
        Check("speedup_equals_sequential_over_concurrent", ["speedup", "sequential_wall_s", "concurrent_wall_s"],
              f"speedup == sequential_wall_s / concurrent_wall_s (relative tolerance {SPEEDUP_REL_TOL:g})",
              lambda gxe, C: gxe.ExpectColumnValuesToBeBetween(column="_chk_speedup_rel_error",
                                                               min_value=-SPEEDUP_REL_TOL, max_value=SPEEDUP_REL_TOL)),
        Check("efficiency_equals_speedup_over_n_agents", ["efficiency_pct", "speedup", "n_agents"],
              f"efficiency_pct == speedup / n_agents x 100 (tolerance {EFFICIENCY_TOL_PCT:g} points)",
              lambda gxe, C: gxe.ExpectColumnValuesToBeBetween(column="_chk_efficiency_error_pct",
                                                               min_value=-EFFICIENCY_TOL_PCT, max_value=EFFICIENCY_TOL_PCT)),
        Check("invalid_runs_have_reason", ["invalid_reason"], "invalid runs carry an invalid_reason",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="invalid_reason", row_condition=_invalid(C))),
    ]
    for role in AGENTS:
        col = f"{role}_concurrent_decode_tps"
        checks.append(_between(f"{role}_concurrent_decode_tps_positive_on_valid_runs", col,
                               f"{col} > 0 on valid runs (where reported)", min_value=0, strict_min=True, when=_valid))
        col = f"{role}_concurrent_ttft_ms"
        checks.append(_between(f"{role}_concurrent_ttft_positive_on_valid_runs", col, f"{col} > 0 on valid runs",
                               min_value=0, strict_min=True, when=_valid))
    return checks


def count_checks() -> list[Check]:
    return [
        Check("configs_are_expected", ["expected"], "every config in the data is in expected_runs",
              lambda gxe, C: gxe.ExpectColumnValuesToNotBeNull(column="expected"), severity="warning"),
        _pair_ge("expected_runs_per_config", "n_runs", "expected",
                 "runs (distinct run_index, latest attempt) >= expected", columns=["n_runs", "expected"]),
        _pair_ge("valid_runs_per_config", "n_valid", "expected",
                 "valid latest-attempt runs >= expected", severity="warning", columns=["n_valid", "expected"]),
    ]


def report_checks() -> list[Check]:
    return [
        _in_set("report_file_exists", "file_exists", [True], "the report file exists"),
        _in_set("report_sections_present", "found", [True], "every required section heading is present"),
        _between("report_sections_non_empty", "body_chars", "each section has content under its heading",
                 min_value=1, when=lambda C: C("found") == True),  # noqa: E712
        _in_set("report_result_tables_present", "table_ok", [True],
                "results sections hold a table when there are runs"),
    ]


def tr_checks() -> list[Check]:
    return [Check("tr_has_finished_runs", ["run_id"], "at least one finished run (runs or ma_runs)",
                  lambda gxe, C: gxe.ExpectTableRowCountToBeBetween(min_value=1))]


# --- derived frames -----------------------------------------------------------------------------


def _request_rows_per_run(requests: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    if runs.empty:
        return pd.Series([], dtype="float64", index=runs.index)
    if requests.empty:
        return pd.Series(0.0, index=runs.index)
    measured = requests[~requests["is_warmup"].astype(bool)]
    counts = measured.groupby("run_id").size()
    return runs["run_id"].map(counts).fillna(0).astype("float64")


def _counted_as(runs: pd.DataFrame, own: pd.Series) -> pd.Series:
    """The config a single-agent run counts for: an OOM fallback run (fallback_from = the label of the
    cell it replaces, gpu<g>_ctx<c>_temp<t>) counts for that cell, whose expected runs it stands in for."""
    if "fallback_from" not in runs.columns:
        return own
    out = own.copy()
    for i, (model, label) in enumerate(zip(runs["model"], runs["fallback_from"])):
        parsed = parse_config_label(label)
        if parsed:
            out.iloc[i] = single_key(model, *parsed)
    return out


def count_frame(runs: pd.DataFrame, kind: str, expected: dict[str, int]) -> pd.DataFrame:
    """One row per config: n_runs (distinct run_index, latest attempt, any validity), n_valid,
    expected (null when the config is not in expected_runs), run indexes present and missing, and the
    configs actually measured (an OOM fallback run counts for the cell it replaces)."""
    config = MULTI_CONFIG if kind == "multi" else SINGLE_CONFIG
    latest = latest_attempts(runs, config)[0]
    rows: dict[str, dict] = {}
    if not latest.empty:
        own = _config_column(latest, kind)
        latest = latest.assign(_own=own, _config=_counted_as(latest, own) if kind == "single" else own)
        for key, g in latest.groupby("_config", sort=True):
            rows[key] = {"config": key, "model": g["model"].iloc[0],
                         "n_runs": int(g["run_index"].nunique()),
                         "n_valid": int(g[g["valid"].astype(bool)]["run_index"].nunique()),
                         "run_indexes": sorted(int(i) for i in g["run_index"].unique()),
                         "measured_as": sorted(set(g["_own"]))}
    for key, n in expected.items():
        if is_multi_key(key) != (kind == "multi"):
            continue
        row = rows.setdefault(key, {"config": key, "model": key.split("|", 1)[0] if kind == "single" else key.rsplit("|", 1)[0],
                                    "n_runs": 0, "n_valid": 0, "run_indexes": [], "measured_as": []})
        row["expected"] = int(n)
    out = []
    for row in rows.values():
        exp = row.get("expected")
        row["expected"] = float(exp) if exp is not None else float("nan")
        row["missing_run_indexes"] = sorted(set(range(int(exp))) - set(row["run_indexes"])) if exp is not None else []
        out.append(row)
    cols = ["config", "model", "n_runs", "n_valid", "expected", "run_indexes", "missing_run_indexes", "measured_as"]
    frame = pd.DataFrame(out, columns=cols)
    return frame.astype({"n_runs": "float64", "n_valid": "float64", "expected": "float64"})


def _sections(text: str) -> list[tuple[int, str, int]]:
    """(level, heading line, index) of every Markdown heading outside code fences."""
    out, fenced = [], False
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+\S", line)
        if m and not fenced:
            out.append((len(m.group(1)), line.rstrip(), i))
    return out


def report_frame(path: Path, single_runs: bool, multi_runs: bool) -> pd.DataFrame:
    """One row per required heading: found, characters of content up to the next heading of the same
    or a higher level (sub-sections count), and whether its own text (before any sub-heading) holds a
    Markdown table."""
    required = ["# <title>", *REPORT_SECTIONS] + (REPORT_MULTI_SECTIONS if multi_runs else [])
    exists = path.is_file()
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if exists else []
    heads = _sections("\n".join(lines))
    rows = []
    for want in required:
        level = len(want.split(" ", 1)[0])
        match = next((h for h in heads if h[0] == level and (want == "# <title>" or h[1] == want)), None)
        body_chars, has_table = 0, False
        if match:
            start = match[2] + 1
            end = next((h[2] for h in heads if h[2] > match[2] and h[0] <= level), len(lines))
            body = [ln for ln in lines[start:end] if not re.match(r"^#{1,6}\s", ln)]
            body_chars = sum(len(ln.strip()) for ln in body)
            own_end = next((h[2] for h in heads if h[2] > match[2]), len(lines))  # before any sub-heading
            has_table = any(ln.lstrip().startswith("|") for ln in lines[start:own_end])
        needs_table = want in REPORT_TABLE_SECTIONS and (multi_runs if want in REPORT_MULTI_SECTIONS else single_runs)
        rows.append({"heading": want, "file_exists": exists, "found": match is not None,
                     "body_chars": float(body_chars), "has_table": has_table, "needs_table": needs_table,
                     "table_ok": has_table or not needs_table or match is None, "path": str(path)})
    return pd.DataFrame(rows)


# --- running the suites ---------------------------------------------------------------------------


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # noqa: PLC0415 (seconds to import: only when validating)

    # this GX module pins its logger to INFO and announces its temporary docs folder on every
    # context: noise in the CLI and the flow logs
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    return gx


def make_context():
    """An ephemeral GX context with progress bars off (reuse it across calls: validate_tr(context=...))."""
    gx = _gx()
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
    configs = sorted({str(e["config"]) for e in examples if e.get("config")})
    if tc.table in ("run_counts", "ma_run_counts"):
        detail = "; ".join(
            f"config {e['config']}: {int(e['n_runs'] if check.name != 'valid_runs_per_config' else e['n_valid'])} "
            f"{'valid ' if check.name == 'valid_runs_per_config' else ''}run(s) of "
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
    cfg = f" in config(s) {', '.join(configs)}" if configs else ""
    runs = sorted({str(e["run_id"]) for e in examples if e.get("run_id")})
    run_txt = f" (e.g. run {runs[0]})" if runs else ""
    return f"{where}: {check.name} failed on {unexpected_count}{of} row(s){cfg}{run_txt}: expected {check.what}"


def _run_table(datasource, tc: TableCheck) -> list[ExpectationOutcome]:
    gx = _gx()
    import great_expectations.expectations as gxe  # noqa: PLC0415
    from great_expectations.expectations.row_conditions import Column as C  # noqa: PLC0415

    by_name: dict[str, Check] = {}
    expectations = []
    for check in tc.checks:
        if check.name in by_name:
            raise ValueError(f"duplicate expectation name {check.name!r} on table {tc.table}")
        by_name[check.name] = check
        exp = check.build(gxe, C)
        exp.meta = {"name": check.name, "table": tc.table}
        expectations.append(exp)
    # given at construction: add_expectation() compares each new one with all before it (quadratic)
    suite = gx.ExpectationSuite(name=f"trbench.{tc.table}", expectations=expectations)
    asset = datasource.add_dataframe_asset(f"{tc.table}.{uuid.uuid4().hex[:8]}")  # a table may come in parts
    batch = asset.add_batch_definition_whole_dataframe(f"{tc.table}.all").get_batch(
        batch_parameters={"dataframe": tc.frame})
    validation = batch.validate(suite, result_format="COMPLETE")
    outcomes: dict[str, ExpectationOutcome] = {}
    for er in validation.results:
        cfg = er.expectation_config
        check = by_name[cfg.meta["name"]]
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


def _decode_vs_server_pct(requests: pd.DataFrame) -> pd.Series:
    """decode_tps against the server's own published rate, in %, where the server reports one."""
    reported = requests["server_decode_tps_reported"].astype("float64")
    return ((requests["decode_tps"].astype("float64") / reported - 1.0) * 100.0).replace([np.inf, -np.inf], np.nan)


def _split(checks: list[Check]) -> tuple[list[Check], list[Check]]:
    """(schema checks: columns_present and type_of_*, row checks)."""
    schema = [c for c in checks if c.name == "columns_present" or c.name.startswith("type_of_")]
    return schema, [c for c in checks if c not in schema]


# besides the columns its checks name: what a table's rows are matched and counted by
_ROW_EXTRA = ["run_id", "model", "status", "valid", "is_warmup", "request_index", "run_index", "attempt",
              "fallback_from", "scenario", "agent", "phase", *SINGLE_CONFIG]


def _dtype_frame(schema: pa.Schema, projected: pa.Table, head: pa.Table) -> pd.DataFrame:
    """Two rows holding, per column, the pandas dtype of the whole column, for the schema checks.

    pyarrow gives pandas a dtype from the column's arrow type and, for integers and booleans only,
    from whether the column holds a null (then float64 / object). So each projected column (all
    integer and boolean ones among them) gives its first value and then a null where it has one
    (else its first value again); every other column (strings, floats, timestamps, lists, whose
    dtype nulls do not change) gives the first row's value twice."""
    columns = {}
    for f in schema:
        if f.name in projected.column_names:
            col = projected.column(f.name)
            second = pc.index(pc.is_null(col), True).as_py() if col.null_count else 0
            columns[f.name] = col.take([0, second])
        else:
            columns[f.name] = head.column(f.name).take([0, 0])
    return pa.table(columns).to_pandas()


def _read_table(root: Path, table: str, checks: Callable[[pd.DataFrame], list[Check]],
                categorical: bool) -> tuple[list[Check], pd.DataFrame, list[Check], pd.DataFrame]:
    """(schema checks, dtype frame, row checks, row frame) of one table, reading only the columns the
    row checks need (and the integer and boolean ones, whose dtype depends on their nulls).

    The schema checks see the dtypes of the whole table (_dtype_frame); the row checks see every row
    of the columns they name. categorical: strings as pandas categories in the row frame (a million
    request rows are filtered by status for each row condition: codes are cheap to take)."""
    schema = store.table_schema(table)
    schema_checks, row_checks = _split(checks(schema.empty_table().to_pandas()))
    named = {c for check in row_checks for c in check.columns} | set(_ROW_EXTRA)
    row_columns = [f.name for f in schema if f.name in named]
    typed = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)]
    projected = store.read_arrow(root, table, list(dict.fromkeys(row_columns + typed)))
    if projected.num_rows == 0:
        dtypes = schema.empty_table().to_pandas()  # every column, no rows
    else:
        rest = [f.name for f in schema if f.name not in projected.column_names]
        dtypes = _dtype_frame(schema, projected, store.read_arrow(root, table, rest, limit=1))
    rows = projected.select(row_columns)
    if categorical:
        rows = pa.table({c: rows.column(c).dictionary_encode() if pa.types.is_string(rows.schema.field(c).type)
                         else rows.column(c) for c in row_columns})
    return schema_checks, dtypes, row_checks, rows.to_pandas()


def _prepare(root: Path, expected_runs: dict[str, int] | None, report_path: Path | None) -> list[TableCheck]:
    req_schema, request_dtypes, req_rows, requests = _read_table(
        root, "requests", lambda f: request_checks(f, multi=False), categorical=True)
    ma_req_schema, ma_request_dtypes, ma_req_rows, ma_requests = _read_table(
        root, "ma_requests", lambda f: request_checks(f, multi=True), categorical=True)
    run_schema, run_dtypes, run_rows, runs = _read_table(root, "runs", run_checks, categorical=False)
    ma_run_schema, ma_run_dtypes, ma_run_rows, ma_runs = _read_table(root, "ma_runs", ma_run_checks, categorical=False)

    requests = requests.assign(config=_config_column(requests, "single").astype("category"),
                               _chk_decode_vs_server_pct=_decode_vs_server_pct(requests))
    ma_requests = ma_requests.assign(config=_config_column(ma_requests, "multi").astype("category"),
                                     _chk_decode_vs_server_pct=_decode_vs_server_pct(ma_requests))
    runs = runs.assign(config=_config_column(runs, "single"),
                       _chk_ok_plus_errors=(runs["n_ok"].astype("float64") + runs["n_errors"].astype("float64")),
                       _chk_request_rows=_request_rows_per_run(requests, runs))
    ma_runs = ma_runs.assign(config=_config_column(ma_runs, "multi"),
                             _chk_request_rows=_request_rows_per_run(ma_requests, ma_runs))
    n_agents = ma_runs["n_agents"].astype("float64")
    speedup = ma_runs["speedup"].astype("float64")
    ma_runs["_chk_efficiency_error_pct"] = ma_runs["efficiency_pct"].astype("float64") - speedup / n_agents * 100.0
    ratio = ma_runs["sequential_wall_s"].astype("float64") / ma_runs["concurrent_wall_s"].astype("float64")
    ma_runs["_chk_speedup_rel_error"] = (speedup / ratio - 1.0).replace([np.inf, -np.inf], np.nan)

    req_examples = ["run_id", "model", "config", "request_index", "status"]
    run_examples = ["run_id", "model", "config", "valid"]
    # each table's schema checks on its dtype frame, then its row checks on the rows (see _read_table)
    tables = [
        TableCheck("requests", request_dtypes, req_schema, "none", []),
        TableCheck("requests", requests, req_rows, "single", req_examples),
        TableCheck("runs", run_dtypes, run_schema, "none", []),
        TableCheck("runs", runs, run_rows, "single", run_examples),
        TableCheck("ma_requests", ma_request_dtypes, ma_req_schema, "none", []),
        TableCheck("ma_requests", ma_requests, ma_req_rows, "multi", [*req_examples, "agent", "phase"]),
        TableCheck("ma_runs", ma_run_dtypes, ma_run_schema, "none", []),
        TableCheck("ma_runs", ma_runs, ma_run_rows, "multi", run_examples),
    ]
    if expected_runs is not None:
        cols = ["config", "model", "n_runs", "n_valid", "expected", "run_indexes", "missing_run_indexes", "measured_as"]
        tables.append(TableCheck("run_counts", count_frame(runs, "single", expected_runs), count_checks(), "single", cols))
        tables.append(TableCheck("ma_run_counts", count_frame(ma_runs, "multi", expected_runs), count_checks(), "multi", cols))
    if report_path is not None:
        tables.append(TableCheck("report", report_frame(Path(report_path), not runs.empty, not ma_runs.empty),
                                 report_checks(), "none", ["heading", "found", "body_chars", "has_table"]))
    ledger = pd.DataFrame({"run_id": pd.concat([runs["run_id"], ma_runs["run_id"]], ignore_index=True).astype("str")})
    tables.append(TableCheck("tr", ledger, tr_checks(), "none", []))
    return tables


def validate_tr(tr_root: Path, expected_runs: dict[str, int] | None = None, report_path: Path | None = None,
                *, context=None) -> ValidationResult:
    """Validate every table of one TR. expected_runs: config key -> expected run count (see the module
    doc and expected_runs_for; None skips the count checks); report_path: the report Markdown to check
    (None skips it); context: a GX context to reuse (default: a fresh ephemeral one)."""
    t0 = time.perf_counter()
    root = Path(tr_root)
    gx = _gx()
    ctx = context if context is not None else make_context()
    tables = _prepare(root, expected_runs, report_path)
    name = f"trbench_{uuid.uuid4().hex[:12]}"
    datasource = ctx.data_sources.add_pandas(name)
    try:
        results = [outcome for tc in tables for outcome in _run_table(datasource, tc)]
    finally:
        try:
            ctx.data_sources.delete(name)
        except Exception:  # noqa: BLE001 (cleanup of an ephemeral context only)
            pass
    success = all(r.success for r in results if r.severity == "error")
    return ValidationResult(tr_root=str(root), success=success, gx_version=str(gx.__version__),
                            elapsed_s=round(time.perf_counter() - t0, 3), results=results)


def write_validation_json(result: ValidationResult, path: Path) -> Path:
    """The whole result as JSON, written atomically."""
    path = Path(path)
    store.write_json_atomic(path, result.model_dump(mode="json"))
    return path


def summary_rows(result: ValidationResult, failed_only: bool = False) -> list[dict]:
    """Rows for a Prefect table artifact: failures first, then warnings, then passes."""
    order = {("error", False): 0, ("warning", False): 1}
    rows = sorted(result.results, key=lambda r: order.get((r.severity, r.success), 2))
    return [
        {"table": r.table, "expectation": r.expectation,
         "result": "pass" if r.success else ("FAIL" if r.severity == "error" else "warn"),
         "columns": ", ".join(r.columns), "unexpected": r.unexpected_count, "message": r.message}
        for r in rows if not (failed_only and r.success)
    ]
