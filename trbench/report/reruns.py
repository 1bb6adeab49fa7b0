"""The outliers and re-runs part of the report, from the flags and run files alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from trbench.config.spec import OutlierRule
from trbench.data.cells import config_label
from trbench.data.rows import CACHE_STATE_LABELS, CACHE_STATES
from trbench.measure import metrics
from trbench.measure import outlier_calibration
from trbench.data.store import read_frame
from trbench.prose.english import count, join

# per kind: the columns naming a config, and the run metrics compared between attempts
_CONFIG = {"single": ["model", "num_gpu", "num_ctx", "temperature"], "multi": ["model", "scenario"]}
_COMPARED = {"single": [("decode_tps_mean", "decode tok/s"),
                        *[(f"ttft_{st}_ms_p50", f"TTFT {CACHE_STATE_LABELS[st]} p50 ms") for st in CACHE_STATES]],
             "multi": [("speedup", "speedup"), ("efficiency_pct", "efficiency %")]}


class FlaggedRun(BaseModel):
    kind: str
    config: str
    run_id: str
    attempt: int
    metric: str
    value: float | None
    median: float | None
    mad: float | None
    threshold: float | None


class OutlierRuleText(BaseModel):
    """What the outlier section says about the rule: its figures and the sentences stating it."""

    k: float
    min_rel_mad: float
    min_rel_mad_ttft: float
    sentences: list[str]


class Rerun(BaseModel):
    kind: str
    config: str
    metric: str
    attempts: list[int]
    before: float | None  # median over the runs of the previous attempt
    after: float | None   # median over the runs of the latest attempt
    change_pct: float | None
    before_ci: tuple[float, float] | None = None  # bootstrap 95% intervals over the per-run values
    after_ci: tuple[float, float] | None = None


def _label(kind: str, row) -> str:
    if kind == "multi":
        return f"{row['model']} {row['scenario']}"
    return f"{row['model']} {config_label(row['num_gpu'], row['num_ctx'], row['temperature'], row.get('server_settings'))}"


def flagged_runs(flags: pd.DataFrame) -> list[FlaggedRun]:
    if flags.empty:
        return []
    hit = flags[flags["flagged"].fillna(False).astype(bool)]
    return [FlaggedRun(kind=r["kind"], config=str(r["config"]), run_id=r["run_id"], attempt=int(r["attempt"]),
                       metric=r["metric"], value=r["value"], median=r["median"], mad=r["mad"], threshold=r["threshold"])
            for _, r in hit.iterrows()]


def _pct(share: float) -> str:
    pct = 100 * share
    return "0 %" if pct == 0 else "under 1 %" if pct < 1 else f"{pct:.0f} %"


def _share(x: float) -> str:
    return f"{round(100 * x, 4):g} %"


def _noise(by_family: dict[str, float]) -> str:
    names = {"decode": "decode tok/s", "speedup": "speedup", "ttft": "TTFT"}
    return ", ".join(f"{names[f]} {100 * v:.1f} %" for f, v in by_family.items()) or "not measurable"


def _kind_name(kind: str) -> str:
    return "multi-agent" if kind == "multi" else "single-agent"


def outlier_rule_text(rule: OutlierRule, flags: pd.DataFrame) -> OutlierRuleText:
    """The rule with this TR's k and floors, and its expected false-alarm and detection rates for the run
    counts the TR has (trbench.measure.outlier_calibration on the bundled reference runs)."""
    sentences = [
        f"A run is flagged when |x - median| > k x max(MAD, floor x |median|) within its config (raw MAD), with "
        f"k = {rule.k:g} and the floor {_share(rule.min_rel_mad)} of the median on throughput (decode tok/s, "
        f"multi-agent speedup), {_share(rule.min_rel_mad_ttft)} on TTFT and {_share(rule.min_rel_mad_concurrent)} "
        f"on each agent's figures while both agents run at once (the spec's outliers.k, outliers.min_rel_mad, "
        f"outliers.min_rel_mad_ttft and outliers.min_rel_mad_concurrent): a run closer to "
        f"its config's median than {_share(rule.k * rule.min_rel_mad)} (throughput), "
        f"{_share(rule.k * rule.min_rel_mad_ttft)} (TTFT) or {_share(rule.k * rule.min_rel_mad_concurrent)} "
        "(agents at once) is never flagged, and a config with fewer than 3 counted "
        "runs never is. Every config with a flagged run is recommended for a re-run: trbench rerun (the "
        "rerun_flagged flow) runs it again as a new attempt; the numbers above count the latest attempt of each run."]
    runs_per_kind = ({} if flags.empty else
                     {str(kind): int(n) for kind, n in flags.groupby("kind")["n_runs"].max().items()})
    rated = []
    for n in sorted(set(runs_per_kind.values())):
        kinds = [_kind_name(k) for k in ("single", "multi") if runs_per_kind.get(k) == n]
        if n < 3:
            rated.append(f"with {count(n, 'run')} per config no {join(kinds, 'or')} run can be flagged "
                         "(the rule needs 3)")
            continue
        cal = outlier_calibration.expected(rule, n)
        shares = [f"{_pct(cal.false_alarm[k])} of healthy {_kind_name(k)} configs" for k in ("single", "multi")
                  if runs_per_kind.get(k) == n and k in cal.false_alarm]
        if shares:
            rated.append(f"with {n} runs per config, {' and '.join(shares)} are recommended for a re-run by chance")
    measured = [n for n in runs_per_kind.values() if n >= 3]
    if measured:
        cal = outlier_calibration.expected(rule, min(measured))
        rated.append(f"at {min(measured)} runs it flags {_pct(cal.detection.get('decode', 0.0))} of runs made "
                     f"{_share(outlier_calibration.DECODE_SLOWDOWN)} slower on decode and "
                     f"{_pct(cal.detection.get('ttft', 0.0))} of runs made "
                     f"{_share(outlier_calibration.TTFT_SLOWDOWN)} slower on TTFT")
    if rated:
        sentences.append("Expected false alarms: " + "; ".join(rated) + "." + (
            f" Measured by bench/outlier_calibration.py on resampled healthy quickstart runs on an otherwise idle "
            f"2-core CPU, whose run-to-run noise (median CV of a config's runs) is "
            f"{_noise(outlier_calibration.noise(outlier_calibration.load_reference()))}; this TR's is "
            f"{_noise(outlier_calibration.noise(flags.dropna(subset=['value'])))}. Less noise, fewer false "
            "alarms." if measured else ""))
    return OutlierRuleText(k=rule.k, min_rel_mad=rule.min_rel_mad, min_rel_mad_ttft=rule.min_rel_mad_ttft,
                           sentences=sentences)


def reruns(tr_root: Path, single_runs: pd.DataFrame | None = None) -> list[Rerun]:
    """Each config run again (more than one attempt): its latest attempt against the one before.
    single_runs: the runs table when the caller has read it already."""
    out = []
    single = read_frame(tr_root, "runs") if single_runs is None else single_runs
    for kind, runs in (("single", single), ("multi", read_frame(tr_root, "ma_runs"))):
        if runs.empty or runs["attempt"].max() < 2:
            continue
        for _, group in runs.groupby(_CONFIG[kind], sort=True):
            attempts = sorted(int(a) for a in group["attempt"].unique())
            if len(attempts) < 2:
                continue
            before, after = group[group["attempt"] == attempts[-2]], group[group["attempt"] == attempts[-1]]
            for column, name in _COMPARED[kind]:
                b = metrics.percentile(_values(before, column), 50)
                a = metrics.percentile(_values(after, column), 50)
                if a is None and b is None:
                    continue  # a cache state neither attempt measured
                change = metrics.pct_of(a, b)
                out.append(Rerun(kind=kind, config=_label(kind, group.iloc[0]), metric=name, attempts=attempts,
                                 before=b, after=a, change_pct=None if change is None else change - 100.0,
                                 before_ci=metrics.bootstrap_median_ci(_values(before, column)),
                                 after_ci=metrics.bootstrap_median_ci(_values(after, column))))
    return out


def _values(frame: pd.DataFrame, column: str) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in frame[column]]
