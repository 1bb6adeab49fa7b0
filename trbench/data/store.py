"""Parquet storage: one file per finished run and table, written atomically, read back as datasets.

Layout under <output_dir>/<tr_id>/ (what writes each):
  requests/model_slug=<slug>/<run_id>.parquet   every request of the run, warm-ups included (here)
  telemetry/model_slug=<slug>/<run_id>.parquet  GPU and host samples beside the run (single and
                                                multi-agent runs alike; `kind` tells them apart)
  runs/model_slug=<slug>/<run_id>.parquet       the run's aggregates; written last, so it is the
                                                ledger: a run is finished once this file exists
  ma_requests/, ma_runs/                        the same for multi-agent runs
  manifest.json                                 the environment (also in each file's metadata)
  fallbacks/<time>-<pid>.parquet                OOM fallback decisions, as taken (data/failures.py)
  instance_failures/<time>-<pid>-<n>.parquet    failed instance operations, as they happen (same)
  failures/failures.parquet                     the failure log, rebuilt whole at each flow's end (same)
  flags/flags.parquet                           outlier flags per run (outliers.py)
  validation/validation.json                    the checks' results (validation.py)
  report/<tr_id>.md, report/<tr_id>.html, report/plots/   the report (report.py)
  logs/<instance>.log                           the output of the servers trbench started (engines/)
Every file is written by trbench.data.atomic: all or nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from trbench.data.atomic import write_atomic, write_text_atomic

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
    ("ttft_mode", pa.string()),  # the spec's ttft: cold | cached | both
    ("prompt_style", pa.string()),  # chat | completion (base model)
    ("run_index", pa.int32()),
]

REQUEST_SCHEMA = pa.schema(
    _KEYS
    + [
        ("request_index", pa.int32()),
        ("is_warmup", pa.bool_()),
        ("prompt_id", pa.string()),
        ("cache_target", pa.string()),  # what trbench asked for: cold | cached (null on warm-ups)
        ("cache_state", pa.string()),  # what the server's counts say: cold | partial | cached | unknown
        ("answer_check", pa.string()),  # ok | empty | template_tokens | echo (null on failed requests)
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
        ("server_decode_tps_reported", pa.float64()),  # the server's own decode rate, where it reports one
        ("server_total_ms", pa.float64()),
        ("chunk_offsets_ms", pa.list_(pa.float64())),
        ("chunk_kinds", pa.list_(pa.string())),
        ("output_text", pa.string()),
        ("reasoning_text", pa.string()),
        ("gpu_memory_at_error", pa.string()),
    ]
)

# energy and telemetry columns of both run tables (definitions: metrics.ENERGY_DEFINITIONS)
ENERGY_FIELDS = [
    ("energy_j", pa.float64()), ("energy_method", pa.string()), ("energy_window_s", pa.float64()),
    ("j_per_token", pa.float64()), ("tokens_per_j", pa.float64()), ("tokens_per_dollar", pa.float64()),
    ("cost_basis", pa.string()), ("gpu_power_w_mean", pa.float64()), ("gpu_mem_used_mib_max", pa.float64()),
    ("gpu_util_pct_mean", pa.float64()), ("cpu_pct_mean", pa.float64()), ("server_rss_mib_max", pa.float64()),
    ("telemetry_note", pa.string()),
]

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
        ("answers_flagged", pa.int32()),
    ]
    + [
        (f"{m}_{s}", pa.float64())
        for m in ("decode_tps", "decode_tps_client", "e2e_ms", "tpot_ms")
        for s in ("mean", "p50", "p95", "p99")
    ]
    + [  # TTFT per cache state (metrics.CACHE_STATES): never pooled across states
        field for state in ("cold", "partial", "cached", "unknown")
        for field in [(f"n_{state}", pa.int32()), (f"ttft_{state}_ms_mean", pa.float64()),
                      (f"ttft_{state}_ms_p50", pa.float64())]
    ]
    + [("decode_tps_cv_pct_within_run", pa.float64()), ("manifest_digest", pa.string()),
       ("gpu_memory_at_error", pa.string()), ("fallback_from", pa.string())]
    + ENERGY_FIELDS
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
    + ENERGY_FIELDS
)

# The telemetry table: long ("tidy") by source. Each sample tick is one row per sampled GPU
# (gpu_index set; power_w, energy_mj, util_pct, mem_used_mib, temp_c filled; host columns null)
# plus one host row (gpu_index null; cpu_pct, server_rss_mib, server_cpu_pct filled; GPU columns
# null); the rows of one tick share `sample`. t: wall clock (UTC) of the read; t_rel_s: monotonic
# seconds since the sampler started; phase: idle | warmup | measured (single-agent) or idle |
# warmup | concurrent | solo (multi-agent). Field meanings: trbench/measure/telemetry.py.
TELEMETRY_SCHEMA = pa.schema([
    ("tr_id", pa.string()), ("run_id", pa.string()), ("attempt", pa.int32()), ("model", pa.string()),
    ("kind", pa.string()), ("sample", pa.int32()), ("phase", pa.string()), ("gpu_index", pa.int32()),
    ("gpu_name", pa.string()), ("t", pa.timestamp("us", tz="UTC")), ("t_rel_s", pa.float64()),
    ("power_w", pa.float64()), ("energy_mj", pa.int64()), ("util_pct", pa.float64()), ("mem_used_mib", pa.float64()),
    ("temp_c", pa.float64()), ("cpu_pct", pa.float64()), ("server_rss_mib", pa.float64()),
    ("server_cpu_pct", pa.float64()),
])
TELEMETRY_TABLE = "telemetry"

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
    """One Parquet file, all or nothing (trbench.data.atomic)."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _table(rows: list[dict], schema: pa.Schema, manifest: dict) -> pa.Table:
    meta = {MANIFEST_KEY: json.dumps(manifest, sort_keys=True, default=str).encode()}
    return pa.Table.from_pylist(rows, schema=schema.with_metadata(meta))


def write_run(root: Path, run_row: dict, request_rows: list[dict], manifest: dict, kind: str = "single",
              telemetry_rows: list[dict] | None = None) -> Path:
    """Persist one finished run: its requests, its telemetry (when sampled), then its run row
    (the ledger entry)."""
    requests, runs, request_schema, run_schema = TABLES[kind]
    model, run_id = run_row["model"], run_row["run_id"]
    write_table_atomic(_run_file(root, requests, model, run_id), _table(request_rows, request_schema, manifest))
    if telemetry_rows is not None:
        rows = [{**r, "kind": kind} for r in telemetry_rows]
        write_table_atomic(_run_file(root, TELEMETRY_TABLE, model, run_id), _table(rows, TELEMETRY_SCHEMA, manifest))
    run_path = _run_file(root, runs, model, run_id)
    write_table_atomic(run_path, _table([run_row], run_schema, manifest))
    return run_path


def finished_run_ids(root: Path, kind: str = "single") -> set[str]:
    return {p.stem for p in (root / TABLES[kind][1]).glob("model_slug=*/*.parquet")}


def _read(root: Path, table: str, schema: pa.Schema) -> pd.DataFrame:
    """Every file of a table under today's schema: files written before a column existed read
    back with that column null (without the schema pyarrow would take the first file's)."""
    folder = root / table
    if not any(folder.glob("model_slug=*/*.parquet")):
        return schema.empty_table().to_pandas()
    full = schema.remove_metadata().append(pa.field("model_slug", pa.string()))
    dataset = ds.dataset(folder, format="parquet", partitioning="hive", schema=full)
    return dataset.to_table().to_pandas()


def read_requests(root: Path) -> pd.DataFrame:
    return _read(root, "requests", REQUEST_SCHEMA)


def read_runs(root: Path) -> pd.DataFrame:
    return _read(root, "runs", RUN_SCHEMA)


def read_ma_requests(root: Path) -> pd.DataFrame:
    return _read(root, "ma_requests", MA_REQUEST_SCHEMA)


def read_ma_runs(root: Path) -> pd.DataFrame:
    return _read(root, "ma_runs", MA_RUN_SCHEMA)


def read_telemetry(root: Path) -> pd.DataFrame:
    return _read(root, TELEMETRY_TABLE, TELEMETRY_SCHEMA)


def read_manifest(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(MANIFEST_KEY, b"{}"))


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


# --- projected reads (post-processing at scale: read only the columns a computation needs) ---------


def table_schema(table: str) -> pa.Schema:
    """The storage schema of a table folder name (requests, runs, ma_requests, ma_runs, telemetry)."""
    schemas = {t: s for req, run, rs, us in TABLES.values() for t, s in ((req, rs), (run, us))}
    schemas[TELEMETRY_TABLE] = TELEMETRY_SCHEMA
    return schemas[table]


def read_arrow(root: Path, table: str, columns: list[str] | None = None, filter: object = None,
               limit: int | None = None) -> pa.Table:
    """A table's files as one Arrow table under today's schema (as _read), with only `columns` (all
    when None), only the rows matching `filter` (a pyarrow.dataset expression), and at most `limit`
    rows (the first ones) when given."""
    schema = table_schema(table)
    full = schema.remove_metadata().append(pa.field("model_slug", pa.string()))
    folder = root / table
    if not any(folder.glob("model_slug=*/*.parquet")):
        empty = full.empty_table()
        return empty.select(columns) if columns is not None else empty
    dataset = ds.dataset(folder, format="parquet", partitioning="hive", schema=full)
    if limit is not None:
        return dataset.head(limit, columns=columns, filter=filter)
    return dataset.to_table(columns=columns, filter=filter)


def read_frame(root: Path, table: str, columns: list[str] | None = None, filter: object = None,
               limit: int | None = None) -> pd.DataFrame:
    """read_arrow as a pandas frame."""
    return read_arrow(root, table, columns, filter, limit).to_pandas()


def run_file(root: Path, table: str, model: str, run_id: str) -> Path:
    """Where one run's file of a table is (it may not exist)."""
    return _run_file(root, table, model, run_id)
