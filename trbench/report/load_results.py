"""The load section of the report: every step's figures, each model's saturation point and goodput,
from the load_steps table alone (the figures were computed from the raw records when each step was
written: measure/load_metrics.py). Re-run steps: only the latest attempt counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from trbench.data.cells import config_label
from trbench.data.rows import EmbeddingEnergy, Energy, LoadFigures
from trbench.data.store import read_frame
from trbench.measure.load_metrics import LOAD_DEFINITIONS, batched_prefill_wait, saturation_point

_STEP_KEYS = ["model", "num_gpu", "num_ctx", "temperature", "step_index", "step_label"]


class LoadStepResult(Energy, LoadFigures):
    model: str
    config: str
    step_index: int
    step_label: str
    mode: str
    concurrency: int | None = None
    rate: float | None = None
    slots: int | None = None
    max_queue: int | None = None
    max_tokens: int | None = None
    valid: bool = True
    invalid_reason: str | None = None
    stop_reason: str | None = None  # why the cell's later steps were not run (run/sweep_stop.py)


class LoadModelSummary(BaseModel):
    model: str
    config: str
    steps: int
    saturation_rps: float | None  # LOAD_DEFINITIONS['saturation point']
    best_goodput_rps: float | None
    best_goodput_step: str | None
    peak_output_tps: float | None


# the emb_steps columns the embeddings table shows (report/embeddings_table.py)
_EMB_COLUMNS = ["run_id", "attempt", "model", "instance", "batch_size", "concurrency", "n_requests", "n_errors",
                "error_kinds", "texts_per_s", "tokens_per_s", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                "within_slo_pct", "slo_ms", *EmbeddingEnergy.model_fields]


class LoadSection(BaseModel):
    steps: list[LoadStepResult]
    summaries: list[LoadModelSummary]
    slo: dict[str, float]
    stop_rules: dict[str, float] = {}  # the spec's stopping rules the steps were measured under (none: no rule)
    definitions: dict[str, str]
    embedding_steps: list[dict] = []  # the embeddings workload's step rows (_EMB_COLUMNS), as stored


def _none(v):
    """A stored value as Python: pandas' missing values as None, a list column's array as a list."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v


def build_load(tr_root: Path, models: list[str]) -> LoadSection | None:
    """The load section of a TR run's report; None when it measured no load step."""
    steps = read_frame(Path(tr_root), "load_steps")
    emb = read_frame(Path(tr_root), "emb_steps")
    embedding_steps = [{k: _none(v) for k, v in r.items()} for r in emb[_EMB_COLUMNS].to_dict("records")]
    if steps.empty:
        return LoadSection(steps=[], summaries=[], slo={}, definitions=dict(LOAD_DEFINITIONS),
                           embedding_steps=embedding_steps) if embedding_steps else None
    top = steps.groupby(_STEP_KEYS, dropna=False)["attempt"].transform("max")
    steps = steps[steps["attempt"] == top]
    order = {m: i for i, m in enumerate(models)}
    steps = steps.assign(_order=steps["model"].map(lambda m: order.get(m, len(order)))).sort_values(
        ["_order", "model", "num_gpu", "num_ctx", "temperature", "step_index"])
    results = []
    for r in steps.to_dict("records"):
        r = {k: _none(v) for k, v in r.items()}
        results.append(LoadStepResult(config=config_label(r["num_gpu"], r["num_ctx"], r["temperature"],
                                                                  r.get("server_settings")),
                                      **{k: r[k] for k in LoadStepResult.model_fields if k in r}))
    summaries = []
    for (model, config), group in _groups(results).items():
        counted = [s for s in group if s.valid]
        best = max(counted, key=lambda s: s.goodput_rps or 0.0, default=None)
        summaries.append(LoadModelSummary(
            model=model, config=config, steps=len(group),
            saturation_rps=saturation_point([s.model_dump() for s in counted]),
            best_goodput_rps=best.goodput_rps if best else None, best_goodput_step=best.step_label if best else None,
            peak_output_tps=max((s.output_tps for s in counted if s.output_tps is not None), default=None)))
    first = steps.iloc[0]
    slo = {k.removeprefix("slo_"): float(first[k]) for k in ("slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms")
           if _none(first[k]) is not None}
    stop_rules = {k: float(first[k]) for k in ("stop_below_good_pct", "stop_queue_growth")
                  if k in first and _none(first[k]) is not None}  # older files have no such column
    return LoadSection(steps=results, summaries=summaries, slo=slo, stop_rules=stop_rules,
                       definitions=dict(LOAD_DEFINITIONS), embedding_steps=embedding_steps)


def _groups(results: list[LoadStepResult]) -> dict[tuple[str, str], list[LoadStepResult]]:
    out: dict[tuple[str, str], list[LoadStepResult]] = {}
    for s in results:
        out.setdefault((s.model, s.config), []).append(s)
    return out


class BatchedPrefill(BaseModel):
    """One step whose streams each had a slot, beside its model x config's concurrency-1 step."""

    model: str
    config: str
    step_label: str
    concurrency: int
    slots: int
    prefill_ms_p50: float | None
    alone_prefill_ms_p50: float
    queue_ms_p50: float | None
    wait_ms: float | None  # LOAD_DEFINITIONS['batched prefill wait']


def batched_prefills(section: LoadSection) -> list[BatchedPrefill]:
    """The valid closed-loop steps with slots >= concurrency > 1 of each model x config that has a valid
    concurrency-1 step with a prefill time: the wait inside a batched prefill."""
    out = []
    for (model, config), steps in _groups(section.steps).items():
        closed = [s for s in steps if s.valid and s.mode == "concurrency" and s.concurrency is not None]
        alone = next((s.prefill_ms_p50 for s in closed if s.concurrency == 1 and s.prefill_ms_p50 is not None), None)
        if alone is None:
            continue
        for s in closed:
            assert s.concurrency is not None  # closed steps have one
            if s.concurrency > 1 and s.slots is not None and s.slots >= s.concurrency:
                out.append(BatchedPrefill(model=model, config=config, step_label=s.step_label,
                                          concurrency=s.concurrency, slots=s.slots, prefill_ms_p50=s.prefill_ms_p50,
                                          alone_prefill_ms_p50=alone, queue_ms_p50=s.queue_ms_p50,
                                          wait_ms=batched_prefill_wait(s.prefill_ms_p50, alone)))
    return out
