"""Regression detection: a TR run against a stored baseline TR run, over the same matrix cells.

Cells are matched on workload, model and config values (report/matching.py, the one rule `trbench
compare` uses too): single-agent cells on GPU layers, context and temperature, multi-agent results on
the scenario, load steps on config, mode and concurrency or rate. So a baseline measured on another
provider, backend or server compares the same model x config; the settings that differ between the two
TRs (TrSettings: provider, backend, server, max_tokens, TTFT mode, hardware ...) are named beside the
result. A cell of one TR with no match in the other is listed as missing on its side, not compared.

Per matched cell and metric (the same numbers the report prints, from build_report):

  metric                  better   figure
  decode tok/s median     higher   pooled p50 of decode_tps
  TTFT <state> p50 ms     lower    p50 of ttft_ms per cache state (every state of CACHE_STATES),
                                   compared only where both runs measured that state
  e2e p95 ms              lower    pooled p95 of e2e_ms
  efficiency % median     higher   p50 over the valid runs' efficiency_pct (multi-agent)
  load: output tok/s, req/s, goodput req/s (higher) and TTFT p95, e2e p99 (lower) per valid load
  step (report/load_results.py)

change % = (current - baseline) / baseline x 100. A regression is a change worse than the
threshold (default 10 %, strictly more), in the metric's bad direction; an improvement is a change
better than the threshold. Missing cells are listed but are neither.

"No regressions" is said only when at least one cell was compared (a metric measured on both sides).
With none, the result says "nothing compared" and why: the settings that differ between the two TRs
(TrSettings, recorded beside each report), the models and configs among them.

Prefect-free; the report flow turns `has_regressions` and `nothing_compared` into a Failed state and
the CLI into exit code 3 (regressions) or 4 (nothing compared).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from trbench.data.rows import CACHE_STATE_LABELS, CACHE_STATES, ttft_state
from trbench.measure.load_metrics import LOAD_METRICS
from trbench.report.matching import RULE as MATCH_RULE
from trbench.report.matching import CellKey, cell_key
from trbench.prose.english import count, verb

DEFAULT_THRESHOLD_PCT = 10.0
EXIT_REGRESSION = 3
EXIT_NOTHING_COMPARED = 4  # a baseline was given but no cell of it matched: the check did not happen

# (field of the cell result, display name, higher is better)
SINGLE_METRICS: list[tuple[str, str, bool]] = [
    ("decode_tps_p50", "decode tok/s median", True),
    *[(f"ttft_{st}_p50_ms", f"TTFT {CACHE_STATE_LABELS[st]} p50 ms", False) for st in CACHE_STATES],
    ("e2e_p95_ms", "e2e p95 ms", False),
]
MULTI_METRICS: list[tuple[str, str, bool]] = [
    ("efficiency_p50", "efficiency % median", True),
]

Kind = Literal["single", "multi", "load"]

Verdict = Literal["regression", "improvement", "within threshold", "not comparable"]


class Comparison(BaseModel):
    kind: Kind
    key: str  # the config values it is matched on, as text (matching.MATCHED_ON)
    label: str  # model and config / scenario, for people
    metric: str
    higher_is_better: bool
    baseline: float | None
    current: float | None
    change_pct: float | None  # (current - baseline) / baseline x 100
    verdict: Verdict
    n_baseline: int | None = None  # values each figure is over (TTFT: of its cache state; multi-agent: valid runs)
    n_current: int | None = None


class MissingCell(BaseModel):
    kind: Kind
    key: str
    label: str
    side: Literal["only in the baseline", "only in the current run"]


class SettingDifference(BaseModel):
    setting: str
    current: list[str]
    baseline: list[str]

    def __str__(self) -> str:
        return (f"{self.setting} {', '.join(self.current) or 'none'} here, "
                f"{', '.join(self.baseline) or 'none'} in the baseline")


class TrSettings(BaseModel):
    """What a TR measured and under which settings, each as the sorted values it measured or recorded;
    [] where it has none (no such workload, or no spec recorded). Two TRs' cells are matched on workload,
    model and config values (matching.py); every field here that differs is named beside a comparison."""

    workloads: list[str] = []  # the compared ones: single, multi, load
    models: list[str] = []
    configs: list[str] = []  # GPU layers, context size, temperature
    provider: list[str] = []
    backend: list[str] = []
    server: list[str] = []  # the server software and its version where the manifest records it
    max_tokens: list[str] = []
    ttft: list[str] = []
    prompts: list[str] = []
    seed: list[str] = []
    harness: list[str] = []
    multi_agent_scenarios: list[str] = []
    load_steps: list[str] = []
    server_slots: list[str] = []
    server_queue: list[str] = []
    gpus: list[str] = []
    cpu: list[str] = []

    def differences(self, baseline: TrSettings) -> list[SettingDifference]:
        return [SettingDifference(setting=name, current=getattr(self, name), baseline=getattr(baseline, name))
                for name in type(self).model_fields if getattr(self, name) != getattr(baseline, name)]


class RegressionResult(BaseModel):
    tr_id: str
    baseline_tr_id: str
    threshold_pct: float
    comparisons: list[Comparison]
    missing: list[MissingCell]
    rule: str
    differences: list[SettingDifference] = []  # the settings that differ between the two TRs

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    @property
    def improvements(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "improvement"]

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressions)

    @property
    def matched_cells(self) -> int:
        return len({(c.kind, c.label, c.key) for c in self.comparisons})

    @property
    def compared_cells(self) -> int:
        """Matched cells with at least one metric measured on both sides: what a verdict is over."""
        return len({(c.kind, c.label, c.key) for c in self.comparisons if c.verdict != "not comparable"})

    @property
    def nothing_compared(self) -> bool:
        return self.compared_cells == 0

    @property
    def why_nothing_compared(self) -> str:
        """Why no cell was compared: the settings that differ, named."""
        if self.matched_cells:
            return (f"{'the one matched cell' if self.matched_cells == 1 else f'the {self.matched_cells} matched cells'} "
                    f"{verb('has', self.matched_cells)} no metric measured on both sides")
        why = (f"no cell of {self.tr_id} matches one of {self.baseline_tr_id} (cells are matched on workload, model "
               "and config values)")
        if self.differences:
            return f"{why}; settings that differ: " + "; ".join(str(d) for d in self.differences)
        return f"{why}; no recorded setting differs"


def rule_text(threshold_pct: float) -> str:
    return (f"change % = (current - baseline) / baseline x 100 per matched cell; a regression is a change more than "
            f"{threshold_pct:g} % in the bad direction (decode tok/s and efficiency lower, TTFT and e2e latency "
            f"higher), an improvement more than {threshold_pct:g} % in the good direction; {MATCH_RULE}")


def verdict(baseline: float | None, current: float | None, higher_is_better: bool,
            threshold_pct: float) -> tuple[float | None, Verdict]:
    """(change %, verdict) of one metric of one matched cell."""
    if baseline is None or current is None or baseline == 0:
        return None, "not comparable"
    change = (current - baseline) / abs(baseline) * 100.0
    worse = -change if higher_is_better else change
    if worse > threshold_pct:
        return change, "regression"
    if -worse > threshold_pct:
        return change, "improvement"
    return change, "within threshold"


def _n(cell, field: str) -> int | None:
    if field.startswith("ttft_"):
        return getattr(cell, f"ttft_{ttft_state(field)}_n", None)
    if hasattr(cell, "step_label"):  # a load step: its figures are over its ok measured requests
        return cell.n_ok
    return getattr(cell, "n_requests", None) if hasattr(cell, "n_requests") else getattr(cell, "valid_runs", None)


def _single_cells(data) -> dict[CellKey, tuple[str, str, object]]:
    """match key -> (label, matched values as text, cell result)"""
    return {cell_key("single_agent", c.model, {"num_gpu": c.config.num_gpu, "num_ctx": c.config.num_ctx,
                                                "temperature": c.config.temperature,
                                                "server_settings": c.config.server_settings or None}):
            (f"{c.model} {c.config.label}", c.config.label, c) for c in data.cells}


def _multi_cells(data) -> dict[CellKey, tuple[str, str, object]]:
    if data.multi_agent is None:
        return {}
    return {cell_key("multi_agent", r.model, {"scenario": r.scenario}): (f"{r.model} {r.scenario}", r.scenario, r)
            for r in data.multi_agent.results}


def _load_cells(data) -> dict[CellKey, tuple[str, str, object]]:
    load = getattr(data, "load", None)
    if load is None:
        return {}
    return {cell_key("load", s.model, {"config": s.config, "mode": s.mode, "concurrency": s.concurrency,
                                       "rate": s.rate}):
            (f"{s.model} {s.config} {s.step_label}", f"{s.config} {s.step_label}", s) for s in load.steps if s.valid}


def compare(current, baseline, threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> RegressionResult:
    """Compare two built reports (trbench.report.ReportData) cell by cell. Whoever has both builds them
    (build_report with baseline_root does); nothing here reads Parquet or imports the report."""
    for side, report in (("baseline", baseline), ("current", current)):
        if any(i.provider == "mock" for i in report.setup.instances):
            raise ValueError(f"the {side} TR {report.tr_id} ran on the mock provider: its figures are canned answers "
                             "of the harness, never a baseline nor compared with one; fix: compare two real TRs")
    comparisons: list[Comparison] = []
    missing: list[MissingCell] = []
    for kind, cells_of, metric_list in (("single", _single_cells, SINGLE_METRICS),
                                        ("multi", _multi_cells, MULTI_METRICS),
                                        ("load", _load_cells, LOAD_METRICS)):
        cur, base = cells_of(current), cells_of(baseline)
        for match, (label, key, cell) in cur.items():
            if match not in base:
                missing.append(MissingCell(kind=kind, key=key, label=label, side="only in the current run"))
                continue
            base_cell = base[match][2]
            for field, name, higher in metric_list:
                b, c = getattr(base_cell, field), getattr(cell, field)
                if b is None and c is None:
                    continue  # neither run measured it (a cache state the TR does not measure)
                change, v = verdict(b, c, higher, threshold_pct)
                comparisons.append(Comparison(kind=kind, key=key, label=label, metric=name, higher_is_better=higher,
                                              baseline=b, current=c, change_pct=change, verdict=v,
                                              n_baseline=_n(base_cell, field), n_current=_n(cell, field)))
        missing += [MissingCell(kind=kind, key=key, label=label, side="only in the baseline")
                    for match, (label, key, _) in base.items() if match not in cur]
    cur_settings, base_settings = getattr(current, "settings", None), getattr(baseline, "settings", None)
    differences = (cur_settings.differences(base_settings)
                   if cur_settings is not None and base_settings is not None else [])
    return RegressionResult(tr_id=current.tr_id, baseline_tr_id=baseline.tr_id, threshold_pct=threshold_pct,
                            comparisons=comparisons, missing=missing, rule=rule_text(threshold_pct),
                            differences=differences)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def describe(c: Comparison) -> str:
    return f"{c.label} {c.metric} {c.change_pct:+.1f}% ({_fmt(c.baseline)} -> {_fmt(c.current)})"


def summary_message(result: RegressionResult, limit: int = 5) -> str:
    """One line for a flow state or a CI log: the regressions first, then the counts."""
    head = f"{result.tr_id} vs baseline {result.baseline_tr_id} (threshold {result.threshold_pct:g}%)"
    counts = (f"{count(len(result.improvements), 'improvement')}, {count(result.matched_cells, 'matched cell')}, "
              f"{count(len(result.missing), 'cell')} on one side only")
    if result.nothing_compared:  # never "no regressions": the check did not happen
        return f"{head}: nothing compared: {result.why_nothing_compared} ({counts})"
    if not result.regressions:
        return f"{head}: no regressions; {counts}"
    listed = "; ".join(describe(c) for c in result.regressions[:limit])
    more = f"; and {len(result.regressions) - limit} more" if len(result.regressions) > limit else ""
    return f"{head}: {count(len(result.regressions), 'regression')}: {listed}{more}; {counts}"
