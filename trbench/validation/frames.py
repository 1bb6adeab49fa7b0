"""What the validation's checks run on: each table read as a projection (the columns its checks
name, plus a two-row dtype frame for its schema checks), the config keys, and the derived frames
(run counts per config, the report's section headings)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trbench.data import store
from trbench.data.cells import DEFAULT_HARNESS, latest_attempts, multi_key, parse_label_settings, single_key, split_harness, with_harness
from trbench.validation.checks import (
    MULTI_CONFIG, REPORT_TABLE_SECTIONS, SCENARIO_NAMES, SINGLE_CONFIG, Check, report_required_sections)


# --- config keys -------------------------------------------------------------------------------


def is_multi_key(key: str) -> bool:
    return split_harness(key)[0].rsplit("|", 1)[-1] in SCENARIO_NAMES


def _key_model(key: str, kind: str) -> str:
    bare = split_harness(key)[0]
    return bare.split("|", 1)[0] if kind == "single" else bare.rsplit("|", 1)[0]


def expected_runs_for(spec) -> dict[str, int]:
    """The expected run count per config key of a MatrixSpec: spec.runs per single-agent cell
    (when single_agent is on), multi_agent.runs per model x scenario; each once per harness."""
    out: dict[str, int] = {}
    for h in spec.harness:
        if spec.single_agent:
            for c in spec.cells():
                out[single_key(c.model, c.num_gpu, c.num_ctx, c.temperature, h, c.settings_text)] = spec.runs
        if spec.multi_agent:
            for m in spec.multi_agent_models:
                for s in spec.multi_agent.scenarios:
                    out[multi_key(m, s, h)] = spec.multi_agent.runs
    return out


def config_column(frame: pd.DataFrame, kind: str) -> pd.Series:
    """Each row's config key, built once per distinct config (a million rows hold a few dozen)."""
    if frame.empty:
        return pd.Series([], dtype="str", index=frame.index)
    columns, key = (MULTI_CONFIG, multi_key) if kind == "multi" else (SINGLE_CONFIG, single_key)
    frame = with_harness(frame)
    group = frame.groupby(columns, dropna=False, sort=False).ngroup().to_numpy()
    _, first = np.unique(group, return_index=True)  # the first row of each group, in group order
    keys = np.array([key(*(frame[c].iloc[i] for c in columns)) for i in first], dtype=object)
    return pd.Series(keys[group], index=frame.index, dtype="str")


# --- derived frames -----------------------------------------------------------------------------


def request_rows_per_run(requests: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
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
    harnesses = runs["harness"] if "harness" in runs.columns else [DEFAULT_HARNESS] * len(runs)
    for i, (model, label, harness) in enumerate(zip(runs["model"], runs["fallback_from"], harnesses)):
        parsed = parse_label_settings(label)
        if parsed:
            g, c, t, settings = parsed
            out.iloc[i] = single_key(model, g, c, t, harness, settings)
    return out


def count_frame(runs: pd.DataFrame, kind: str, expected: dict[str, int]) -> pd.DataFrame:
    """One row per config: n_runs (distinct run_index, latest attempt, any validity), n_valid,
    expected (null when the config is not in expected_runs), run indexes present and missing, and the
    configs actually measured (an OOM fallback run counts for the cell it replaces)."""
    config = MULTI_CONFIG if kind == "multi" else SINGLE_CONFIG
    latest = latest_attempts(runs, config)[0]
    rows: dict[str, dict] = {}
    if not latest.empty:
        own = config_column(latest, kind)
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
        row = rows.setdefault(key, {"config": key, "model": _key_model(key, kind),
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


def report_frame(path: Path, present: set[str], doc: Literal["report", "appendix"] = "report") -> pd.DataFrame:
    """One row per heading a report of these workloads (present: single, multi, ...) must carry: found,
    characters of content up to the next heading of the same or a higher level (sub-sections count),
    and whether its own text (before any sub-heading) holds a Markdown table (needed in a table
    section, which is there only when its workload ran)."""
    required = ["# <title>", *report_required_sections(present, doc)]
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
        needs_table = want in REPORT_TABLE_SECTIONS
        rows.append({"heading": want, "file_exists": exists, "found": match is not None,
                     "body_chars": float(body_chars), "has_table": has_table, "needs_table": needs_table,
                     "table_ok": has_table or not needs_table or match is None, "path": str(path)})
    return pd.DataFrame(rows)


# --- reading the tables ---------------------------------------------------------------------------


def _split(checks: list[Check]) -> tuple[list[Check], list[Check]]:
    """(schema checks: columns_present and column_dtypes, row checks)."""
    schema = [c for c in checks if c.name in ("columns_present", "column_dtypes")]
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


def dtype_label(column: pd.Series) -> str:
    """The dtype pandas gave a column, as the schema checks name it: str, int64, float64, bool,
    Timestamp; an object column as the types of its values ("object of bool"), "object" when all null."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "Timestamp"
    if pd.api.types.is_object_dtype(dtype):
        kinds = sorted({type(v).__name__ for v in column.dropna()})
        return f"object of {'/'.join(kinds)}" if kinds else "object"
    return str(dtype)


def dtype_rows(dtypes: pd.DataFrame) -> pd.DataFrame:
    """One row per column of a dtype frame: its name and its dtype label."""
    return pd.DataFrame({"column": list(dtypes.columns), "dtype": [dtype_label(dtypes[c]) for c in dtypes.columns]})


def read_table(root: Path, table: str, checks: Callable[[pd.DataFrame], list[Check]],
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
    return schema_checks, dtype_rows(dtypes), row_checks, rows.to_pandas()
