"""The outliers and re-runs part of the report, from the flags and run files alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from trbench.data.cells import config_label
from trbench.data.rows import CACHE_STATE_LABELS, CACHE_STATES
from trbench.measure import metrics
from trbench.quality.outliers import read_flags
from trbench.data.store import read_frame

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
    return f"{row['model']} {config_label(row['num_gpu'], row['num_ctx'], row['temperature'])}"


def flagged_runs(tr_root: Path) -> list[FlaggedRun]:
    flags = read_flags(tr_root)
    if flags.empty:
        return []
    hit = flags[flags["flagged"].fillna(False).astype(bool)]
    return [FlaggedRun(kind=r["kind"], config=str(r["config"]), run_id=r["run_id"], attempt=int(r["attempt"]),
                       metric=r["metric"], value=r["value"], median=r["median"], mad=r["mad"], threshold=r["threshold"])
            for _, r in hit.iterrows()]


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
