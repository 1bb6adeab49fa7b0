"""Two or more TRs side by side (`trbench compare`): their matched cells, the headline figures of each,
the change against the first TR and whether the data shows a difference; the settings that differ
between the TRs; the cells only some of them measured.

Cells are matched by report/matching.py (workload, model, config values; never a content hash), the one
rule the regression check uses too. The figures are the report's own, as its summary records hold them
(report/summary.py: build_summary of each built report), never recomputed here.

The verdict is the project's one rule for calling a difference (metrics.intervals_overlap, the rule the
winners and the harness comparison use): where the two figures' bootstrap 95 % intervals are separate,
"difference"; where they overlap, or a figure has no interval (a load step's figure is one rate over the
step; a cell of one run has none), "no difference the data can show". n/a where a TR lacks the figure.

Prefect-free: `compare_trs` over TrSide values (tests build them from planted records), `load_side` to
build one from a TR folder; formatting for the command line in `markdown`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from trbench.data.rows import CACHE_STATE_LABELS, CACHE_STATES
from trbench.measure import metrics
from trbench.report.matching import MATCHED_ON, CellKey, cell_key
from trbench.report.matching import RULE as MATCH_RULE
from trbench.report.models import ReportData
from trbench.report.regression import TrSettings
from trbench.report.summary import SummaryRecord, build_summary
from trbench.prose.english import join, noun

Verdict = Literal["difference", "no difference the data can show", "n/a"]
DIFFERENCE: Verdict = "difference"
NO_DIFFERENCE: Verdict = "no difference the data can show"
VERDICT_RULE = ("change % = (TR - first TR) / first TR x 100; verdict by the 95 % intervals: separate intervals are "
                f"a {DIFFERENCE}, overlapping ones (or a figure without an interval) are {NO_DIFFERENCE}; n/a where "
                "a TR lacks the figure")

# the headline figures: (workload, metric id, statistic, name for people, higher is better)
HEADLINE: list[tuple[str, str, str, str, bool]] = [
    ("single_agent", "decode_tps", "median", "decode median", True),
    *[("single_agent", f"ttft_{st}_ms", "median", f"TTFT {CACHE_STATE_LABELS[st]} median", False)
      for st in CACHE_STATES],
    ("single_agent", "e2e_ms", "median", "e2e median", False),
    ("multi_agent", "speedup", "median", "speedup median", True),
    ("load", "output_tps", "value", "output tok/s of the step", True),
    ("load", "ttft_ms", "p95", "TTFT p95", False),
]
_HEADLINE = {(w, m, s): (name, higher) for w, m, s, name, higher in HEADLINE}


class TrSide(BaseModel):
    """One TR as compared: its records (the report's statistics), its settings and whether it is a mock."""

    tr_id: str
    root: str
    mock: bool = False
    settings: TrSettings
    records: list[SummaryRecord]


class Figure(BaseModel):
    """One TR's figure of a matched cell's metric; change and verdict against the first TR (None for it)."""

    tr_id: str
    value: float | None
    ci: tuple[float, float] | None
    n: int | None
    change_pct: float | None = None
    verdict: Verdict | None = None


class MetricRow(BaseModel):
    workload: str
    model: str
    config: str  # the config label (single agent), the scenario, or the load step
    metric: str  # the name for people (HEADLINE); its unit beside it
    unit: str
    higher_is_better: bool
    figures: list[Figure]  # one per TR, in the order given


class Unmatched(BaseModel):
    workload: str
    model: str
    config: str
    present_in: list[str]
    missing_from: list[str]


class SettingRow(BaseModel):
    setting: str
    values: list[list[str]]  # per TR, in the order given


class TrComparison(BaseModel):
    tr_ids: list[str]
    match_rule: str = MATCH_RULE
    verdict_rule: str = VERDICT_RULE
    mock_trs: list[str] = []  # TRs that ran on the mock provider: their figures measure the harness
    differing_settings: list[SettingRow]
    matched_cells: int
    rows: list[MetricRow]
    unmatched: list[Unmatched]
    why_nothing_matched: str | None = None  # set exactly when matched_cells == 0


def side_of(data: ReportData, root: Path) -> TrSide:
    return TrSide(tr_id=data.tr_id, root=str(root), mock=data.mock, settings=data.settings,
                  records=build_summary(data).records)


def load_side(root: Path) -> TrSide:
    """A TR folder as compared: its report built from its data (build_report), as `trbench report` does."""
    from trbench.report.build import build_report  # the report's whole build: only when a folder is read

    return side_of(build_report(Path(root)), Path(root))


def _cell_label(workload: str, record: SummaryRecord) -> str:
    if workload == "load":
        return f"{record.config_values.get('config')} {record.config_values.get('step_label')}"
    return record.config


def _cells(side: TrSide) -> dict[CellKey, dict[tuple[str, str], SummaryRecord]]:
    """match key -> its headline records by (metric, statistic); invalid load steps are no cells."""
    out: dict[CellKey, dict[tuple[str, str], SummaryRecord]] = {}
    for r in side.records:
        if (r.workload, r.metric, r.statistic) not in _HEADLINE or r.config_values.get("valid") is False:
            continue
        out.setdefault(cell_key(r.workload, r.model, r.config_values), {})[(r.metric, r.statistic)] = r
    return out


def verdict(first: SummaryRecord | None, other: SummaryRecord | None) -> tuple[float | None, Verdict]:
    """(change % against the first TR, verdict) of one figure by the interval rule."""
    if first is None or other is None or first.value is None or other.value is None:
        return None, "n/a"
    change = (other.value - first.value) / abs(first.value) * 100.0 if first.value else None
    return change, NO_DIFFERENCE if metrics.intervals_overlap(_ci(first), _ci(other)) else DIFFERENCE


def _ci(r: SummaryRecord | None) -> tuple[float, float] | None:
    return None if r is None or r.ci_low is None or r.ci_high is None else (r.ci_low, r.ci_high)


def _differing(sides: list[TrSide]) -> list[SettingRow]:
    rows = []
    for name in TrSettings.model_fields:
        values = [getattr(s.settings, name) for s in sides]
        if any(v != values[0] for v in values):
            rows.append(SettingRow(setting=name, values=values))
    return rows


def _why_nothing(sides: list[TrSide], cells: list[dict[CellKey, dict]]) -> str:
    """One line naming why no cell is in every TR: no workload, no model or no config in common."""
    def each(of) -> str:
        return "; ".join(f"{s.tr_id}: {', '.join(sorted(of(c))) or 'none'}" for s, c in zip(sides, cells))

    workloads = [{k[0] for k in c} for c in cells]
    common = set.intersection(*workloads)
    if not common:
        return f"no workload in common ({each(lambda c: {k[0] for k in c})})"
    models = set.intersection(*[{k[1] for k in c if k[0] in common} for c in cells])
    if not models:
        return f"no model in common ({each(lambda c: {k[1] for k in c if k[0] in common})})"

    def configs(c) -> set[str]:
        return {f"{k[1]} " + " ".join(f"{n}={v}" for n, v in k[2]) for k in c if k[0] in common and k[1] in models}
    return (f"no config in common for the common {noun('model', len(models))} {join(sorted(models))} "
            f"({each(configs)})")


def compare_trs(sides: list[TrSide]) -> TrComparison:
    """Match the cells of two or more TRs and set each matched cell's headline figures side by side."""
    if len(sides) < 2:
        raise ValueError("compare needs at least two TRs")
    cells = [_cells(s) for s in sides]
    keys: list[CellKey] = []
    for c in cells:
        keys += [k for k in c if k not in keys]
    order = {w: i for i, w in enumerate(MATCHED_ON)}
    keys.sort(key=lambda k: order[k[0]])  # workload by workload, each TR's own order within
    rows: list[MetricRow] = []
    unmatched: list[Unmatched] = []
    matched = 0
    for key in keys:
        workload, model, _ = key
        present = [s.tr_id for s, c in zip(sides, cells) if key in c]
        some = next(c[key] for c in cells if key in c)
        label = _cell_label(workload, next(iter(some.values())))
        if len(present) < len(sides):
            unmatched.append(Unmatched(workload=workload, model=model, config=label, present_in=present,
                                       missing_from=[s.tr_id for s, c in zip(sides, cells) if key not in c]))
            continue
        matched += 1
        for w, metric, statistic, name, higher in HEADLINE:
            if w != workload:
                continue
            recs = [c[key].get((metric, statistic)) for c in cells]
            if all(r is None or r.value is None for r in recs):
                continue  # no TR measured it here (a cache state none of them measured)
            figures = []
            for i, r in enumerate(recs):
                fig = Figure(tr_id=sides[i].tr_id, value=r.value if r else None, ci=_ci(r), n=r.n if r else None)
                if i:
                    fig.change_pct, fig.verdict = verdict(recs[0], r)
                figures.append(fig)
            unit = next(r.unit for r in recs if r is not None)
            rows.append(MetricRow(workload=workload, model=model, config=label, metric=name, unit=unit,
                                  higher_is_better=higher, figures=figures))
    return TrComparison(tr_ids=[s.tr_id for s in sides], mock_trs=[s.tr_id for s in sides if s.mock],
                        differing_settings=_differing(sides), matched_cells=matched, rows=rows, unmatched=unmatched,
                        why_nothing_matched=None if matched else _why_nothing(sides, cells))


# --- for people ------------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"


def _figure(f: Figure) -> str:
    ci = f" [{_fmt(f.ci[0])}, {_fmt(f.ci[1])}]" if f.ci else ""
    n = f" n={f.n}" if f.n is not None else ""
    return f"{_fmt(f.value)}{ci}{n}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown(c: TrComparison) -> str:
    """The comparison as Markdown: settings that differ, matched cells' figures, unmatched cells."""
    first, others = c.tr_ids[0], c.tr_ids[1:]
    out = [f"# {' vs '.join(c.tr_ids)}", "",
           f"Matching: {c.match_rule}.", "", f"Verdict: {c.verdict_rule}.", ""]
    if c.mock_trs:
        out += [f"Ran on the mock provider (canned answers; the figures measure the harness, not a model): "
                f"{', '.join(c.mock_trs)}.", ""]
    out += ["## Settings that differ", ""]
    if c.differing_settings:
        out += [_row(["setting", *c.tr_ids]), _row(["---"] * (len(c.tr_ids) + 1))]
        out += [_row([s.setting, *[", ".join(v) or "none" for v in s.values]]) for s in c.differing_settings]
    else:
        out.append("None of the recorded settings differ.")
    out += ["", f"## Matched cells ({c.matched_cells})", ""]
    if c.rows:
        head = ["workload", "model", "config", "metric", *c.tr_ids]
        for o in others:
            head += [f"{o} vs {first} %", f"{o} verdict"]
        out += [_row(head), _row(["---"] * len(head))]
        for r in c.rows:
            cells = [r.workload, r.model, r.config, f"{r.metric} ({r.unit})", *[_figure(f) for f in r.figures]]
            for f in r.figures[1:]:
                cells += ["n/a" if f.change_pct is None else f"{f.change_pct:+.1f}", f.verdict or "n/a"]
            out.append(_row(cells))
    else:
        out.append(f"No cell is in every TR: {c.why_nothing_matched}.")
    out += ["", f"## Unmatched cells ({len(c.unmatched)})", ""]
    if c.unmatched:
        out += [_row(["workload", "model", "config", "in", "not in"]), _row(["---"] * 5)]
        out += [_row([u.workload, u.model, u.config, ", ".join(u.present_in), ", ".join(u.missing_from)])
                for u in c.unmatched]
    else:
        out.append("Every cell is in every TR.")
    return "\n".join(out) + "\n"

