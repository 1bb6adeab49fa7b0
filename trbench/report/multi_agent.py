"""The multi-agent half of the report: per model x scenario, from the ma_runs Parquet rows alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from trbench.data.cells import MULTI_CONFIG_COLUMNS, latest_attempts
from trbench.measure import metrics
from trbench.config.spec import SCENARIOS
from trbench.data.store import read_frame

AGENT_FIELDS = [(role, phase, name) for role in ("collector", "insight") for phase in ("concurrent", "solo")
                for name in ("decode_tps", "ttft_ms")]


class ScenarioResult(BaseModel):
    model: str
    scenario: str
    runs: int
    valid_runs: int
    speedup_mean: float | None
    speedup_p50: float | None
    speedup_min: float | None
    speedup_p50_ci: tuple[float, float] | None = None  # bootstrap 95% interval over the per-run values
    efficiency_mean: float | None
    efficiency_p50: float | None
    efficiency_min: float | None
    efficiency_p50_ci: tuple[float, float] | None = None
    efficiency_runs: list[float | None] = []  # per valid run, in run_index order
    config_hashes: list[str] = []  # the runs' config hashes (cell_hash column): what a baseline TR matches on
    concurrent_wall_s_mean: float | None
    sequential_wall_s_mean: float | None
    contention_runs: int
    agents: dict[str, float | None]  # "<role>_<phase>_<metric>" -> mean over valid runs
    delta_decode_tps: float | None
    delta_ttft_ms: float | None
    collector_options: str
    insight_options: str
    ttft_states: str = "unknown"  # the cache states of the measured calls the agent TTFTs are over, with n


class MultiAgentSection(BaseModel):
    results: list[ScenarioResult]
    definitions: dict[str, str]
    contention_rules: list[str]
    scenarios: dict[str, str]
    invalid_runs: list[dict]


def _vals(frame: pd.DataFrame, col: str) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in frame[col]] if col in frame else []


def _min(values: list[float | None]) -> float | None:
    a = metrics.clean(values)
    return float(a.min()) if a.size else None


def _states(requests: pd.DataFrame, run_ids: pd.Series) -> str:
    """'cached (48)' or 'cached 40, partial 8': what the agents' TTFT means, from the server's counts."""
    calls = requests[requests["run_id"].isin(run_ids) & (requests["phase"] != "warmup") & (requests["status"] == "ok")]
    counts = calls["cache_state"].fillna("unknown").value_counts()
    if counts.empty:
        return "none"
    if len(counts) == 1:
        return f"{counts.index[0]} ({int(counts.iloc[0])})"
    return "mixed: " + ", ".join(f"{k} {int(v)}" for k, v in counts.items())


def _scenario(model: str, scenario: str, runs: pd.DataFrame, requests: pd.DataFrame) -> ScenarioResult:
    valid = runs[runs["valid"].astype(bool)].sort_values("run_index")
    speedups, effs = _vals(valid, "speedup"), _vals(valid, "efficiency_pct")
    first = runs.iloc[0]
    return ScenarioResult(
        model=model, scenario=scenario, runs=len(runs), valid_runs=len(valid),
        speedup_mean=metrics.mean(speedups), speedup_p50=metrics.percentile(speedups, 50), speedup_min=_min(speedups),
        speedup_p50_ci=metrics.bootstrap_median_ci(speedups),
        efficiency_mean=metrics.mean(effs), efficiency_p50=metrics.percentile(effs, 50), efficiency_min=_min(effs),
        efficiency_p50_ci=metrics.bootstrap_median_ci(effs), efficiency_runs=effs,
        config_hashes=sorted(set(runs["cell_hash"].dropna().astype(str))),
        concurrent_wall_s_mean=metrics.mean(_vals(valid, "concurrent_wall_s")),
        sequential_wall_s_mean=metrics.mean(_vals(valid, "sequential_wall_s")),
        contention_runs=int(valid["contention"].fillna(False).astype(bool).sum()),
        agents={f"{r}_{p}_{n}": metrics.mean(_vals(valid, f"{r}_{p}_{n}")) for r, p, n in AGENT_FIELDS},
        delta_decode_tps=metrics.mean(_vals(valid, "delta_decode_tps")),
        delta_ttft_ms=metrics.mean(_vals(valid, "delta_ttft_ms")),
        collector_options=str(first.get("collector_options") or ""),
        insight_options=str(first.get("insight_options") or ""),
        ttft_states=_states(requests, valid["run_id"]),
    )


def build_multi_agent(tr_root: Path, models_order: list[str], harness: str | None = None) -> MultiAgentSection | None:
    """The multi-agent section; harness: of that harness's runs only (None: all runs)."""
    all_runs = read_frame(tr_root, "ma_runs")
    if harness is not None:
        all_runs = all_runs[all_runs["harness"] == harness]
    if all_runs.empty:
        return None
    runs = latest_attempts(all_runs, MULTI_CONFIG_COLUMNS)[0]
    requests = read_frame(tr_root, "ma_requests", ["run_id", "phase", "status", "cache_state"])  # what _states reads
    order = models_order + sorted(set(runs["model"]) - set(models_order))
    results = [
        _scenario(model, scenario, runs[(runs["model"] == model) & (runs["scenario"] == scenario)], requests)
        for model in order
        for scenario in [s for s in SCENARIOS if s in set(runs["scenario"])]
        if ((runs["model"] == model) & (runs["scenario"] == scenario)).any()
    ]
    invalid = runs[~runs["valid"].astype(bool)]
    return MultiAgentSection(
        results=results,
        definitions=dict(metrics.MULTI_AGENT_DEFINITIONS),
        contention_rules=sorted(set(runs["contention_rule"].dropna().astype(str))),
        scenarios={s: SCENARIOS[s] for s in SCENARIOS if s in set(runs["scenario"])},
        invalid_runs=[{"model": r.model, "scenario": r.scenario, "run_id": r.run_id, "invalid_reason": r.invalid_reason}
                      for r in invalid.itertuples()],
    )
