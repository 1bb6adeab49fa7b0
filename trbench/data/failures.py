"""The failure log: every failed request or run of a TR run, with its config, error, the GPU
memory at the time (when a GPU is visible) and the fallback decision taken for its config, and
every failed operation on an instance (start, unload, stop, a health check after a failure).

Derived from the run files, the fallback decisions and the instance failures, so it is
rewritten whole at the end of each flow run; the decisions and the instance failures are kept as
they happen, one file each, under fallbacks/ and instance_failures/.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from trbench.data.cells import config_label
from trbench.data import store
from trbench.prose import count

FALLBACK_SCHEMA = pa.schema([
    ("model", pa.string()), ("from_config", pa.string()), ("to_config", pa.string()),
    ("decision", pa.string()), ("oom_runs", pa.list_(pa.string())), ("decided_at", pa.timestamp("us", tz="UTC")),
])

FAILURE_SCHEMA = pa.schema([
    ("tr_id", pa.string()), ("table", pa.string()), ("scope", pa.string()), ("run_id", pa.string()),
    ("attempt", pa.int32()), ("model", pa.string()), ("config", pa.string()), ("num_gpu", pa.int32()),
    ("num_ctx", pa.int32()), ("temperature", pa.float64()), ("is_warmup", pa.bool_()),
    ("error_kind", pa.string()), ("error_message", pa.string()), ("gpu_memory_at_error", pa.string()),
    ("fallback_decision", pa.string()), ("instance", pa.string()), ("operation", pa.string()),
])

INSTANCE_FAILURE_SCHEMA = pa.schema([
    ("tr_id", pa.string()), ("instance", pa.string()), ("operation", pa.string()), ("model", pa.string()),
    ("config", pa.string()), ("error_kind", pa.string()), ("error_message", pa.string()),
    ("unusable", pa.bool_()), ("failed_at", pa.timestamp("us", tz="UTC")),
])

_SEQ = itertools.count()


def error_kind_of(err: BaseException) -> str:
    """The error kind of a failed instance operation: the one it carries (OllamaAPIError), a
    timeout, or 'instance'."""
    kind = getattr(err, "kind", None)
    if isinstance(kind, str):
        return kind
    name = type(err).__name__.lower()
    return "timeout" if "timeout" in name else "instance"


class InstanceFaults:
    """The failed instance operations of one flow run, each kept on disk at once (a crash keeps
    it), and the instances that cannot be used again, with the reason. Thread-safe: lanes share it."""

    def __init__(self, root: Path, tr_id: str) -> None:
        self.root, self.tr_id = root, tr_id
        self._down: dict[str, str] = {}
        self._seen: list[str] = []
        self._errors: list[tuple[str, str]] = []  # (operation, the error's own text), in order
        self._lock = threading.Lock()

    def record(self, operation: str, instance: str, err: BaseException | str, model: str | None = None,
               config: str | None = None, unusable: str | None = None) -> str:
        """Keep one failed operation; `unusable` marks the instance out for the rest of the flow
        run, with that reason. Returns the one-line message kept."""
        kind = "instance" if isinstance(err, str) else error_kind_of(err)
        text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
        subject = f" {model}" if model else ""
        message = f"{operation}{subject} on {instance} failed: {text}"
        if unusable:
            message += f"; {instance} is not used again: {unusable}"
        now = dt.datetime.now(dt.timezone.utc)
        row = {"tr_id": self.tr_id, "instance": instance, "operation": operation, "model": model, "config": config,
               "error_kind": kind, "error_message": message, "unusable": bool(unusable), "failed_at": now}
        name = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}-{next(_SEQ)}.parquet"
        store.write_table_atomic(self.root / "instance_failures" / name,
                                   pa.Table.from_pylist([row], schema=INSTANCE_FAILURE_SCHEMA))
        with self._lock:
            self._seen.append(message)
            self._errors.append((operation, str(err)))
            if unusable:
                self._down.setdefault(instance, f"{operation} failed ({text}); {unusable}")
        return message

    def down(self, instance: str) -> str | None:
        """Why this instance is not used again, or None while it can be."""
        with self._lock:
            return self._down.get(instance)

    @property
    def messages(self) -> list[str]:
        with self._lock:
            return list(self._seen)

    def errors(self, operation: str) -> list[str]:
        """The errors of every failed `operation`, in order, as their exceptions say them (the
        instance, what failed and the fix)."""
        with self._lock:
            return [text for op, text in self._errors if op == operation]

    def start_cause(self, tried: int) -> str:
        """Why no server started, for a run that cannot go on: the first start failure as its error
        says it (what failed and the fix), the others counted: they are in the failure log."""
        errors = self.errors("start")
        if not errors:
            return f"no server started ({tried} tried)"
        more = f" ({count(len(errors) - 1, 'more start failure')} in the failure log)" if len(errors) > 1 else ""
        return f"no server started: {errors[0]}{more}"


def read_instance_failures(root: Path) -> pd.DataFrame:
    files = sorted((root / "instance_failures").glob("*.parquet"))
    if not files:
        return INSTANCE_FAILURE_SCHEMA.empty_table().to_pandas()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).sort_values("failed_at", kind="stable")


def record_fallbacks(root: Path, decisions: list[dict]) -> None:
    if not decisions:
        return
    now = dt.datetime.now(dt.timezone.utc)
    rows = [{**d, "decided_at": now} for d in decisions]
    name = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}.parquet"
    store.write_table_atomic(root / "fallbacks" / name, pa.Table.from_pylist(rows, schema=FALLBACK_SCHEMA))


def read_fallbacks(root: Path) -> pd.DataFrame:
    files = sorted((root / "fallbacks").glob("*.parquet"))
    if not files:
        return FALLBACK_SCHEMA.empty_table().to_pandas()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).sort_values("decided_at", kind="stable")
    # a resumed TR run takes the decisions of the runs it found finished again: keep the first
    return frame.drop_duplicates(["model", "from_config", "to_config", "decision"]).reset_index(drop=True)


def _label(row) -> str:
    return config_label(row.num_gpu, row.num_ctx, row.temperature, getattr(row, "server_settings", None))


def _config(row) -> str:
    if getattr(row, "scenario", None):
        return str(row.scenario)
    if pd.isna(row.num_gpu) or pd.isna(row.num_ctx) or pd.isna(row.temperature):
        return "server defaults"
    return _label(row)


def _clean(row: dict) -> dict:
    """pandas' missing values (NaN, NA) as None, so that pyarrow sees nulls."""
    return {k: (None if v is not None and not isinstance(v, (list, str)) and pd.isna(v) else v) for k, v in row.items()}


# what the log takes from a failed request (scenario and instance where the table has them)
_REQUEST_COLUMNS = ["tr_id", "run_id", "attempt", "model", "scenario", "num_gpu", "num_ctx", "temperature",
                    "is_warmup", "error_kind", "error_message", "gpu_memory_at_error", "instance"]
_NOT_OK = (ds.field("status") != "ok") | ds.field("status").is_null()


def _failed_requests(root: Path, table: str) -> pd.DataFrame:
    """Only the failed rows and the columns the log uses: a TR of a million requests has few failures,
    and reading every column of every request cost minutes."""
    present = set(store.table_schema(table).names)
    return store.read_frame(root, table, [c for c in _REQUEST_COLUMNS if c in present], _NOT_OK)


def build_failure_log(root: Path) -> list[dict]:
    decisions = read_fallbacks(root)
    by_config = {(r.model, r.from_config): r.decision for r in decisions.itertuples()}
    rows = []
    for table in ("requests", "ma_requests"):
        for r in _failed_requests(root, table).itertuples():
            config = _config(r)
            rows.append({"tr_id": r.tr_id, "table": table, "scope": "request", "run_id": r.run_id,
                         "attempt": r.attempt, "model": r.model, "config": config, "num_gpu": r.num_gpu,
                         "num_ctx": r.num_ctx, "temperature": r.temperature, "is_warmup": bool(r.is_warmup),
                         "error_kind": r.error_kind, "error_message": r.error_message,
                         "gpu_memory_at_error": r.gpu_memory_at_error,
                         "fallback_decision": by_config.get((r.model, config)),
                         "instance": getattr(r, "instance", None), "operation": "request"})
    runs = store.read_frame(root, "runs")
    for r in runs[runs["invalid_reason"].fillna("").str.startswith("instance failed")].itertuples():
        config = _config(r)
        rows.append({"tr_id": r.tr_id, "table": "runs", "scope": "run", "run_id": r.run_id, "attempt": r.attempt,
                     "model": r.model, "config": config, "num_gpu": r.num_gpu, "num_ctx": r.num_ctx,
                     "temperature": r.temperature, "is_warmup": False, "error_kind": ",".join(r.error_kinds),
                     "error_message": r.invalid_reason, "gpu_memory_at_error": r.gpu_memory_at_error,
                     "fallback_decision": by_config.get((r.model, config)), "instance": r.instance,
                     "operation": "prepare"})
    for r in read_instance_failures(root).itertuples():
        rows.append({"tr_id": r.tr_id, "table": "instance_failures", "scope": "instance", "run_id": None,
                     "attempt": None, "model": r.model, "config": r.config, "num_gpu": None, "num_ctx": None,
                     "temperature": None, "is_warmup": False, "error_kind": r.error_kind,
                     "error_message": r.error_message, "gpu_memory_at_error": None, "fallback_decision": None,
                     "instance": r.instance, "operation": r.operation})
    return [_clean(r) for r in rows]


def write_failure_log(root: Path) -> Path:
    path = root / "failures" / "failures.parquet"
    store.write_table_atomic(path, pa.Table.from_pylist(build_failure_log(root), schema=FAILURE_SCHEMA))
    return path


def read_failure_log(root: Path) -> pd.DataFrame:
    path = root / "failures" / "failures.parquet"
    return pd.read_parquet(path) if path.is_file() else FAILURE_SCHEMA.empty_table().to_pandas()
