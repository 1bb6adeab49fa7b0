"""The request columns the report reads, and nothing else: a projection of the requests table as
numpy arrays, with every run's rows, so that a TR of a million requests is read once and each
model x config picks its rows by run instead of scanning the whole table.

The big columns (chunk_offsets_ms, chunk_kinds, output_text, reasoning_text) are never read
whole: an answer's text is read from its run's file only when the report shows it (first_answer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trbench.data import store
from trbench.data.rows import CACHE_STATES
from trbench.measure import metrics

# what the report's statistics read of each request row
REQUEST_COLUMNS = ["run_id", "model", "num_gpu", "num_ctx", "temperature", "run_index", "attempt", "request_index",
                   "is_warmup", "status", "cache_target", "cache_state", "answer_check", "ttft_ms", "e2e_ms",
                   "decode_tps", "decode_tps_client", "cached_tokens", "error_kind", "error_message", "harness",
                   "client_cpu_s", "ttfat_ms", "reasoning_tokens", "answer_tokens", "decode_tps_reasoning",
                   "decode_tps_answer", "prompt_tokens", "prefill_ms",
                   "server_settings"]
# what the report reads of each run row (a run table has some 75 columns, read per file: 1,600 run files
# cost seconds read whole); a column missing here is a KeyError, never a silent gap
RUN_COLUMNS = ["tr_id", "run_id", "attempt", "cell_hash", "model", "provider", "instance", "instance_url", "num_gpu",
               "num_ctx", "temperature", "server_settings", "ttft_mode", "prompt_style", "run_index", "harness",
               "started_at", "n_requests",
               "n_warmup", "valid", "invalid_reason", "decode_tps_mean", "decode_tps_p50", "decode_tps_p95",
               "prefill_tps_p50", "prefill_tps_client_p50",
               *[f"ttft_{st}_ms_p50" for st in CACHE_STATES], "energy_j", "tokens_per_j", "tokens_per_dollar",
               "gpu_mem_used_mib_max"]
_CODED = ["model", "status", "cache_target", "cache_state", "answer_check", "harness"]  # few distinct values: codes
_FLOATS = ["ttft_ms", "e2e_ms", "decode_tps", "decode_tps_client", "cached_tokens", "temperature", "client_cpu_s",
           "ttfat_ms", "reasoning_tokens", "answer_tokens", "decode_tps_reasoning", "decode_tps_answer", "prompt_tokens", "prefill_ms"]
_INTS = ["num_gpu", "num_ctx", "run_index", "attempt", "request_index"]
FAILED_COLUMNS = ["run_id", "model", "num_gpu", "num_ctx", "temperature", "run_index", "attempt", "request_index",
                  "is_warmup", "error_kind", "error_message", "harness", "server_settings"]


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """(codes with -1 for null, the distinct values) of a string column."""
    encoded = column.dictionary_encode().combine_chunks() if len(column) else pa.array([], pa.string()).dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, encoded.dictionary.to_pylist()


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.float64()).fill_null(np.nan).to_numpy()


class RequestColumns:
    """The projected request rows of one TR, row order as the files are read (store.read_frame(root, "requests"))."""

    def __init__(self, table: pa.Table) -> None:
        self.n = table.num_rows
        self.table = table
        self._equals: dict[tuple[str, str], np.ndarray] = {}
        self.coded = {c: _codes(table.column(c)) for c in _CODED}
        self.values = {c: _floats(table.column(c)) for c in _FLOATS}
        self.values.update({c: table.column(c).fill_null(-1).to_numpy().astype(np.int64) for c in _INTS})
        v = self.values  # prompt tokens per second, server and client view (metrics.DEFINITIONS['prefill_tps'])
        v["prefill_tps"] = metrics.prefill_rate_array(v["prompt_tokens"], v["cached_tokens"], v["prefill_ms"])
        v["prefill_tps_client"] = metrics.prefill_rate_array(v["prompt_tokens"], v["cached_tokens"], v["ttft_ms"])
        self.warmup = table.column("is_warmup").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
        run_codes, run_ids = _codes(table.column("run_id"))
        self.run_code, self.run_ids = run_codes, run_ids
        order = np.argsort(run_codes, kind="stable")  # each run's rows, in row order
        bounds = np.concatenate([[0], np.cumsum(np.bincount(run_codes[run_codes >= 0], minlength=len(run_ids)))])
        order = order[np.count_nonzero(run_codes < 0):]
        self._rows = {rid: order[bounds[i]:bounds[i + 1]] for i, rid in enumerate(run_ids)}
        self.measured = ~self.warmup
        self.ok = self.equals("status", "ok")

    @classmethod
    def read(cls, root: Path) -> RequestColumns:
        return cls(store.read_arrow(root, "requests", REQUEST_COLUMNS))

    def equals(self, column: str, value: str) -> np.ndarray:
        """column == value on every row (False on null); kept, as each cell asks again."""
        key = (column, value)
        if key not in self._equals:
            codes, labels = self.coded[column]
            self._equals[key] = codes == labels.index(value) if value in labels else np.zeros(self.n, dtype=bool)
        return self._equals[key]

    def distinct(self, column: str) -> set[str]:
        codes, labels = self.coded[column]
        return {labels[i] for i in np.unique(codes[codes >= 0])}

    def labels(self, column: str, rows: np.ndarray) -> list[str | None]:
        codes, labels = self.coded[column]
        return [labels[c] if c >= 0 else None for c in codes[rows]]

    def rows(self, run_ids) -> np.ndarray:
        """The rows of these runs, in row order."""
        parts = [self._rows[r] for r in dict.fromkeys(run_ids) if r in self._rows]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def floats(self, column: str, rows: np.ndarray) -> list[float]:
        """The column's values of these rows (NaN for null): what metrics.clean takes."""
        return self.values[column][rows].tolist()

    def failed(self) -> pd.DataFrame:
        """The rows whose status is not ok (null included), with their error columns."""
        return self.table.filter(pa.array(~self.ok)).select(FAILED_COLUMNS).to_pandas()

    def counts(self, column: str, rows: np.ndarray) -> dict[str, int]:
        """Non-null value -> rows, most frequent first (pandas value_counts)."""
        codes, labels = self.coded[column]
        n = np.bincount(codes[rows][codes[rows] >= 0], minlength=len(labels))
        return {labels[i]: int(n[i]) for i in sorted(np.flatnonzero(n), key=lambda i: -n[i])}


def _answers(path: Path) -> dict[int, tuple[str | None, str | None]]:
    """request_index -> (output_text, prompt_id) of one run file."""
    have = set(pq.ParquetFile(path).schema_arrow.names)
    t = pq.read_table(path, columns=[c for c in ("request_index", "output_text", "prompt_id") if c in have])
    n = t.num_rows
    texts = t.column("output_text").to_pylist() if "output_text" in have else [None] * n
    prompts = t.column("prompt_id").to_pylist() if "prompt_id" in have else [None] * n
    return dict(zip(t.column("request_index").to_pylist(), zip(texts, prompts)))


def first_answer(root: Path, reqs: RequestColumns, rows: np.ndarray) -> tuple[str, str, str | None] | None:
    """(run_id, text, prompt_id) of the first of these rows (given in the order to try them) whose
    output_text is not blank, reading each run's file only when it is reached."""
    if not rows.size:
        return None
    texts: dict[str, dict[int, tuple[str | None, str | None]]] = {}
    model_of = reqs.labels("model", rows)
    for p, model in zip(rows.tolist(), model_of):
        rid = reqs.run_ids[reqs.run_code[p]]
        if rid not in texts:
            assert model is not None  # a required column: every request row names its model
            path = store.run_file(root, "requests", model, rid)
            texts[rid] = _answers(path) if path.is_file() else {}
        text, prompt_id = texts[rid].get(int(reqs.values["request_index"][p]), (None, None))
        if text is not None and text.strip() != "":
            return rid, text, prompt_id
    return None

