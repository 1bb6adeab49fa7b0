"""The load section's tables, formatted once for the Markdown and the HTML (as report/tables.py)."""

from __future__ import annotations

import pandas as pd

from trbench.measure.load_metrics import kinds_text
from trbench.report.embeddings_table import embeddings_table, latest_steps
from trbench.report.load_results import batched_prefills
from trbench.report.step_telemetry import telemetry_definitions, telemetry_table
from trbench.report.tables import Table, _cols, _groups, fmt, fmt_est


def _int(v: int | None) -> str:
    return "n/a" if v is None else str(v)


_OUT_OF_STEP = ["ended early", "output share p50", "output share min"]


def _steps_table(steps: list) -> Table:
    """The steps' figures; how far out of step the streams ran (output share) only where some step had
    requests that ended early: with exact outputs every share is 1 and says nothing."""
    early = any(s.n_ended_early for s in steps)
    shares = [">output share p50", ">output share min"] if early else []
    requests = ["slots", "n", "warm-up", "errors", "error kinds"] + ([] if early else ["ended early"])
    return Table(
        columns=_cols("model", "config", "step", ">slots", ">n", ">warm-up", ">errors", "error kinds", ">ended early",
                      *shares, ">offered req/s", ">req/s", ">output tok/s", ">TTFT p50 ms", ">TTFT p95 ms",
                      ">TTFT p99 ms", ">TPOT p50 ms", ">TPOT p95 ms", ">ITL (chunk gap) p50 ms",
                      ">ITL (chunk gap) p95 ms", ">e2e p50 ms", ">e2e p99 ms", ">queue p50 ms", ">queue p95 ms",
                      ">prefill p50 ms", ">prefill tok/s p50", ">client prefill tok/s p50", ">good %",
                      ">goodput req/s"),
        rows=[[s.model, s.config, s.step_label, _int(s.slots), str(s.n_requests), str(s.n_warmup),
               str(s.n_errors), kinds_text(s.error_kinds), _int(s.n_ended_early),
               *([fmt(s.output_share_p50, 2), fmt(s.output_share_min, 2)] if early else []),
               fmt(s.offered_rps, 2), fmt(s.request_rps, 2),
               fmt(s.output_tps), fmt(s.ttft_ms_p50), fmt(s.ttft_ms_p95), fmt(s.ttft_ms_p99), fmt(s.tpot_ms_p50),
               fmt(s.tpot_ms_p95), fmt(s.itl_ms_p50), fmt(s.itl_ms_p95), fmt(s.e2e_ms_p50), fmt(s.e2e_ms_p99),
               fmt(s.queue_ms_p50), fmt(s.queue_ms_p95), fmt(s.prefill_ms_p50), fmt(s.prefill_tps_p50),
               fmt(s.prefill_tps_client_p50), fmt(s.good_pct),
               fmt(s.goodput_rps, 2)] for s in steps],
        row_classes=["" if s.valid else "regression" for s in steps], keys=3,
        groups=_groups(("throughput and goodput", ["offered req/s", "req/s", "output tok/s", "prefill tok/s p50",
                                                   "client prefill tok/s p50", "good %", "goodput req/s"]),
                       ("requests", requests),
                       *([("streams out of step", _OUT_OF_STEP)] if early else []),
                       ("latency", ["TTFT p50 ms", "TTFT p95 ms", "TTFT p99 ms", "e2e p50 ms", "e2e p99 ms"]),
                       ("per token and queueing", ["TPOT p50 ms", "TPOT p95 ms", "ITL (chunk gap) p50 ms",
                                                   "ITL (chunk gap) p95 ms", "queue p50 ms", "queue p95 ms",
                                                   "prefill p50 ms"])))


def load_tables(data) -> dict[str, Table]:
    section = data.load
    if section is None:
        return {}
    steps = section.steps
    step_rows = [s.model_dump() for s in steps]
    emb_rows = latest_steps(pd.DataFrame(section.embedding_steps)).to_dict("records")
    return {
        # the first screen's load rows: one per step, the latencies' medians with their intervals
        "load_headline": Table(
            columns=_cols("model", "config, step", ">req/s", ">output tok/s", ">TTFT p50 ms [95% CI]",
                          ">TPOT p50 ms [95% CI]", ">e2e p50 ms [95% CI]", ">good %"),
            rows=[[s.model, f"{s.config} {s.step_label}", fmt(s.request_rps, 2), fmt(s.output_tps),
                   fmt_est(s.ttft_ms_p50, s.p50_ci("ttft")), fmt_est(s.tpot_ms_p50, s.p50_ci("tpot")),
                   fmt_est(s.e2e_ms_p50, s.p50_ci("e2e")), fmt(s.good_pct)]
                  for s in steps]),
        "load_steps": _steps_table(steps),
        "load_summary": Table(
            columns=_cols("model", "config", ">steps", ">saturation point req/s", ">best goodput req/s",
                          "at step", ">peak output tok/s"),
            rows=[[m.model, m.config, str(m.steps), fmt(m.saturation_rps, 2) if m.saturation_rps else "none",
                   fmt(m.best_goodput_rps, 2), m.best_goodput_step or "", fmt(m.peak_output_tps)]
                  for m in section.summaries]),
        "load_batching": Table(
            columns=_cols("model", "config", "step", ">slots", ">prefill p50 ms", ">prefill p50 ms at c=1",
                          ">wait inside the batched prefill ms", ">queue p50 ms"),
            rows=[[b.model, b.config, b.step_label, str(b.slots), fmt(b.prefill_ms_p50), fmt(b.alone_prefill_ms_p50),
                   fmt(b.wait_ms), fmt(b.queue_ms_p50)] for b in batched_prefills(section)], keys=3),
        "load_invalid": Table(columns=_cols("model", "config", "step", "reason"),
                              rows=[[s.model, s.config, s.step_label, s.invalid_reason or ""]
                                    for s in steps if not s.valid]),
        "load_definitions": Table(columns=_cols("term", "definition"),
                                  rows=[[n, t] for n, t in section.definitions.items()]),
        "load_embeddings": embeddings_table(pd.DataFrame(section.embedding_steps)),
        "load_telemetry": telemetry_table(step_rows, [("model", "model"), ("config", "config"), ("step", "step_label")]),
        "load_telemetry_definitions": telemetry_definitions(step_rows),
        "load_embeddings_telemetry": telemetry_table(emb_rows, [("model", "model"), ("instance", "instance"),
                                                                ("batch size", "batch_size")]),
        "load_embeddings_telemetry_definitions": telemetry_definitions(emb_rows),
    }
