"""The QA results matrix: one row per model (and per ensemble), one column per metric (the WattBot
overall and its components, latency and output tokens of the QA requests, cost where measured),
written as Parquet with a fixed schema."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from trbench.data.store import write_table_atomic
from trbench.measure.metrics import Summary
from trbench.suites.qa_score import QAScore


class ModelQuality(BaseModel):
    """What one model (or ensemble) measured on the QA suite; None where not measured."""

    model: str
    kind: Literal["model", "ensemble"] = "model"
    qa: QAScore
    latency_ms: Summary | None = None  # end-to-end latency of its QA requests
    output_tokens_mean: float | None = None
    cost: float | None = None  # in the price's currency, for the QA requests


_SCORES = ("overall", "value_accuracy", "ref_overlap", "na_recall", "unit_match")
SCHEMA = pa.schema(
    [("model", pa.string()), ("kind", pa.string()), ("questions", pa.int64()), ("unanswerable", pa.int64()),
     ("failed", pa.int64())]
    + [(c, pa.float64()) for c in _SCORES]
    + [(c, pa.float64()) for c in ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "output_tokens_mean", "cost")]
)


def results_matrix(rows: Sequence[ModelQuality]) -> pd.DataFrame:
    """The model x metric frame, in the given order (one row per model name)."""
    names = [r.model for r in rows]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"model {dup!r} appears twice in the results matrix; fix: give each model or ensemble "
                         "its own name")
    return _table(rows).to_pandas()


def write_results_matrix(rows: Sequence[ModelQuality], path: Path) -> Path:
    """The matrix as one Parquet file (atomic), with SCHEMA whatever was measured."""
    results_matrix(rows)  # the same checks
    write_table_atomic(Path(path), _table(rows))
    return Path(path)


def read_results_matrix(path: Path) -> pd.DataFrame:
    return pq.read_table(path, schema=SCHEMA).to_pandas()


def _table(rows: Sequence[ModelQuality]) -> pa.Table:
    def row(r: ModelQuality) -> dict:
        lat = r.latency_ms
        return {
            "model": r.model, "kind": r.kind, "questions": r.qa.n, "unanswerable": r.qa.n_na, "failed": r.qa.failed,
            **{c: getattr(r.qa, c) for c in _SCORES},
            "latency_ms_p50": lat.p50 if lat else None, "latency_ms_p95": lat.p95 if lat else None,
            "latency_ms_p99": lat.p99 if lat else None, "output_tokens_mean": r.output_tokens_mean, "cost": r.cost,
        }

    return pa.Table.from_pylist([row(r) for r in rows], schema=SCHEMA)
