"""The validation's checks as plain data (Check: a name, the columns, what it says, and how to build
its GX expectation; TableCheck: a frame and its checks), one suite per table, and the constants they
check against. Nothing here imports Great Expectations: the expectations are built when run (gx.py)."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from trbench.backends.base import ErrorKind
from trbench.data import store
from trbench.data.cells import MULTI_CONFIG_COLUMNS, SINGLE_CONFIG_COLUMNS
from trbench.data.rows import CACHE_STATES, NOT_RUN_CODES
from trbench.report.outline import SECTIONS, of

ERROR_KINDS: tuple[str, ...] = typing.get_args(ErrorKind)
STATUSES = ("ok", "error")
DECODE_VS_SERVER_TOL_PCT = 0.1  # rounding only: the server view must be the server's own figure
AGENTS = ("collector", "insight")
PHASES = ("warmup", "concurrent", "solo")
SCENARIO_NAMES = ("baseline_vs_chimera", "chimera_homo", "chimera_hetero")

EFFICIENCY_TOL_PCT = 0.01  # |efficiency_pct - speedup / n_agents x 100|, percentage points
SPEEDUP_REL_TOL = 1e-6  # |speedup / (sequential_wall_s / concurrent_wall_s) - 1|
MAX_EXAMPLES = 5

SINGLE_CONFIG, MULTI_CONFIG = SINGLE_CONFIG_COLUMNS, MULTI_CONFIG_COLUMNS

# The report's section headings, from their one home (trbench.report.outline, which the templates
# write them from): those in every publishable report, in report order; the others only where their
# workload ran (report_required_sections), the appendix's in the appendix.
REPORT_SECTIONS = [s.heading for s in of("report") if not s.needs]
REPORT_TABLE_SECTIONS = {s.heading for s in SECTIONS.values() if s.table}  # a table when there are runs


def report_required_sections(present: set[str], doc: Literal["report", "appendix"] = "report") -> list[str]:
    """The headings one document (the publishable report or its appendix) of a TR holding `present`
    (workloads: single, multi, ...) must carry, in order."""
    return [s.heading for s in of(doc) if s.shown(present)]

Severity = Literal["error", "warning"]


# --- checks: plain data, GX objects built from them -------------------------------------------


@dataclass
class Check:
    """One expectation: `build(gxe, C)` returns the GX expectation (gxe = great_expectations.expectations,
    C = its row-condition Column); `what` is the rule in words, for the message."""

    name: str
    columns: list[str]
    what: str
    build: Callable[..., Any]  # called as build(gxe, C); its lambdas bind loop values as defaulted parameters
    severity: Severity = "error"
    explain: Callable[[dict[str, Any]], str] | None = None  # a failing row in words, for the message


@dataclass
class TableCheck:
    table: str
    frame: pd.DataFrame
    checks: list[Check]
    kind: str = "single"  # how rows name their config: single / multi / none
    example_columns: list[str] = field(default_factory=list)


def allowed_dtypes(field: pa.Field, not_null: bool) -> tuple[str, ...]:
    """The dtype labels (dtype_label) pandas 3 may give a column of this arrow type: a nullable
    integer column holding a null comes back as float64, a nullable boolean one as objects (of bool,
    or of nothing when every value is null: a multi-agent run's contention where no run measured it);
    a string column may come back as objects of str; a list column as objects (arrays)."""
    t = field.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ("str", "object of str")
    if pa.types.is_integer(t):
        return (str(t),) if not_null else (str(t), "float64")
    if pa.types.is_floating(t):
        return ("float64",)
    if pa.types.is_boolean(t):
        return ("bool",) if not_null else ("bool", "object of bool", "object")
    if pa.types.is_timestamp(t):
        return ("Timestamp",)
    return ("object", "object of ndarray")


def _dtype_checks(schema: pa.Schema, frame: pd.DataFrame, not_null: set[str]) -> list[Check]:
    """columns_present and column_dtypes, both on the table's dtype frame: one row per column, its
    name and the label of the dtype pandas gives the whole column (see the validate module doc).
    One expectation covers every column's dtype: GX's cost is per expectation, not per row."""
    names = [f.name for f in schema]
    allowed = {f.name: allowed_dtypes(f, f.name in not_null) for f in schema}
    pairs = [(name, label) for name, labels in allowed.items() for label in labels]
    return [
        Check("columns_present", ["column"], f"all {len(names)} schema columns present",
              lambda gxe, C: gxe.ExpectColumnDistinctValuesToContainSet(column="column", value_set=names)),
        Check("column_dtypes", ["column", "dtype"], "each column's dtype is what pandas 3 makes of its arrow type",
              lambda gxe, C: gxe.ExpectColumnPairValuesToBeInSet(column_A="column", column_B="dtype",
                                                                  value_pairs_set=pairs),
              explain=lambda e: f"{e['column']} is {e['dtype']}, expected {' or '.join(allowed[e['column']])}"),
    ]


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


# a run that was never measured says why as a code (rows.NotRun); null on every other run
_NOT_RUN_CHECK = _in_set("not_run_in_set", "not_run", list(NOT_RUN_CODES),
                         f"not_run is one of {', '.join(NOT_RUN_CODES)} (where set)")


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
        _NOT_RUN_CHECK,
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
        _NOT_RUN_CHECK,
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


def decode_vs_server_pct(requests: pd.DataFrame) -> pd.Series:
    """decode_tps against the server's own published rate, in %, where the server reports one."""
    reported = requests["server_decode_tps_reported"].astype("float64")
    return ((requests["decode_tps"].astype("float64") / reported - 1.0) * 100.0).replace([np.inf, -np.inf], np.nan)
