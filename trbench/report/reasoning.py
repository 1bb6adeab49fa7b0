"""Reasoning streamed before the answer, per model x config: time to the first answer token beside TTFT,
reasoning and answer tokens, and the decode rate of each part (definitions: metrics.DEFINITIONS).

The report shows it only where some request streamed reasoning; its sentence counts the model x configs
that did, so it reads true for none, some or all of them."""

from __future__ import annotations

from typing import Any

import numpy as np

from trbench.data.rows import CACHE_STATE_LABELS, CACHE_STATES
from trbench.measure import metrics
from trbench.report.data import RequestColumns
from trbench.report.models import CellResult, ReportData
from trbench.report.tables import Table, _cols, fmt
from trbench.prose.english import count

CONVENTION = ("TTFT counts the first generated token of any kind, reasoning included (as aiperf's TTFT does); "
              "TTFAT is the time to the first answer token (aiperf's TTFO, time to first output token), the same as "
              "TTFT where nothing is reasoned first. Reasoning and answer tokens split the server's output count; "
              "each part's decode rate is over its own chunks, client clock")


def cell_figures(reqs: RequestColumns, pooled: np.ndarray) -> dict[str, Any]:
    """The reasoning figures of one model x config from its pooled requests (CellResult's fields)."""
    tokens = reqs.values["reasoning_tokens"][pooled]
    by_state: dict[str, float] = {}
    for state in CACHE_STATES:
        p50 = metrics.percentile(reqs.floats("ttfat_ms", pooled[reqs.equals("cache_state", state)[pooled]]), 50)
        if p50 is not None:
            by_state[state] = p50
    return {
        "reasoning_requests": int(np.count_nonzero(tokens > 0)),
        "ttfat_p50_ms_by_state": by_state,
        "reasoning_tokens_p50": metrics.percentile(tokens.tolist(), 50),
        "answer_tokens_p50": metrics.percentile(reqs.floats("answer_tokens", pooled), 50),
        "decode_tps_reasoning_p50": metrics.percentile(reqs.floats("decode_tps_reasoning", pooled), 50),
        "decode_tps_answer_p50": metrics.percentile(reqs.floats("decode_tps_answer", pooled), 50),
    }


def any_reasoning(cells: list[CellResult]) -> bool:
    return any(c.reasoning_requests for c in cells)


def sentence(cells: list[CellResult]) -> str:
    """How many model x configs streamed reasoning, in how many of their pooled requests, and the convention."""
    reasoning = [c for c in cells if c.reasoning_requests]
    k, n = len(reasoning), len(cells)
    r, total = sum(c.reasoning_requests for c in reasoning), sum(c.n_requests for c in reasoning)
    who = f"All {count(n, 'model x config')}" if k == n and n > 1 else (
        "The one model x config" if k == n else f"{k} of {count(n, 'model x config')}")
    return (f"{who} streamed reasoning before the answer, in {r} of {'its' if k == 1 else 'their'} "
            f"{count(total, 'pooled request')}. {CONVENTION}.")


def reasoning_table(data: ReportData) -> Table:
    states = [st for st in CACHE_STATES if st in data.cache.states]
    labels = " / ".join(CACHE_STATE_LABELS[st] for st in states)
    suffix = f" ({labels})" if states else ""
    cols = _cols("model", "config", ">requests with reasoning", f">TTFT p50 ms{suffix}", f">TTFAT p50 ms{suffix}",
                 ">reasoning tokens p50", ">answer tokens p50", ">reasoning decode tok/s p50",
                 ">answer decode tok/s p50")
    rows = [[c.model, c.config.label, f"{c.reasoning_requests} / {c.n_requests}",
             " / ".join(fmt(getattr(c, f"ttft_{st}_p50_ms")) for st in states) or "n/a",
             " / ".join(fmt(c.ttfat_p50_ms_by_state.get(st)) for st in states) or "n/a",
             fmt(c.reasoning_tokens_p50, 0), fmt(c.answer_tokens_p50, 0), fmt(c.decode_tps_reasoning_p50),
             fmt(c.decode_tps_answer_p50)] for c in data.cells]
    return Table(columns=cols, rows=rows)


def reasoning_tables(data: ReportData) -> dict[str, Table]:
    return {"reasoning": reasoning_table(data)} if any_reasoning(data.cells) else {}
