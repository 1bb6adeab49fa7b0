"""MAD outlier flags per config group: |x - median| > k x MAD (k = 2, raw MAD), with a floor.

Groups and the runs in them:
  single-agent  model x num_gpu x num_ctx x temperature; per run_index only its latest attempt
                counts (as in the report), and only if that attempt is valid
  multi-agent   model x scenario; same latest-attempt and validity rule
  both          x harness: a cell measured by the Python client and by the Rust runner is two
                groups, each run flagged against its own harness's runs only

Metrics, one flag row per run x metric:
  single-agent  decode_tps_mean   the run's mean server-view decode tok/s: the per-run figure the
                                  report's run-to-run CV is computed over
                ttft_<state>_ms_p50  the run's median TTFT per cache state (trbench.data.rows
                                  CACHE_STATES): each state against the same state of the sibling
                                  runs; a state a TR does not measure has no rows
  multi-agent   speedup           the headline figure (sequential_wall_s / concurrent_wall_s)
                collector_concurrent_decode_tps, insight_concurrent_decode_tps
                collector_concurrent_ttft_ms,    insight_concurrent_ttft_ms
                                  each agent's decode throughput and TTFT while both run at once
  (efficiency_pct is speedup / n_agents x 100, so it would only repeat the speedup flag.)

Rule: median and raw MAD = median(|x_i - median|) over the group's non-null values (no 1.4826
factor); scale = max(MAD, floor x |median|); threshold = k x scale; a run is flagged when
|x - median| > threshold (strictly). Every flagged run's config is recommended for a re-run, and
the `rerun_flagged` flow runs exactly those configs.

The floor is what makes a flag mean something with the few runs of a TR. With 3 runs MAD is the
smaller of the two gaps to the median, often near 0, so the raw rule flags the farther run of
almost any healthy triple; with MAD == 0 (a deterministic server) it would flag a last-digit
difference. So the scale never drops below floor x |median|: with k = 2 a run within 2 x floor of
its group's median is never an outlier. The floor is per metric family, because run-to-run noise
is:
  throughput    decode tok/s, speedup: min_rel_mad (default 5 %: a run more than 10 % off is
                flagged, and a run 20 % slower on decode is caught)
  latency       every TTFT figure: min_rel_mad_ttft (default 15 %: a run more than 30 % off is
                flagged, and a run 50 % slower on TTFT is caught). A cached prefill of a short
                prompt takes tens of ms, so a few ms of scheduling jitter on a shared CPU is
                10-20 % of it; with the throughput floor, a healthy quickstart flagged a cached
                TTFT of 42.5 ms against a median of 38.6 ms.
  concurrent    each agent's decode and TTFT while both agents run at once: min_rel_mad_concurrent
                (default 40 %: a run more than 80 % off is flagged). Two servers share the cores
                then: on an idle 2-core machine healthy runs of one config were up to 21 % apart
                on an agent's decode and 71 % on its TTFT. A slowed multi-agent run shows in its
                speedup, which keeps the throughput floor.
bench/outlier_calibration.py measures both sides of that choice on resampled quickstart runs:
the share of healthy configs recommended for a re-run (false alarms) and the share of runs made
20 % slower on decode or 50 % slower on TTFT that are flagged. Both hold (at most 1 config in 10,
most slow runs caught) up to run-to-run noise of about 3 % on decode and 8 % on TTFT; on a CPU
shared with other busy processes no fixed threshold tells a 20 % slowdown from the noise
(docs/outliers.md); trbench.measure.outlier_calibration
gives the report its expected false-alarm rate for the TR's run count. The raw MAD, the floor, the
scale and the threshold are all in the output; floors of 0 give the plain rule (then with
MAD == 0 every value that differs from the median is flagged).

Groups with fewer than 3 values never flag (with 2 values |x - median| == MAD; with 1, both 0);
n_runs says how many values the median and MAD are over. A null metric value gets a row with
flagged false.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import BaseModel

from trbench.data.cells import (DEFAULT_HARNESS, MULTI_CONFIG_COLUMNS, SINGLE_CONFIG_COLUMNS, latest_attempts,
                                multi_key, single_key)
from trbench.data import store
from trbench.data.rows import CACHE_STATES
from trbench.config.spec import OutlierRule

DEFAULT_RULE = OutlierRule()
DEFAULT_K = DEFAULT_RULE.k

SINGLE_CONFIG, MULTI_CONFIG = SINGLE_CONFIG_COLUMNS, MULTI_CONFIG_COLUMNS
SINGLE_METRICS = ["decode_tps_mean", *[f"ttft_{st}_ms_p50" for st in CACHE_STATES]]
MULTI_METRICS = ["speedup", "collector_concurrent_decode_tps", "insight_concurrent_decode_tps",
                 "collector_concurrent_ttft_ms", "insight_concurrent_ttft_ms"]


def is_ttft(metric: str) -> bool:
    """A TTFT figure (single-agent ttft_<state>_ms_p50, multi-agent <agent>_concurrent_ttft_ms)."""
    return metric.startswith("ttft_") or metric.endswith("_ttft_ms")


def is_concurrent(metric: str) -> bool:
    """An agent's figure measured while both agents run at once (<agent>_concurrent_<figure>)."""
    return "_concurrent_" in metric


def metric_floor(rule: OutlierRule, metric: str) -> float:
    """The floor under MAD of a metric, as a share of its median: the concurrent agents', TTFT's or
    throughput's."""
    if is_concurrent(metric):
        return rule.min_rel_mad_concurrent
    return rule.min_rel_mad_ttft if is_ttft(metric) else rule.min_rel_mad


FLAGS_SCHEMA = pa.schema([
    ("kind", pa.string()),  # single | multi
    ("tr_id", pa.string()),
    ("run_id", pa.string()),
    ("attempt", pa.int32()),
    ("run_index", pa.int32()),
    ("cell_hash", pa.string()),
    ("model", pa.string()),
    ("num_gpu", pa.int32()),  # single-agent config; null on multi-agent rows
    ("num_ctx", pa.int32()),
    ("temperature", pa.float64()),
    ("scenario", pa.string()),  # multi-agent config; null on single-agent rows
    ("harness", pa.string()),  # python | rust; flags files from before the axis read it as python
    ("server_settings", pa.string()),  # single-agent config's server settings; files from before read it as ''
    ("config", pa.string()),  # "model|num_gpu|num_ctx|temperature" or "model|scenario" (trbench.data.cells keys)
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("n_runs", pa.int32()),  # values in the group the median and MAD are over
    ("median", pa.float64()),
    ("mad", pa.float64()),  # raw MAD
    ("floor", pa.float64()),  # the metric's floor share (metric_floor); null in old files
    ("scale", pa.float64()),  # max(mad, floor x |median|)
    ("k", pa.float64()),
    ("threshold", pa.float64()),  # k x scale
    ("deviation", pa.float64()),  # value - median (signed)
    ("flagged", pa.bool_()),
])

FLAGS_FILE = Path("flags") / "flags.parquet"


def config_key(kind: str, row: dict) -> str:
    """The config key of a run row (trbench.data.cells)."""
    harness = row.get("harness", DEFAULT_HARNESS)
    if kind == "multi":
        return multi_key(row["model"], row["scenario"], harness)
    return single_key(row["model"], row["num_gpu"], row["num_ctx"], row["temperature"], harness,
                      row.get("server_settings"))


def counted_runs(runs: pd.DataFrame, config: list[str]) -> pd.DataFrame:
    """Latest attempt per config x run_index, then valid ones only."""
    latest = latest_attempts(runs, config)[0]
    return latest[latest["valid"].fillna(False).astype(bool)] if not latest.empty else latest


def as_number(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def mad_scale(values: np.ndarray, k: float, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rule along the last axis of values (one group per row): (median, raw MAD, threshold), where
    threshold = k x max(MAD, floor x |median|). One implementation for the flags and the calibration."""
    med = np.median(values, axis=-1)
    mad = np.median(np.abs(values - med[..., None]), axis=-1)
    return med, mad, k * np.maximum(mad, floor * np.abs(med))


class MadStats(BaseModel):
    """A group's median, raw MAD, floor, scale and threshold (see the module doc); None without values."""

    n_runs: int
    median: float | None
    mad: float | None
    floor: float
    scale: float | None
    threshold: float | None


class FlagRow(BaseModel):
    """One run x metric of the flags table (FLAGS_SCHEMA says what each column holds)."""

    kind: Literal["single", "multi"]
    tr_id: str | None
    run_id: str
    attempt: int
    run_index: int
    cell_hash: str | None
    model: str
    num_gpu: int | None
    num_ctx: int | None
    temperature: float | None
    scenario: str | None
    harness: str
    server_settings: str = ""  # '' on multi-agent rows and where no server setting was set
    config: str
    metric: str
    value: float | None
    n_runs: int
    median: float | None
    mad: float | None
    floor: float | None
    scale: float | None
    k: float
    threshold: float | None
    deviation: float | None
    flagged: bool


class FlaggedConfig(BaseModel):
    """A config with at least one flagged run, to run again: its key and fields (num_gpu, num_ctx and
    temperature for a single-agent config, scenario for a multi-agent one), its cell_hash (a list when
    its runs have several), and the flagged metrics, run_ids and run indexes."""

    kind: Literal["single", "multi"]
    config: str
    model: str
    harness: str
    scenario: str | None = None
    num_gpu: int | None = None
    num_ctx: int | None = None
    temperature: float | None = None
    server_settings: str = ""
    cell_hash: str | list[str] | None = None
    metrics: list[str]
    run_ids: list[str]
    run_indexes: list[int]


def mad_stats(values: list[float], k: float = DEFAULT_K, floor: float = DEFAULT_RULE.min_rel_mad) -> MadStats:
    """median, raw MAD, floor, scale and threshold of a group's values (see the module doc)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return MadStats(n_runs=0, median=None, mad=None, floor=floor, scale=None, threshold=None)
    med, mad, threshold = (float(x) for x in mad_scale(a, k, floor))
    return MadStats(n_runs=int(a.size), median=med, mad=mad, floor=floor, scale=threshold / k, threshold=threshold)


def compute_flags(runs: pd.DataFrame, kind: Literal["single", "multi"], rule: OutlierRule = DEFAULT_RULE) -> list[FlagRow]:
    """Flag rows for one runs table (kind 'single': the runs table, 'multi': ma_runs)."""
    config, metric_names = (MULTI_CONFIG, MULTI_METRICS) if kind == "multi" else (SINGLE_CONFIG, SINGLE_METRICS)
    counted = counted_runs(runs, config)
    out: list[FlagRow] = []
    if counted.empty:
        return out
    records = counted.sort_values([*config, "run_index"]).to_dict("records")
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(config_key(kind, r), []).append(r)
    for key, members in groups.items():
        for metric in metric_names:
            vals = [as_number(r.get(metric)) for r in members]
            if metric.startswith("ttft_") and all(v is None for v in vals):
                continue  # a cache state this config did not measure
            stats = mad_stats([v for v in vals if v is not None], rule.k, metric_floor(rule, metric))
            for r, v in zip(members, vals):
                deviation = None if v is None or stats.median is None else v - stats.median
                out.append(FlagRow(
                    kind=kind, tr_id=r.get("tr_id"), run_id=r["run_id"], attempt=int(r["attempt"]),
                    run_index=int(r["run_index"]), cell_hash=r.get("cell_hash"), model=r["model"],
                    num_gpu=None if kind == "multi" else int(r["num_gpu"]),
                    num_ctx=None if kind == "multi" else int(r["num_ctx"]),
                    temperature=None if kind == "multi" else float(r["temperature"]),
                    scenario=r["scenario"] if kind == "multi" else None,
                    harness=r.get("harness", DEFAULT_HARNESS),
                    server_settings=r.get("server_settings") or "",
                    config=key, metric=metric, value=v,
                    **stats.model_dump(), k=float(rule.k), deviation=deviation,
                    flagged=bool(deviation is not None and stats.threshold is not None
                                 and abs(deviation) > stats.threshold),
                ))
    return out


def _columns(config: list[str], metric_names: list[str]) -> list[str]:
    """What compute_flags reads of a runs table: a run table has dozens of columns, read per file."""
    return [*config, "tr_id", "run_id", "attempt", "run_index", "cell_hash", "valid", *metric_names]


def flags_frame(rows: list[FlagRow]) -> pd.DataFrame:
    """Flag rows as the flags table's frame (FLAGS_SCHEMA columns and types)."""
    return pa.Table.from_pylist([r.model_dump() for r in rows], schema=FLAGS_SCHEMA).to_pandas()


def flag_outliers(tr_root: Path, rule: OutlierRule = DEFAULT_RULE) -> pd.DataFrame:
    """Every counted run x metric of one TR (single- and multi-agent), with its group's median, MAD,
    floor, threshold and whether it is flagged. Columns: FLAGS_SCHEMA."""
    root = Path(tr_root)
    rows = compute_flags(store.read_frame(root, "runs", _columns(SINGLE_CONFIG, SINGLE_METRICS)), "single", rule)
    rows += compute_flags(store.read_frame(root, "ma_runs", _columns(MULTI_CONFIG, MULTI_METRICS)), "multi", rule)
    return flags_frame(rows)


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for rec in frame[[f.name for f in FLAGS_SCHEMA]].to_dict("records"):
        out.append({key: (None if (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA) else v)
                    for key, v in rec.items()})
    return out


def write_flags(tr_root: Path, frame: pd.DataFrame) -> Path:
    """tr_root/flags/flags.parquet, written atomically (temp name + rename)."""
    path = Path(tr_root) / FLAGS_FILE
    table = pa.Table.from_pylist(_records(frame), schema=FLAGS_SCHEMA)
    store.write_table_atomic(path, table)
    return path


def read_flags(tr_root: Path) -> pd.DataFrame:
    path = Path(tr_root) / FLAGS_FILE
    if not path.is_file():
        return FLAGS_SCHEMA.empty_table().to_pandas()
    # through a dataset: a flags file from before a column existed reads it as null (harness: python)
    return store.with_harness(ds.dataset(path, format="parquet", schema=FLAGS_SCHEMA).to_table()).to_pandas()


def flagged_configs(frame: pd.DataFrame) -> list[FlaggedConfig]:
    """The configs with at least one flagged run, for re-running. Sorted by kind, then config."""
    if frame.empty:
        return []
    flagged = frame[frame["flagged"].fillna(False).astype(bool)]
    out = []
    for (kind, key), g in flagged.groupby(["kind", "config"], sort=True):
        first = g.iloc[0]
        fields: dict[str, Any] = (
            {"scenario": first["scenario"]} if kind == "multi" else
            {"num_gpu": int(first["num_gpu"]), "num_ctx": int(first["num_ctx"]), "temperature": float(first["temperature"]),
             "server_settings": first["server_settings"] if isinstance(first["server_settings"], str) else ""})
        hashes = sorted({h for h in g["cell_hash"] if isinstance(h, str)})
        out.append(FlaggedConfig(kind=kind, config=key, model=first["model"], harness=first["harness"], **fields,
                                 cell_hash=hashes[0] if len(hashes) == 1 else (hashes or None),
                                 metrics=sorted(set(g["metric"])), run_ids=sorted(set(g["run_id"])),
                                 run_indexes=sorted({int(i) for i in g["run_index"]})))
    return out
