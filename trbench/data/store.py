"""Parquet storage: one file per finished run and table, written atomically, read back as datasets.

Layout under <output_dir>/<tr_id>/ (what writes each):
  requests/model_slug=<slug>/<run_id>.parquet   every request of the run, warm-ups included (here)
  telemetry/model_slug=<slug>/<run_id>.parquet  GPU and host samples beside the run (single and
                                                multi-agent runs alike; `kind` tells them apart)
  runs/model_slug=<slug>/<run_id>.parquet       the run's aggregates; written last, so it is the
                                                ledger: a run is finished once this file exists
  ma_requests/, ma_runs/                        the same for multi-agent runs
  suite_requests/model_slug=<slug>/<run_id>.parquet   every request of a quality suite run (one
                                                model x suite x run; the file is its ledger entry)
  suites/scenario_summary.parquet, suites/results_matrix.parquet   per scenario and model; the QA
                                                results matrix with the ensembles (suites/results.py)
  suites/ensembles/<name>.parquet               a QA ensemble's answers (trbench ensemble)
  load_requests/, load_steps/                   the same for load steps (a step's row is its ledger entry)
  emb_requests/, emb_steps/                     the same for embeddings steps (load mode)
  syn_requests/, syn_runs/                      the same for the synthetic workload's runs (one per point)
  mt_turns/, mt_conversations/                  the same for multi-turn conversations (a conversation's row is
                                                its ledger entry)
  manifest.json                                 the environment (also in each file's metadata)
  fallbacks/<time>-<pid>.parquet                OOM fallback decisions, as taken (data/failures.py)
  instance_failures/<time>-<pid>-<n>.parquet    failed instance operations, as they happen (same)
  failures/failures.parquet                     the failure log, rebuilt whole at each flow's end (same)
  flags/flags.parquet                           outlier flags per run (measure/outliers.py)
  validation/validation.json                    the checks' results (validation/validate.py)
  report/<tr_id>.md, report/<tr_id>.html, report/plots/   the report (report/publishing.py)
  report/<tr_id>-appendix.md, report/<tr_id>-appendix.html  its appendix: the detail tables and definitions
  report/summary.json, report/summary.csv       the report's statistics as records (report/summary.py)
  exports/<table>.csv|jsonl                     `trbench export` of one table (data/export.py)
  logs/<instance>.log                           the output of the servers trbench started (engines/)
Every file is written by trbench.data.atomic: all or nothing.
output_dir may be a URL (s3://bucket/prefix ...): the folder above is then a working copy of <url>/<tr_id>/, every
file sent whole as it is written, the ledger read from the store itself (trbench.data.remote).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from trbench.data import conversation_rows, remote, rows
from trbench.data.cells import DEFAULT_HARNESS  # every request before the harness axis was Python's
from trbench.data.atomic import write_atomic, write_text_atomic
from trbench.data.environment import Manifest
from trbench.data.rows import arrow_schema

MANIFEST_KEY = b"trbench.manifest"

# The schemas are derived from the row models (data/rows.py), where each column is declared once.
REQUEST_SCHEMA = arrow_schema(rows.RequestRow)
RUN_SCHEMA = arrow_schema(rows.RunRow)
MA_REQUEST_SCHEMA = arrow_schema(rows.MaRequestRow)
MA_RUN_SCHEMA = arrow_schema(rows.MaRunRow)
LOAD_REQUEST_SCHEMA = arrow_schema(rows.LoadRequestRow)
LOAD_STEP_SCHEMA = arrow_schema(rows.LoadStepRow)
TELEMETRY_SCHEMA = arrow_schema(rows.TelemetryRow)  # long by source: rows.TelemetryRow says how
ENERGY_FIELDS = list(arrow_schema(rows.Energy))  # energy and telemetry columns of both run tables
TELEMETRY_TABLE = "telemetry"
SUITE_REQUEST_SCHEMA = arrow_schema(rows.SuiteRequestRow)
ENSEMBLE_SCHEMA = arrow_schema(rows.EnsembleAnswerRow)
SUITE_TABLE = "suite_requests"
EMB_REQUEST_SCHEMA = arrow_schema(rows.EmbeddingRequestRow)  # the embeddings workload (load mode)
EMB_STEP_SCHEMA = arrow_schema(rows.EmbeddingStepRow)
MT_TURN_SCHEMA = arrow_schema(conversation_rows.TurnRow)  # the multi-turn workload
MT_CONVERSATION_SCHEMA = arrow_schema(conversation_rows.ConversationRow)

SYN_REQUEST_SCHEMA = arrow_schema(rows.SynRequestRow)  # the synthetic workload
SYN_RUN_SCHEMA = arrow_schema(rows.SynRunRow)
# kind -> (requests table, runs table, their schemas)
TABLES = {
    "single": ("requests", "runs", REQUEST_SCHEMA, RUN_SCHEMA),
    "multi": ("ma_requests", "ma_runs", MA_REQUEST_SCHEMA, MA_RUN_SCHEMA),
    "load": ("load_requests", "load_steps", LOAD_REQUEST_SCHEMA, LOAD_STEP_SCHEMA),
    "embeddings": ("emb_requests", "emb_steps", EMB_REQUEST_SCHEMA, EMB_STEP_SCHEMA),  # a step is its "run"
    "synthetic": ("syn_requests", "syn_runs", SYN_REQUEST_SCHEMA, SYN_RUN_SCHEMA),
    "multi_turn": ("mt_turns", "mt_conversations", MT_TURN_SCHEMA, MT_CONVERSATION_SCHEMA),  # a conversation is its "run"
}

# table folder name -> its storage schema: every table read_frame / read_arrow read
SCHEMAS: dict[str, pa.Schema] = {
    **{t: schema for req, run, rs, us in TABLES.values() for t, schema in ((req, rs), (run, us))},
    TELEMETRY_TABLE: TELEMETRY_SCHEMA, SUITE_TABLE: SUITE_REQUEST_SCHEMA}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def tr_dir(output_dir: str | Path, tr_id: str) -> Path:
    """The local folder of a TR run: under output_dir, or under its working copy when output_dir is a URL."""
    return (remote.working_copy(str(output_dir)) if remote.is_url(output_dir) else Path(output_dir)) / tr_id


def open_tr(output_dir: str | Path, tr_id: str) -> Path:
    """tr_dir of a stored TR run to read: for a URL, its working copy first made what the store holds."""
    root = tr_dir(output_dir, tr_id)
    remote.pull(root)
    return root


def _run_file(root: Path, table: str, model: str, run_id: str) -> Path:
    return root / table / f"model_slug={slug(model)}" / f"{run_id}.parquet"


def write_table_atomic(path: Path, table: pa.Table) -> None:
    """One Parquet file, all or nothing (trbench.data.atomic)."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _table(rows: list[dict], schema: pa.Schema, manifest: Manifest) -> pa.Table:
    meta = {MANIFEST_KEY: manifest.json_text().encode()}
    return pa.Table.from_pylist(rows, schema=schema.with_metadata(meta))


def write_run(root: Path, run_row: dict, request_rows: list[dict], manifest: Manifest, kind: str = "single",
              telemetry_rows: list[dict] | None = None) -> Path:
    """Persist one finished run: its requests, its telemetry (when sampled), then its run row
    (the ledger entry)."""
    requests, runs, request_schema, run_schema = TABLES[kind]
    model, run_id = run_row["model"], run_row["run_id"]
    write_table_atomic(_run_file(root, requests, model, run_id), _table(request_rows, request_schema, manifest))
    if telemetry_rows is not None:
        rows = [{**r, "kind": kind, "harness": run_row.get("harness", DEFAULT_HARNESS)} for r in telemetry_rows]
        write_table_atomic(_run_file(root, TELEMETRY_TABLE, model, run_id), _table(rows, TELEMETRY_SCHEMA, manifest))
    run_path = _run_file(root, runs, model, run_id)
    write_table_atomic(run_path, _table([run_row], run_schema, manifest))
    return run_path


def finished_run_ids(root: Path, kind: str = "single") -> set[str]:
    """The ledger: the runs whose run file exists (for a URL, in the store: pulled first)."""
    folder = root / TABLES[kind][1]
    remote.pull(folder)
    return {p.stem for p in folder.glob("model_slug=*/*.parquet")}


# How the reason of a planned run that was never measured opens, and the words its server-down reason
# holds; the code of each such run is its not_run column (rows.NotRun), which decides what a resume does.
NOT_RUN = "not run: "
SERVER_DOWN = "cannot be used again"


def runs_to_retry(root: Path, kind: str = "single") -> set[str]:
    """Run files of runs not run because their server was down (rows.RETRIED_NOT_RUN): a resume measures them."""
    if not finished_run_ids(root, kind):
        return set()
    runs = read_arrow(root, TABLES[kind][1], ["run_id", "not_run"])
    retried = pc.is_in(runs.column("not_run"), pa.array(sorted(rows.RETRIED_NOT_RUN), pa.string()))
    return set(runs.filter(pc.fill_null(retried, False)).column("run_id").to_pylist())


def done_run_ids(root: Path, kind: str = "single") -> set[str]:
    """The ledger for resuming: finished run files, less the runs a down server kept from running."""
    return finished_run_ids(root, kind) - runs_to_retry(root, kind)


def with_harness(table: pa.Table) -> pa.Table:
    """Files written before the harness column existed read back with harness python, not null, and
    files from before the server-setting axes with server_settings '' (none set)."""
    for name, fill in (("harness", DEFAULT_HARNESS), ("server_settings", "")):
        i = table.schema.get_field_index(name)
        if i >= 0 and table.column(i).null_count:
            table = table.set_column(i, name, pc.fill_null(table.column(i), fill))
    return table


def write_suite_run(root: Path, run_id: str, model: str, request_rows: list[dict], manifest: Manifest) -> Path:
    """One finished suite run's requests, all or nothing: the file is the run's ledger entry."""
    path = _run_file(root, SUITE_TABLE, model, run_id)
    write_table_atomic(path, _table(request_rows, SUITE_REQUEST_SCHEMA, manifest))
    return path


def finished_suite_run_ids(root: Path) -> set[str]:
    remote.pull(root / SUITE_TABLE)
    return {p.stem for p in (root / SUITE_TABLE).glob("model_slug=*/*.parquet")}


def read_manifest(path: Path) -> Manifest:
    """The manifest in a Parquet file's metadata, as any version wrote it (Manifest.lenient); empty without one."""
    meta = pq.read_schema(path).metadata or {}
    return Manifest.lenient(json.loads(meta.get(MANIFEST_KEY, b"{}")))


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


# --- projected reads (post-processing at scale: read only the columns a computation needs) ---------


def table_schema(table: str) -> pa.Schema:
    """The storage schema of a table folder name (see SCHEMAS)."""
    return SCHEMAS[table]


# --- files written before a column's type or meaning changed: migrated on read, in read_arrow -------------

# Columns whose stored type changed, with the type files written before hold. error_kinds was one
# string: the sorted kinds joined by commas ("connect,http_5xx"), on load steps "kind:count" pairs
# ("http_5xx:3,timeout:1"); null where no request failed.
LEGACY_TYPES: dict[str, pa.DataType] = {"error_kinds": pa.string()}


def _error_kinds(text: str | None, counted: bool) -> list:
    parts = [p for p in (text or "").split(",") if p]
    if not counted:
        return parts
    return [{"kind": k, "count": int(c)} for k, _, c in (p.rpartition(":") for p in parts)]


def _migrate(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An old file's columns of LEGACY_TYPES as today's type (no error: an empty list)."""
    for name in LEGACY_TYPES:
        i = table.schema.get_field_index(name)
        if i >= 0:
            new = schema.field(name).type
            counted = pa.types.is_struct(new.value_type)
            values = [_error_kinds(v, counted) for v in table.column(i).to_pylist()]
            table = table.set_column(i, name, pa.array(values, new))
    return table


def _legacy_not_run(table: pa.Table) -> pa.Table:
    """The one legacy rule of not_run: a run file written before the column held only the sentence, so
    a not-run row there ("not run: ...", code null) takes its code from the words its reason was made of.
    A row written since has its code whenever its reason opens so."""
    if "not_run" not in table.column_names:
        return table
    stored, reasons = table.column("not_run"), table.column("invalid_reason")
    if not pc.any(pc.and_(pc.is_null(stored), pc.starts_with(reasons, NOT_RUN))).as_py():
        return table  # no file before the column, or none with a not-run row: nothing to read
    codes = [code if code is not None or not (why or "").startswith(NOT_RUN) else
             "server_down" if SERVER_DOWN in why else "oom_rung" if "ran out of memory" in why else "not_loaded"
             for code, why in zip(stored.to_pylist(), reasons.to_pylist())]
    return table.set_column(table.schema.get_field_index("not_run"), "not_run", pa.array(codes, pa.string()))


def _scan(dataset: ds.Dataset, columns: list[str] | None, filter: object, limit: int | None) -> pa.Table:
    if limit is not None:
        return dataset.head(limit, columns=columns, filter=filter)
    return dataset.to_table(columns=columns, filter=filter)


def _scan_mixed(dataset: ds.FileSystemDataset, columns: list[str] | None, filter: object,
                limit: int | None) -> pa.Table | None:
    """A folder holding files of an old type (LEGACY_TYPES): the files of today's type are read as one
    dataset, the old ones as another under their own type and migrated, then both as one table. None
    when no file is of an old type."""
    legacy = {n: t for n, t in LEGACY_TYPES.items() if dataset.schema.get_field_index(n) >= 0}

    def is_old(physical: pa.Schema) -> bool:
        return any(physical.get_field_index(n) >= 0 and physical.field(n).type == t for n, t in legacy.items())

    fragments = list(dataset.get_fragments())
    old_files = [is_old(f.physical_schema) for f in fragments]
    if not any(old_files):
        return None
    old_schema = dataset.schema
    for n, t in legacy.items():
        old_schema = old_schema.set(old_schema.get_field_index(n), pa.field(n, t))
    new = ds.FileSystemDataset([f for f, o in zip(fragments, old_files) if not o], dataset.schema, dataset.format,
                               dataset.filesystem)
    old = ds.FileSystemDataset([f for f, o in zip(fragments, old_files) if o], old_schema, dataset.format,
                               dataset.filesystem)
    table = pa.concat_tables([_scan(new, columns, filter, limit),
                              _migrate(_scan(old, columns, filter, limit), dataset.schema)])
    return table.slice(0, limit) if limit is not None else table


def read_arrow(root: Path, table: str, columns: list[str] | None = None, filter: object = None,
               limit: int | None = None) -> pa.Table:
    """A table's files as one Arrow table under today's schema (files written before a column existed
    read back with that column null, harness as python: see with_harness; without the schema pyarrow
    would take the first file's), with only `columns` (all when None), only the rows matching `filter`
    (a pyarrow.dataset expression), and at most `limit` rows (the first ones) when given.

    Files written before a column changed read back as today's: error_kinds as its list (LEGACY_TYPES:
    only a read that meets such a file pays for it, and a folder of today's files pays nothing), a
    not-run row's not_run code from its reason (_legacy_not_run; a filter on not_run sees stored codes only)."""
    schema = table_schema(table)
    full = schema.remove_metadata().append(pa.field("model_slug", pa.string()))
    folder = root / table
    if not any(folder.glob("model_slug=*/*.parquet")):
        empty = full.empty_table()
        return empty.select(columns) if columns is not None else empty
    # the legacy rule of not_run reads the reason beside it
    extra = ["invalid_reason"] if columns is not None and "not_run" in columns and "invalid_reason" not in columns else []
    read = [*columns, *extra] if columns is not None else None
    dataset = ds.dataset(folder, format="parquet", partitioning="hive", schema=full)
    try:
        result = _scan(dataset, read, filter, limit)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # a file of an old type under today's: the cast fails
        mixed = _scan_mixed(dataset, read, filter, limit) if any(n in full.names for n in LEGACY_TYPES) else None
        if mixed is None:
            raise
        result = mixed
    return with_harness(_legacy_not_run(result).drop_columns(extra))


def read_frame(root: Path, table: str, columns: list[str] | None = None, filter: object = None,
               limit: int | None = None) -> pd.DataFrame:
    """read_arrow as a pandas frame: the one reader of every table (read_frame(root, "runs"))."""
    return read_arrow(root, table, columns, filter, limit).to_pandas()


def run_file(root: Path, table: str, model: str, run_id: str) -> Path:
    """Where one run's file of a table is (it may not exist)."""
    return _run_file(root, table, model, run_id)
