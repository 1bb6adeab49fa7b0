"""The harness axis in the report: who sent the requests, trbench's Python client
or the Rust runner (docs/runner-contract.md).

Only when a TR measured more than one harness. Two parts, both from the request and run rows (the
Rust runner's raw records, read by the same code as the Python client's streams):

  winner matrix    the winner by scenario with four columns, single-agent Python, single-agent
                   Rust, multi-agent Python, multi-agent Rust: the report's own winner rule
                   (compare.winner_rows) applied to each harness's runs apart
  harness overhead per model x config measured by both harnesses (the same server, prompts and cell,
                   the twin runs interleaved): TTFT per cache state, client decode rate and client
                   CPU per request, each a median with its bootstrap 95% interval
                   (metrics.bootstrap_median_ci, two-stage over runs and requests); a difference whose
                   intervals overlap is reported as "none"

The rest of the report (cells, % of baseline, multi-agent section) shows one harness, the main one
(main_harness), so that no figure there pools two harnesses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from trbench.data.cells import DEFAULT_HARNESS, HARNESSES, config_label, with_harness
from trbench.data.rows import CACHE_STATE_LABELS, TARGET_STATES
from trbench.data.store import read_frame
from trbench.measure import metrics
from trbench.report.cross_model import Estimate, winner_rows
from trbench.report.data import RequestColumns
from trbench.report.multi_agent import build_multi_agent
from trbench.report.tables import Table, _cols, fmt, fmt_ci

NONE = "none"  # the verdict on a difference inside the intervals
MODES = ("single-agent", "multi-agent")
# metric, request column, unit, scale from the stored unit, cache state (TTFT only: never pooled), digits
OVERHEAD_METRICS: list[tuple[str, str, str, float, str | None, int]] = [
    *[(f"TTFT {CACHE_STATE_LABELS[st]}", "ttft_ms", "ms", 1.0, st, 1)
      for st in TARGET_STATES],
    ("client decode rate", "decode_tps_client", "tok/s", 1.0, None, 1),
    ("client CPU per request", "client_cpu_s", "ms", 1000.0, None, 2),
]
DEFINITIONS = {
    "client decode rate": "output tokens per second of the decode phase as the client's clock saw it "
                          "(decode_tps_client: first to last text chunk)",
    "client CPU per request": "CPU time the harness spent on one request, send to last byte: the Python "
                              "client's thread CPU time (time.thread_time_ns around the request; httpx works "
                              "in the calling thread), the Rust runner's whole-process CPU time as it reports "
                              "it (cpu_ns, CLOCK_PROCESS_CPUTIME_ID; the runner sends nothing else)",
    "difference": "Rust minus Python, of the medians; 'none' when the two 95% intervals overlap",
}


class MatrixRow(BaseModel):
    scenario: str  # e.g. "decode tok/s", "efficiency chimera_homo"
    config: str  # the config label; "" for multi-agent rows
    winners: dict[str, str]  # column ("single-agent python") -> a model, "tie", "n/a"; absent: not this mode


class OverheadRow(BaseModel):
    model: str
    config: str
    metric: str
    unit: str
    digits: int = 1
    estimates: dict[str, Estimate]  # harness -> median, interval, n
    difference: float | None = None  # rust - python medians; None when not both measured
    verdict: str  # "none", or the difference with its sign and unit


class HarnessSection(BaseModel):
    harnesses: list[str]
    main: str  # the harness the rest of the report shows
    columns: list[str]  # the winner matrix's columns, "<mode> <harness>"
    matrix: list[MatrixRow]
    overhead: list[OverheadRow]
    definitions: dict[str, str]
    run_counts: dict[str, str] = {}  # harness -> "n valid of m runs" (single- and multi-agent)
    # the invalid runs of the harnesses the main sections do not show (theirs are listed there)
    other_invalid: list[dict] = []


def present_harnesses(tr_root: Path) -> list[str]:
    """The harnesses a TR measured, single- and multi-agent, in HARNESSES order."""
    seen = set(read_frame(tr_root, "runs", ["harness"])["harness"].dropna())
    seen |= set(read_frame(tr_root, "ma_runs", ["harness"])["harness"].dropna())
    return [h for h in HARNESSES if h in seen] + sorted(seen - set(HARNESSES))


def main_harness(tr_root: Path) -> str:
    """The harness the report's main sections show: python where it was measured, else the one measured."""
    present = present_harnesses(tr_root)
    return DEFAULT_HARNESS if DEFAULT_HARNESS in present or not present else present[0]


def of_harness(frame: pd.DataFrame, harness: str) -> pd.DataFrame:
    return frame[frame["harness"] == harness] if not frame.empty else frame


CellBuilder = Callable[[str, pd.DataFrame], list]  # (model, the runs of one harness) -> that model's cells


def _cell_groups(runs: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(model, config label) -> the runs of that cell, in config order."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    runs = with_harness(runs)
    for (model, g, c, t, s), frame in runs.groupby(["model", "num_gpu", "num_ctx", "temperature", "server_settings"],
                                                   sort=True):
        out[(str(model), config_label(g, c, t, s))] = frame
    return out


def winner_matrix(per_harness: dict[str, list], columns: list[str]) -> list[MatrixRow]:
    """Rows (scenario without its mode, config) in first-seen order; per_harness: harness -> WinnerRows."""
    rows: dict[tuple[str, str], MatrixRow] = {}
    for harness, winners in per_harness.items():
        for w in winners:
            mode, _, scenario = w.scenario.partition(" ")
            row = rows.setdefault((scenario, w.config), MatrixRow(scenario=scenario, config=w.config, winners={}))
            row.winners[f"{mode} {harness}"] = w.winner
    return list(rows.values())


def _estimate(reqs: RequestColumns, run_ids: list[str], column: str, scale: float, state: str | None) -> Estimate:
    """Median and two-stage bootstrap interval of one column over the measured ok requests of these runs."""
    groups = []
    for rid in run_ids:
        r = reqs.rows([rid])
        keep = reqs.measured[r] & reqs.ok[r]
        if state is not None:
            keep &= reqs.equals("cache_state", state)[r]
        groups.append(reqs.values[column][r[keep]] * scale)
    pooled = np.concatenate(groups) if groups else np.zeros(0)
    values = [v for v in pooled.tolist() if not np.isnan(v)]
    ci = metrics.bootstrap_median_ci([g.tolist() for g in groups]) if values else None
    return Estimate(value=metrics.percentile(values, 50), ci=ci, n=len(values))


def verdict(python: Estimate, rust: Estimate, unit: str, digits: int) -> tuple[float | None, str]:
    """(rust - python, what the report says): 'none' when the intervals overlap."""
    if python.value is None or rust.value is None:
        return None, "n/a"
    diff = rust.value - python.value
    if metrics.intervals_overlap(python.ci, rust.ci):
        return diff, NONE
    pct = f" ({diff / python.value * 100:+.0f} %)" if python.value else ""
    return diff, f"{diff:+.{digits}f} {unit}{pct}"


def overhead_rows(runs: pd.DataFrame, reqs: RequestColumns, harnesses: list[str]) -> list[OverheadRow]:
    """Per cell measured by python and by another harness: each overhead metric, Python vs the other."""
    if "python" not in harnesses or len(harnesses) < 2 or runs.empty:
        return []
    valid = runs[runs["valid"].astype(bool)]
    by_harness = {h: _cell_groups(of_harness(valid, h)) for h in harnesses}
    out = []
    for other in harnesses[1:]:
        for cell in [k for k in by_harness["python"] if k in by_harness[other]]:
            ids = {h: sorted(by_harness[h][cell]["run_id"]) for h in ("python", other)}
            for metric, column, unit, scale, state, digits in OVERHEAD_METRICS:
                est = {h: _estimate(reqs, ids[h], column, scale, state) for h in ("python", other)}
                if all(e.value is None for e in est.values()) and state is not None:
                    continue  # a cache state this TR did not measure
                diff, said = verdict(est["python"], est[other], unit, digits)
                out.append(OverheadRow(model=cell[0], config=cell[1], metric=metric, unit=unit, digits=digits,
                                       estimates=est, difference=diff, verdict=said))
    return out


def build_harness_section(tr_root: Path, runs: pd.DataFrame, reqs: RequestColumns, models: list[str],
                          cells_of: CellBuilder) -> HarnessSection | None:
    """runs: the counted single-agent runs of every harness; cells_of builds one model's cells from
    runs (build.py's own cell statistics, so the matrix's figures are the report's)."""
    harnesses = present_harnesses(tr_root)
    if len(harnesses) < 2:
        return None
    per_harness = {}
    for h in harnesses:
        mine = of_harness(runs, h)
        cells = [c for m in models for c in cells_of(m, mine[mine["model"] == m])]
        multi = build_multi_agent(tr_root, models, h)
        per_harness[h] = winner_rows(cells, multi.results if multi else [], models, energy_measured=False)
    columns = [f"{mode} {h}" for mode in MODES for h in harnesses]
    main = main_harness(tr_root)
    every = pd.concat([runs[["run_id", "harness", "valid", "invalid_reason"]],
                       read_frame(tr_root, "ma_runs", ["run_id", "harness", "valid", "invalid_reason"])])
    valid = every["valid"].astype(bool)
    return HarnessSection(
        harnesses=harnesses, main=main, columns=columns, matrix=winner_matrix(per_harness, columns),
        overhead=overhead_rows(runs, reqs, harnesses), definitions=DEFINITIONS,
        run_counts={h: f"{int((valid & (every['harness'] == h)).sum())} valid of {int((every['harness'] == h).sum())} runs"
                    for h in harnesses},
        other_invalid=[{"run_id": r.run_id, "harness": r.harness, "invalid_reason": r.invalid_reason}
                       for r in every[~valid & (every["harness"] != main)].itertuples()])


# --- tables -------------------------------------------------------------------------------------


def _title(column: str) -> str:
    mode, harness = column.split(" ", 1)
    return f"{mode} {harness.capitalize()}"


def harness_tables(data) -> dict[str, Table]:
    section = getattr(data, "harness", None)
    if section is None:
        return {}
    other = [h for h in section.harnesses if h != "python"]
    matrix = Table(columns=_cols("scenario", "config", *[_title(c) for c in section.columns]),
                   rows=[[r.scenario, r.config, *[r.winners.get(c, "—") for c in section.columns]]
                         for r in section.matrix])
    heads = [x for h in ["python", *other] for x in (f">{h.capitalize()} median", f">{h.capitalize()} 95% CI", f">{h.capitalize()} n")]
    overhead = Table(columns=_cols("model", "config", "metric", "unit", *heads, ">difference"),
                     rows=[[r.model, r.config, r.metric, r.unit,
                            *[x for h in ["python", *other] for x in (
                                fmt(r.estimates[h].value, r.digits) if h in r.estimates else "n/a",
                                fmt_ci(r.estimates[h].ci, r.digits) if h in r.estimates else "n/a",
                                str(r.estimates[h].n) if h in r.estimates else "0")],
                            r.verdict] for r in section.overhead])
    return {"harness_matrix": matrix, "harness_overhead": overhead,
            "harness_definitions": Table(columns=_cols("term", "meaning"),
                                         rows=[[k, v] for k, v in section.definitions.items()])}
