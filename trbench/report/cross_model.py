"""The cross-model parts of the report: winner by scenario, multi-agent % of baseline, the energy
frontier, VRAM against the estimate, quantization facts and sample answers.

Computed from the report's cell results (trbench.report.CellResult, trbench.report.multi_agent.ScenarioResult)
and the manifest; no formatting here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from trbench.data.budget_record import BudgetRecord
from trbench.data.model_facts import ModelFacts
from trbench.data.rows import CACHE_STATE_LABELS, CACHE_STATES, ttft_state
from trbench.measure import metrics
from trbench.report.data import RequestColumns, first_answer
from trbench.prose.english import join

WINNER_RULE = (
    "the model with the best median wins a scenario only when its bootstrap 95% interval overlaps no other "
    "model's interval; otherwise the scenario is a tie (the models whose intervals overlap the best one's are "
    "named); n/a with fewer than two models measured. Higher is better for throughput, speedup, efficiency and "
    "tokens per joule, lower for TTFT and latency")
FRONTIER_RULE = (
    "a model x config is on the efficiency frontier when no other one has both a higher (or equal) decode tok/s "
    "median and a higher (or equal) tokens-per-joule median, one of them strictly")
SMOKE_NOTE = ("This TR ran the spec cut by `trbench run --smoke`: every model and quality suite once, 1 run of 2 "
              "requests each, to show the setup works before the full run. It says pass or fail; it names no winner, "
              "draws no finding, and its intervals are n/a (an interval needs at least 2 runs).")
SMOKE_NO_WINNER = "a setup check (--smoke) names no winner: 1 run of 2 requests per model is not a measurement"
NO_GPU_ENERGY = "no GPU: energy not measured"
SAMPLE_CHARS = 600


class Estimate(BaseModel):
    value: float | None
    ci: tuple[float, float] | None = None
    n: int | None = None  # the values the median is over (TTFT: of that cache state)


class WinnerRow(BaseModel):
    scenario: str  # e.g. "single-agent decode tok/s", "multi-agent efficiency chimera_homo"
    config: str  # the config label, or "" for multi-agent rows
    metric: str  # what the estimates are: "decode tok/s median"
    higher_is_better: bool
    estimates: dict[str, Estimate]  # model -> median and interval (models without a value are absent)
    winner: str  # a model, "tie" or "n/a"
    reason: str


class MaPctRow(BaseModel):
    model: str
    scenario: str
    values: dict[str, float | None]  # field -> % of the baseline model's value in the same scenario


class EnergyPoint(BaseModel):
    model: str
    config: str
    decode_tps_p50: float | None
    tokens_per_j_p50: float | None
    tokens_per_j_ci: tuple[float, float] | None
    energy_j_p50: float | None
    runs_with_energy: int
    tokens_per_dollar_p50: float | None = None
    on_frontier: bool = False


class EnergySection(BaseModel):
    measured: bool
    note: str
    points: list[EnergyPoint]
    rule: str = FRONTIER_RULE


class VramRow(BaseModel):
    model: str
    num_gpu: int | None
    num_ctx: int | None
    estimate_gib: float | None
    decision: str
    reason: str
    measured_mib_max: float | None  # max gpu_mem_used_mib_max over the valid runs at the config actually run


class QuantRow(BaseModel):
    model: str
    quantization: str | None
    params_b: float | None
    bits_per_weight: float | None
    file_gib: float | None
    context_length: int | None
    source: str | None


class SampleAnswer(BaseModel):
    model: str
    config: str
    run_id: str
    prompt_id: str | None
    text: str  # raw model output (escaped by the renderers), cut to SAMPLE_CHARS
    truncated: bool


# --- winner by scenario -------------------------------------------------------------------------


def decide(estimates: dict[str, Estimate], higher_is_better: bool) -> tuple[str, str]:
    """(winner or 'tie' or 'n/a', why) by the interval rule."""
    have = {m: e for m, e in estimates.items() if e.value is not None}
    if len(have) < 2:
        return "n/a", "fewer than two models measured"
    pick = max if higher_is_better else min
    value = {m: e.value for m, e in have.items() if e.value is not None}  # all of have: the filter types them
    best = pick(value, key=value.__getitem__)
    if have[best].ci is None:
        return "tie", f"no interval for {best} (fewer than two values)"
    tied = [m for m in have if m != best and metrics.intervals_overlap(have[best].ci, have[m].ci)]
    if tied:
        return "tie", f"95% intervals overlap: {best} with {join(tied)}"
    return best, "95% interval separate from every other model's"


SINGLE_SCENARIOS: list[tuple[str, str, str, str, bool]] = [
    # scenario, value field, interval field, metric name, higher is better
    ("single-agent decode tok/s", "decode_tps_p50", "decode_tps_p50_ci", "decode tok/s median", True),
    # TTFT per cache state: a cold and a cached prefill differ tenfold and are never compared pooled
    *[(f"single-agent TTFT {CACHE_STATE_LABELS[st]}", f"ttft_{st}_p50_ms", f"ttft_{st}_p50_ci",
       f"TTFT p50 ms of {CACHE_STATE_LABELS[st]} prefills", False) for st in CACHE_STATES],
    ("single-agent e2e latency", "e2e_p50_ms", "e2e_p50_ci", "e2e p50 ms", False),
]
ENERGY_SCENARIO = ("single-agent tokens per joule", "tokens_per_j_p50", "tokens_per_j_ci", "tok/J median", True)


def _n_of(cell, field: str) -> int | None:
    """n of a cell figure: the TTFT values of its cache state, or the pooled requests."""
    if field.startswith("ttft_"):
        return getattr(cell, f"ttft_{ttft_state(field)}_n")
    return None if "tokens_per_j" in field else cell.n_requests


def winner_rows(cells: list, ma_results: list, models: list[str], energy_measured: bool) -> list[WinnerRow]:
    rows: list[WinnerRow] = []
    configs: list[str] = []
    for c in cells:
        if c.config.label not in configs:
            configs.append(c.config.label)
    scenarios = SINGLE_SCENARIOS + ([ENERGY_SCENARIO] if energy_measured else [])
    for scenario, field, ci_field, metric, higher in scenarios:
        for label in configs:
            at = {c.model: c for c in cells if c.config.label == label}
            estimates = {m: Estimate(value=getattr(at[m], field), ci=getattr(at[m], ci_field), n=_n_of(at[m], field))
                         for m in models if m in at and getattr(at[m], field) is not None}
            if not estimates and field.startswith("ttft_"):
                continue  # a cache state this TR did not measure at this config
            winner, reason = decide(estimates, higher)
            rows.append(WinnerRow(scenario=scenario, config=label, metric=metric, higher_is_better=higher,
                                  estimates=estimates, winner=winner, reason=reason))
    scenario_names: list[str] = []
    for r in ma_results:
        if r.scenario not in scenario_names:
            scenario_names.append(r.scenario)
    for scenario in scenario_names:
        at = {r.model: r for r in ma_results if r.scenario == scenario}
        estimates = {m: Estimate(value=at[m].efficiency_p50, ci=at[m].efficiency_p50_ci, n=at[m].valid_runs)
                     for m in models if m in at and at[m].efficiency_p50 is not None}
        winner, reason = decide(estimates, True)
        rows.append(WinnerRow(scenario=f"multi-agent efficiency {scenario}", config="", metric="efficiency % median",
                              higher_is_better=True, estimates=estimates, winner=winner, reason=reason))
    return rows


# --- multi-agent % of baseline --------------------------------------------------------------------

MA_PCT_FIELDS: list[tuple[str, str]] = [
    ("speedup_p50", "speedup median"),
    ("efficiency_p50", "efficiency % median"),
    ("concurrent_wall_s_mean", "concurrent wall s mean"),
]


def ma_pct_rows(ma_results: list, baseline: str | None) -> list[MaPctRow]:
    base = {r.scenario: r for r in ma_results if r.model == baseline}
    return [MaPctRow(model=r.model, scenario=r.scenario,
                     values={f: metrics.pct_of(getattr(r, f), getattr(base[r.scenario], f) if r.scenario in base
                                               else None) for f, _ in MA_PCT_FIELDS})
            for r in ma_results]


# --- energy ---------------------------------------------------------------------------------------


def _frontier(points: list[EnergyPoint]) -> None:
    usable = [(p, p.decode_tps_p50, p.tokens_per_j_p50) for p in points
              if p.decode_tps_p50 is not None and p.tokens_per_j_p50 is not None]
    for p, tps, tpj in usable:
        p.on_frontier = not any(
            q is not p and q_tps >= tps and q_tpj >= tpj and (q_tps > tps or q_tpj > tpj)
            for q, q_tps, q_tpj in usable)


def energy_section(cells: list, gpus: list[str]) -> EnergySection:
    points = [EnergyPoint(model=c.model, config=c.config.label, decode_tps_p50=c.decode_tps_p50,
                          tokens_per_j_p50=c.tokens_per_j_p50, tokens_per_j_ci=c.tokens_per_j_ci,
                          energy_j_p50=c.energy_j_p50, runs_with_energy=c.energy_runs,
                          tokens_per_dollar_p50=c.tokens_per_dollar_p50)
              for c in cells if c.tokens_per_j_p50 is not None]
    if not points:
        if not gpus:
            note = NO_GPU_ENERGY
        else:
            note = (f"energy not measured: the runs carry no energy readings although a GPU was seen "
                    f"({join(gpus)}); telemetry was off or the GPU reports no energy counter")
        return EnergySection(measured=False, note=note, points=[])
    _frontier(points)
    return EnergySection(measured=True, note="GPU energy of each run's measured window from the telemetry sampler; "
                         "tokens per joule = output tokens of the run's ok measured requests / that energy (J); "
                         "medians over the valid runs", points=points)


def run_energy(valid_runs: pd.DataFrame) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """Per valid run: (tokens per joule, energy J, tokens per dollar), as the run table has them
    (metrics.ENERGY_DEFINITIONS); None where a run has no reading."""
    return (_column(valid_runs, "tokens_per_j"), _column(valid_runs, "energy_j"),
            _column(valid_runs, "tokens_per_dollar"))


def gpu_mem_max(valid_runs: pd.DataFrame) -> float | None:
    values = [v for v in _column(valid_runs, "gpu_mem_used_mib_max") if v is not None]
    return max(values) if values else None


def _column(frame: pd.DataFrame, column: str) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in frame[column]]


# --- VRAM and quantization -----------------------------------------------------------------------


def vram_rows(budget: list[BudgetRecord], cells: list) -> list[VramRow]:
    measured: dict[tuple[str, int | None, int | None], float] = {}
    for c in cells:
        if c.gpu_mem_used_mib_max is not None:
            key = (c.model, c.config.num_gpu, c.config.num_ctx)
            measured[key] = max(measured.get(key, 0.0), c.gpu_mem_used_mib_max)
    rows = []
    for d in budget:
        decision = d.action
        run_gpu, run_ctx = d.num_gpu, d.num_ctx
        if d.action == "downgrade":
            decision = f"downgrade to gpu {d.to_num_gpu} / ctx {d.to_num_ctx}"
            run_gpu, run_ctx = d.to_num_gpu, d.to_num_ctx
        rows.append(VramRow(
            model=d.model, num_gpu=d.num_gpu, num_ctx=d.num_ctx, estimate_gib=d.estimate_gib, decision=decision,
            reason=d.reason, measured_mib_max=None if d.action == "skip" else measured.get((d.model, run_gpu, run_ctx)),
        ))
    return rows


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def quant_rows(facts: dict[str, ModelFacts], models: list[str]) -> list[QuantRow]:
    rows = []
    for name in models + sorted(set(facts) - set(models)):
        f = facts.get(name) or ModelFacts()
        size = _num(f.size_bytes)
        ctx = _num(f.context_length)
        row = QuantRow(
            model=name,
            quantization=f.quantization or (f.details.quantization_level if f.details is not None else None),
            params_b=_num(f.params_b),
            bits_per_weight=_num(f.bits_per_weight),
            file_gib=size / 2**30 if size else None,
            context_length=int(ctx) if ctx else None,
            source=f.source or f.file,
        )
        if any(v is not None for k, v in row.model_dump().items() if k != "model"):  # a row of n/a says nothing
            rows.append(row)
    return rows


# --- sample answers -------------------------------------------------------------------------------


def sample_answers(tr_root: Path, cells: list, reqs: RequestColumns, valid_ids: set[str]) -> list[SampleAnswer]:
    """Per model: the first measured ok answer of its first valid run (config order, run_index, attempt,
    request), read from that run's file only."""
    out, seen = [], set()
    candidates = reqs.rows(valid_ids)
    candidates = candidates[reqs.measured[candidates] & reqs.ok[candidates]]
    v = reqs.values
    for c in cells:
        if c.model in seen:
            continue
        rows = candidates[reqs.equals("model", c.model)[candidates]]
        rows = rows[(v["num_gpu"][rows] == c.config.num_gpu) & (v["num_ctx"][rows] == c.config.num_ctx)
                    & (v["temperature"][rows] == c.config.temperature)]
        rows = rows[np.lexsort((v["request_index"][rows], v["attempt"][rows], v["run_index"][rows]))]
        found = first_answer(tr_root, reqs, rows)
        if found is None:
            continue
        run_id, text, prompt_id = found
        out.append(SampleAnswer(model=c.model, config=c.config.label, run_id=run_id, prompt_id=prompt_id,
                                text=text[:SAMPLE_CHARS], truncated=len(text) > SAMPLE_CHARS))
        seen.add(c.model)
    return out
