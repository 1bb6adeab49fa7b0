"""The failure log: every failed request or run of a TR run, with its config, error, the GPU
memory at the time (when a GPU is visible) and the fallback decision taken for its config.

Derived from the run files and the fallback decisions, so it is rewritten whole at the end of
each flow run; the decisions themselves are kept, one file per flow run, under fallbacks/.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from trbench import storage

FALLBACK_SCHEMA = pa.schema([
    ("model", pa.string()), ("from_config", pa.string()), ("to_config", pa.string()),
    ("decision", pa.string()), ("oom_runs", pa.list_(pa.string())), ("decided_at", pa.timestamp("us", tz="UTC")),
])

FAILURE_SCHEMA = pa.schema([
    ("tr_id", pa.string()), ("table", pa.string()), ("scope", pa.string()), ("run_id", pa.string()),
    ("attempt", pa.int32()), ("model", pa.string()), ("config", pa.string()), ("num_gpu", pa.int32()),
    ("num_ctx", pa.int32()), ("temperature", pa.float64()), ("is_warmup", pa.bool_()),
    ("error_kind", pa.string()), ("error_message", pa.string()), ("gpu_memory_at_error", pa.string()),
    ("fallback_decision", pa.string()),
])


def record_fallbacks(root: Path, decisions: list[dict]) -> None:
    if not decisions:
        return
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{**d, "decided_at": now} for d in decisions]
    name = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}.parquet"
    storage.write_table_atomic(root / "fallbacks" / name, pa.Table.from_pylist(rows, schema=FALLBACK_SCHEMA))


def read_fallbacks(root: Path) -> pd.DataFrame:
    files = sorted((root / "fallbacks").glob("*.parquet"))
    if not files:
        return FALLBACK_SCHEMA.empty_table().to_pandas()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).sort_values("decided_at", kind="stable")
    # a resumed TR run takes the decisions of the runs it found finished again: keep the first
    return frame.drop_duplicates(["model", "from_config", "to_config", "decision"]).reset_index(drop=True)


def _label(row) -> str:
    return f"gpu{int(row.num_gpu)}_ctx{int(row.num_ctx)}_temp{float(row.temperature):g}"


def _config(row) -> str:
    if getattr(row, "scenario", None):
        return str(row.scenario)
    if pd.isna(row.num_gpu) or pd.isna(row.num_ctx) or pd.isna(row.temperature):
        return "server defaults"
    return _label(row)


def _clean(row: dict) -> dict:
    """pandas' missing values (NaN, NA) as None, so that pyarrow sees nulls."""
    return {k: (None if v is not None and not isinstance(v, (list, str)) and pd.isna(v) else v) for k, v in row.items()}


def build_failure_log(root: Path) -> list[dict]:
    decisions = read_fallbacks(root)
    by_config = {(r.model, r.from_config): r.decision for r in decisions.itertuples()}
    rows = []
    for table, frame in (("requests", storage.read_requests(root)), ("ma_requests", storage.read_ma_requests(root))):
        for r in frame[frame["status"] != "ok"].itertuples():
            config = _config(r)
            rows.append({"tr_id": r.tr_id, "table": table, "scope": "request", "run_id": r.run_id,
                         "attempt": r.attempt, "model": r.model, "config": config, "num_gpu": r.num_gpu,
                         "num_ctx": r.num_ctx, "temperature": r.temperature, "is_warmup": bool(r.is_warmup),
                         "error_kind": r.error_kind, "error_message": r.error_message,
                         "gpu_memory_at_error": r.gpu_memory_at_error,
                         "fallback_decision": by_config.get((r.model, config))})
    runs = storage.read_runs(root)
    for r in runs[runs["invalid_reason"].fillna("").str.startswith("instance failed")].itertuples():
        config = _config(r)
        rows.append({"tr_id": r.tr_id, "table": "runs", "scope": "run", "run_id": r.run_id, "attempt": r.attempt,
                     "model": r.model, "config": config, "num_gpu": r.num_gpu, "num_ctx": r.num_ctx,
                     "temperature": r.temperature, "is_warmup": False, "error_kind": r.error_kinds,
                     "error_message": r.invalid_reason, "gpu_memory_at_error": r.gpu_memory_at_error,
                     "fallback_decision": by_config.get((r.model, config))})
    return [_clean(r) for r in rows]


def write_failure_log(root: Path) -> Path:
    path = root / "failures" / "failures.parquet"
    storage.write_table_atomic(path, pa.Table.from_pylist(build_failure_log(root), schema=FAILURE_SCHEMA))
    return path


def read_failure_log(root: Path) -> pd.DataFrame:
    path = root / "failures" / "failures.parquet"
    return pd.read_parquet(path) if path.is_file() else FAILURE_SCHEMA.empty_table().to_pandas()
