"""Parquet storage: one file per finished run and table, written atomically, read back as datasets.

Layout under <output_dir>/<tr_id>/:
  requests/model_slug=<slug>/<run_id>.parquet   every request of the run, warm-ups included
  runs/model_slug=<slug>/<run_id>.parquet       the run's aggregates; written last, so it is the
                                                ledger: a run is finished once this file exists
  manifest.json                                 the environment (also in each file's metadata)
  report/<tr_id>.md
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

MANIFEST_KEY = b"trbench.manifest"

_KEYS = [
    ("tr_id", pa.string()),
    ("run_id", pa.string()),
    ("attempt", pa.int32()),
    ("cell_hash", pa.string()),
    ("model", pa.string()),
    ("provider", pa.string()),
    ("backend", pa.string()),
    ("instance", pa.string()),
    ("instance_url", pa.string()),
    ("num_gpu", pa.int32()),
    ("num_ctx", pa.int32()),
    ("temperature", pa.float64()),
    ("prompt_cache", pa.string()),
    ("run_index", pa.int32()),
]

REQUEST_SCHEMA = pa.schema(
    _KEYS
    + [
        ("request_index", pa.int32()),
        ("is_warmup", pa.bool_()),
        ("prompt_id", pa.string()),
        ("sent_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("http_status", pa.int32()),
        ("finish_reason", pa.string()),
        ("ttft_ms", pa.float64()),
        ("ttfat_ms", pa.float64()),
        ("e2e_ms", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("decode_tps", pa.float64()),
        ("decode_tps_client", pa.float64()),
        ("prefill_ms", pa.float64()),
        ("load_ms", pa.float64()),
        ("tpot_ms", pa.float64()),
        ("itl_p50_ms", pa.float64()),
        ("itl_p95_ms", pa.float64()),
        ("itl_max_ms", pa.float64()),
        ("n_chunks", pa.int32()),
        # the raw observations every metric above is derived from
        ("server_decode_tokens", pa.int64()),
        ("server_decode_ms", pa.float64()),
        ("server_total_ms", pa.float64()),
        ("chunk_offsets_ms", pa.list_(pa.float64())),
        ("chunk_kinds", pa.list_(pa.string())),
        ("output_text", pa.string()),
        ("reasoning_text", pa.string()),
        ("gpu_memory_at_error", pa.string()),
    ]
)

RUN_SCHEMA = pa.schema(
    _KEYS
    + [
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("wall_s", pa.float64()),
        ("instance_load_ms", pa.float64()),
        ("n_requests", pa.int32()),
        ("n_warmup", pa.int32()),
        ("n_ok", pa.int32()),
        ("n_errors", pa.int32()),
        ("min_ok_requests", pa.int32()),
        ("valid", pa.bool_()),
        ("invalid_reason", pa.string()),
        ("error_kinds", pa.string()),
        ("output_tokens_total", pa.int64()),
        ("cached_tokens_total", pa.int64()),
    ]
    + [
        (f"{m}_{s}", pa.float64())
        for m in ("decode_tps", "decode_tps_client", "ttft_ms", "e2e_ms", "tpot_ms")
        for s in ("mean", "p50", "p95", "p99")
    ]
    + [("decode_tps_cv_pct_within_run", pa.float64()), ("manifest_digest", pa.string()),
       ("gpu_memory_at_error", pa.string()), ("fallback_from", pa.string())]
)


MA_REQUEST_SCHEMA = pa.schema(
    list(REQUEST_SCHEMA)
    + [("scenario", pa.string()), ("agent", pa.string()), ("phase", pa.string()), ("call", pa.string())]
)

_AGENT_FIGURES = [("decode_tps", pa.float64()), ("ttft_ms", pa.float64()), ("wall_s", pa.float64()),
                  ("output_tokens", pa.int64())]
MA_RUN_SCHEMA = pa.schema(
    [
        ("tr_id", pa.string()), ("run_id", pa.string()), ("attempt", pa.int32()), ("cell_hash", pa.string()),
        ("model", pa.string()), ("scenario", pa.string()), ("provider", pa.string()), ("backend", pa.string()),
        ("run_index", pa.int32()), ("started_at", pa.timestamp("us", tz="UTC")), ("phase_order", pa.string()),
        ("n_agents", pa.int32()), ("concurrent_wall_s", pa.float64()), ("sequential_wall_s", pa.float64()),
        ("speedup", pa.float64()), ("efficiency_pct", pa.float64()), ("n_requests", pa.int32()),
        ("n_errors", pa.int32()), ("error_kinds", pa.string()), ("valid", pa.bool_()), ("invalid_reason", pa.string()),
        ("contention", pa.bool_()), ("contention_rule", pa.string()), ("delta_decode_tps", pa.float64()),
        ("delta_ttft_ms", pa.float64()), ("manifest_digest", pa.string()),
    ]
    + [
        field
        for role in ("collector", "insight")
        for field in [(f"{role}_instance", pa.string()), (f"{role}_options", pa.string()), (f"{role}_contended", pa.bool_())]
        + [(f"{role}_{phase}_{name}", t) for phase in ("concurrent", "solo") for name, t in _AGENT_FIGURES]
    ]
)

# kind -> (requests table, runs table, their schemas)
TABLES = {
    "single": ("requests", "runs", REQUEST_SCHEMA, RUN_SCHEMA),
    "multi": ("ma_requests", "ma_runs", MA_REQUEST_SCHEMA, MA_RUN_SCHEMA),
}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def tr_dir(output_dir: str | Path, tr_id: str) -> Path:
    return Path(output_dir) / tr_id


def _run_file(root: Path, table: str, model: str, run_id: str) -> Path:
    return root / table / f"model_slug={slug(model)}" / f"{run_id}.parquet"


def write_table_atomic(path: Path, table: pa.Table) -> None:
    """Write to a hidden temp name in the same folder, fsync, rename: readers see all or nothing.
    The dot prefix keeps pyarrow datasets from ever reading the temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _table(rows: list[dict], schema: pa.Schema, manifest: dict) -> pa.Table:
    meta = {MANIFEST_KEY: json.dumps(manifest, sort_keys=True, default=str).encode()}
    return pa.Table.from_pylist(rows, schema=schema.with_metadata(meta))


def write_run(root: Path, run_row: dict, request_rows: list[dict], manifest: dict, kind: str = "single") -> Path:
    """Persist one finished run: its requests, then its run row (the ledger entry)."""
    requests, runs, request_schema, run_schema = TABLES[kind]
    model, run_id = run_row["model"], run_row["run_id"]
    write_table_atomic(_run_file(root, requests, model, run_id), _table(request_rows, request_schema, manifest))
    run_path = _run_file(root, runs, model, run_id)
    write_table_atomic(run_path, _table([run_row], run_schema, manifest))
    return run_path


def finished_run_ids(root: Path, kind: str = "single") -> set[str]:
    return {p.stem for p in (root / TABLES[kind][1]).glob("model_slug=*/*.parquet")}


def _read(root: Path, table: str, schema: pa.Schema) -> pd.DataFrame:
    folder = root / table
    if not any(folder.glob("model_slug=*/*.parquet")):
        return schema.empty_table().to_pandas()
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    return dataset.to_table().to_pandas()


def read_requests(root: Path) -> pd.DataFrame:
    return _read(root, "requests", REQUEST_SCHEMA)


def read_runs(root: Path) -> pd.DataFrame:
    return _read(root, "runs", RUN_SCHEMA)


def read_ma_requests(root: Path) -> pd.DataFrame:
    return _read(root, "ma_requests", MA_REQUEST_SCHEMA)


def read_ma_runs(root: Path) -> pd.DataFrame:
    return _read(root, "ma_runs", MA_RUN_SCHEMA)


def read_manifest(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(MANIFEST_KEY, b"{}"))


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
