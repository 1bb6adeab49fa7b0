"""The report's embeddings section (load mode): a table per step and the text that says what it measures.

embeddings_table() is a Table as every other of the report (tables.py), so Markdown and HTML show the
same strings; embeddings_markdown() is the section as Markdown, for the load report to place.
"""

from __future__ import annotations

import pandas as pd

from trbench.measure.embedding_metrics import DEFINITIONS
from trbench.report.tables import Table, _cols, _groups, fmt, to_markdown

TITLE = "Embeddings"


def _pct_text(row: pd.Series) -> str:
    if pd.isna(row["within_slo_pct"]):
        return "n/a"
    return f"{row['within_slo_pct']:.1f}% (<= {row['slo_ms']:g} ms)"


def _maybe(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or pd.isna(value) else fmt(float(value), digits)


def latest_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """The latest attempt of each step, in table order (model, instance, concurrency, batch size): the steps
    the section shows, and report/summary.py writes."""
    if steps.empty:
        return steps
    steps = steps.sort_values("attempt").drop_duplicates("run_id", keep="last")
    return steps.sort_values(["model", "instance", "concurrency", "batch_size"])


def embeddings_table(steps: pd.DataFrame) -> Table:
    """One row per step (model, instance, batch size), the latest attempt of each."""
    steps = latest_steps(steps)
    rows = [[r["model"], r["instance"], str(int(r["batch_size"])), str(int(r["concurrency"])), str(int(r["n_requests"])),
             _maybe(r["texts_per_s"]), _maybe(r["tokens_per_s"]), _maybe(r["latency_p50_ms"]),
             _maybe(r["latency_p95_ms"]), _maybe(r["latency_p99_ms"]), _pct_text(r),
             f"{int(r['n_errors'])}" + (f" ({', '.join(r['error_kinds'])})" if r["n_errors"] else "")]
            for _, r in steps.iterrows()]
    return Table(columns=_cols("`model", "instance", ">batch size", ">concurrency", ">n", ">texts/s", ">tokens/s",
                               ">p50 ms", ">p95 ms", ">p99 ms", ">within SLO", "errors"), rows=rows, keys=4,
                 groups=_groups(("throughput", ["n", "texts/s", "tokens/s", "errors"]),
                                ("latency", ["p50 ms", "p95 ms", "p99 ms", "within SLO"])))


def embeddings_text() -> list[str]:
    """What the section measures and how, in the report's words."""
    return [
        "This measures the serving path of the embeddings endpoint (`/v1/embeddings` of llama.cpp, `/api/embed` "
        "of Ollama): HTTP, batching, queueing and the forward pass with mean pooling. It says nothing about the "
        "quality of the vectors.",
        f"texts/s: {DEFINITIONS['texts_per_s']}. tokens/s: {DEFINITIONS['tokens_per_s']}. "
        f"Latency: {DEFINITIONS['latency']}. Within SLO: {DEFINITIONS['within_slo_pct']}. "
        "n counts the measured requests of a step; warm-up requests are left out.",
    ]


def embeddings_markdown(steps: pd.DataFrame) -> str:
    """The section, or '' when the TR run has no embeddings step."""
    if steps.empty:
        return ""
    return "\n\n".join([f"## {TITLE}", *embeddings_text(), to_markdown(embeddings_table(steps))])
