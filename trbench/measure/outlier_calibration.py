"""How often the outlier rule (trbench.measure.outliers) recommends a re-run by chance, and how often it
catches a slow run, measured by resampling real runs.

Reference data (outlier_reference.csv beside this module): the per-run figures the rule reads
(decode_tps_mean, ttft_<state>_ms_p50, the multi-agent speedup and the agents' concurrent figures)
of healthy quickstart TRs (`trbench run deployments/quickstart.yaml`, 2 models x 2 contexts, 3 runs,
TTFT cold and cached, and the multi-agent scenarios), run on an otherwise idle 2-core CPU;
`bench/outlier_calibration.py --extract` writes it from TR folders, its `source` column names the
TR run each row comes from.

A resampled TR: for every config of one TR run of the reference, n runs drawn with replacement from
that config's measured runs in that TR run (whole runs: a run's decode and TTFT figures stay
together), flagged by the rule.
  false alarm   the share of configs with at least one flagged run, i.e. recommended for a re-run,
                over the resampled TRs: the configs are healthy, so every recommendation is one
  detection     one run of each resampled config made slower: decode throughput x (1 - 20 %),
                or TTFT x (1 + 50 %), one metric at a time; the share of those runs flagged on
                that metric (the speedup, a ratio of two walls, is not injected)
Drawing with replacement from the few runs a config has repeats values; repeated values shrink MAD,
so the false-alarm figure leans high, not low.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from trbench.config.spec import OutlierRule
from trbench.data import store
from trbench.measure import outliers

REFERENCE = Path(__file__).with_name("outlier_reference.csv")
REFERENCE_COLUMNS = ["source", "kind", "config", "run_index", "metric", "value"]
DECODE_SLOWDOWN = 0.20  # the injected run's decode throughput x (1 - this)
TTFT_SLOWDOWN = 0.50  # the injected run's TTFT x (1 + this)
DRAWS = 2000
SEED = 0


class ConfigRate(BaseModel):
    source: str  # the TR run the draws come from
    kind: str
    config: str
    runs_measured: int  # runs of this config in the reference, what the draws come from
    false_alarm: float


class Calibration(BaseModel):
    """One rule at one run count on one reference: the measured rates, shares in 0..1."""

    n_runs: int
    draws: int
    configs: list[ConfigRate]
    false_alarm: dict[str, float]  # kind (single, multi, all) -> share of healthy configs recommended for re-run
    detection: dict[str, float]  # decode, ttft -> share of injected slow runs flagged
    detection_min: dict[str, float]  # decode, ttft -> the lowest of those shares over configs x metrics


def extract(tr_roots: list[Path]) -> pd.DataFrame:
    """The reference rows (REFERENCE_COLUMNS) of TR folders: every counted run's figures the rule reads."""
    rows = []
    for root in tr_roots:
        root = Path(root)
        for kind, table, config, metrics in (("single", "runs", outliers.SINGLE_CONFIG, outliers.SINGLE_METRICS),
                                             ("multi", "ma_runs", outliers.MULTI_CONFIG, outliers.MULTI_METRICS)):
            counted = outliers.counted_runs(store.read_frame(root, table), config)
            for rec in counted.to_dict("records"):
                key = outliers.config_key(kind, rec)
                for metric in metrics:
                    value = outliers.as_number(rec.get(metric))
                    if value is not None:
                        rows.append({"source": root.name, "kind": kind, "config": key,
                                     "run_index": int(rec["run_index"]), "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)


def synthetic(decode_cv: float, ttft_cv: float, runs: int = 400, seed: int = 1) -> pd.DataFrame:
    """Reference rows shaped like the quickstart (4 single-agent configs: decode, TTFT cold and cached; 4
    multi-agent: speedup, the agents' decode and TTFT) whose runs vary by normal noise of the given CVs
    (decode_cv on decode and speedup): the rule's rates on a machine of a known noise."""
    rng = np.random.default_rng(seed)
    shape = {"single": ["decode_tps_mean", "ttft_cold_ms_p50", "ttft_cached_ms_p50"], "multi": outliers.MULTI_METRICS}
    rows = [{"source": "synthetic", "kind": kind, "config": f"{kind}{c}", "run_index": i, "metric": m,
             "value": 100.0 * (1 + (ttft_cv if outliers.is_ttft(m) else decode_cv) * rng.standard_normal())}
            for kind, metrics in shape.items() for c in range(4) for i in range(runs) for m in metrics]
    return pd.DataFrame(rows, columns=REFERENCE_COLUMNS)


def load_reference(path: Path = REFERENCE) -> pd.DataFrame:
    return pd.read_csv(path)


def _run_matrices(reference: pd.DataFrame) -> list[tuple[str, str, str, list[str], np.ndarray]]:
    """Per TR run x config: (source, kind, config, metrics, runs x metrics values), runs with every metric
    measured. Two TR runs of one config are never pooled: a busier machine on one day shifts every run of
    that TR, which is not run-to-run noise within a TR."""
    out = []
    for (source, kind, config), group in reference.groupby(["source", "kind", "config"], sort=True):
        wide = group.pivot_table(index="run_index", columns="metric", values="value").dropna()
        if not wide.empty:
            out.append((str(source), str(kind), str(config), [str(m) for m in wide.columns],
                        wide.to_numpy(dtype=np.float64)))
    return out


def _flagged(values: np.ndarray, rule: OutlierRule, metric: str) -> np.ndarray:
    """values: draws x runs of one metric; which of them the rule flags."""
    med, _, threshold = outliers.mad_scale(values, rule.k, outliers.metric_floor(rule, metric))
    return np.abs(values - med[:, None]) > threshold[:, None]


def calibrate(reference: pd.DataFrame, rule: OutlierRule, n_runs: int, draws: int = DRAWS,
              seed: int = SEED) -> Calibration:
    """False-alarm and detection rates of `rule` on TRs of n_runs runs per config resampled from reference."""
    rng = np.random.default_rng(seed)
    configs: list[ConfigRate] = []
    detected: dict[str, list[float]] = {"decode": [], "ttft": []}
    for source, kind, config, metrics, runs in _run_matrices(reference):
        drawn = runs[rng.integers(0, len(runs), size=(draws, n_runs))]  # draws x n_runs x metrics
        recommended = np.zeros(draws, dtype=bool)
        for j, metric in enumerate(metrics):
            values = drawn[:, :, j]
            recommended |= _flagged(values, rule, metric).any(axis=1)
            if metric == "speedup" or outliers.is_concurrent(metric) or n_runs < 1:
                continue  # detection is asked of a run's own decode and TTFT, not of figures shared by two agents
            slow = values.copy()
            slow[:, 0] *= (1 + TTFT_SLOWDOWN) if outliers.is_ttft(metric) else (1 - DECODE_SLOWDOWN)
            detected["ttft" if outliers.is_ttft(metric) else "decode"].append(
                float(_flagged(slow, rule, metric)[:, 0].mean()))
        configs.append(ConfigRate(source=source, kind=kind, config=config, runs_measured=len(runs),
                                  false_alarm=float(recommended.mean())))
    false_alarm = {kind: float(np.mean([c.false_alarm for c in configs if c.kind == kind]))
                   for kind in dict.fromkeys(c.kind for c in configs)}
    if configs:
        false_alarm["all"] = float(np.mean([c.false_alarm for c in configs]))
    return Calibration(n_runs=n_runs, draws=draws, configs=configs, false_alarm=false_alarm,
                       detection={f: float(np.mean(v)) for f, v in detected.items() if v},
                       detection_min={f: float(np.min(v)) for f, v in detected.items() if v})


def family(metric: str) -> str:
    """decode (throughput), ttft or speedup: the families whose run-to-run noise differs."""
    return "ttft" if outliers.is_ttft(metric) else "speedup" if metric == "speedup" else "decode"


def noise(reference: pd.DataFrame) -> dict[str, float]:
    """Run-to-run noise per metric family: the median over configs of the coefficient of variation of the
    per-run values (sample SD / mean), each config within its own TR run (reference rows, or one TR's flag
    rows, which have no source). Comparable with synthetic()'s CVs."""
    out: dict[str, list[float]] = {}
    keys = [c for c in ("source", "kind", "config", "metric") if c in reference.columns]
    for (*_, metric), group in reference.groupby(keys, sort=True):
        values = group["value"].to_numpy(dtype=np.float64)
        if len(values) >= 3 and values.mean():
            out.setdefault(family(str(metric)), []).append(float(values.std(ddof=1) / abs(values.mean())))
    return {f: float(np.median(v)) for f, v in sorted(out.items())}


@lru_cache(maxsize=32)
def expected(rule: OutlierRule, n_runs: int) -> Calibration:
    """calibrate() on the bundled reference (what the report states for a TR's rule and run count)."""
    return calibrate(load_reference(), rule, n_runs)
