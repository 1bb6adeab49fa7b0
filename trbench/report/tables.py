"""Every table of the report, formatted once: the Markdown and the HTML render the same strings.

tables(data) turns a ReportData into Table views (headers, alignment, rows of formatted
strings); to_markdown() writes one as a Markdown table, the HTML template loops over it. So a
number in the HTML is, character for character, the number in the Markdown.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel

from trbench.data.rows import CACHE_STATE_LABELS as _LABEL, CACHE_STATES, UNVERIFIED_STATES, ttft_state
from trbench.report.cross_model import MA_PCT_FIELDS, SINGLE_SCENARIOS


# The per model x config numbers, in table order: (field, column header). TTFT is per cache state,
# with its own n; a table shows the states that were measured (data.cache.states).
RESULT_COLUMNS: list[tuple[str, str]] = [
    ("decode_tps_mean", "decode tok/s mean"),
    ("decode_tps_p50", "decode tok/s p50"),
    ("decode_tps_p95", "decode tok/s p95"),
    ("prefill_tps_p50", "prefill tok/s p50"),
    ("prefill_tps_client_p50", "client prefill tok/s p50"),
    *[col for st in CACHE_STATES for col in ((f"ttft_{st}_n", f"TTFT {_LABEL[st]} n"),
                                             (f"ttft_{st}_p50_ms", f"TTFT {_LABEL[st]} p50 ms"),
                                             (f"ttft_{st}_p95_ms", f"TTFT {_LABEL[st]} p95 ms"))],
    ("e2e_p50_ms", "e2e p50 ms"),
    ("e2e_p95_ms", "e2e p95 ms"),
    ("cv_pct", "CV %"),
    ("decode_client_vs_server_pct", "decode client vs server %"),
]
# medians that carry a bootstrap interval: value field -> (interval field, header)
RESULT_INTERVALS: dict[str, tuple[str, str]] = {
    "decode_tps_p50": ("decode_tps_p50_ci", "decode tok/s p50 95% CI"),
    "prefill_tps_p50": ("prefill_tps_p50_ci", "prefill tok/s p50 95% CI"),
    **{f"ttft_{st}_p50_ms": (f"ttft_{st}_p50_ci", f"TTFT {_LABEL[st]} p50 95% CI") for st in CACHE_STATES},
    "e2e_p50_ms": ("e2e_p50_ci", "e2e p50 95% CI"),
}
# The numbers the % of baseline table compares (CV and counts are not ratios of performance; prefill rates
# stay in the results table: the prompts' lengths set them as much as the model does).
PCT_FIELDS = [f for f, _ in RESULT_COLUMNS
              if f not in ("cv_pct", "decode_client_vs_server_pct") and not f.endswith("_n") and "prefill" not in f]
PCT_HEADERS = dict(RESULT_COLUMNS)


def _shown(field: str, states: list[str]) -> bool:
    """A TTFT column only for a cache state that was measured."""
    state = ttft_state(field)
    return state is None or state in states


def _server_says(state: str) -> str:
    """What the server's counts said of a request: its state, or that it sent none."""
    return "no cache count (kept as asked, unverified)" if state in UNVERIFIED_STATES else state


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with `digits` decimals; 'n/a' for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_ci(ci: tuple[float, float] | None, digits: int = 1) -> str:
    """An interval as '[lo, hi]'; 'n/a' when there is none."""
    if ci is None:
        return "n/a"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def fmt_est(value: float | None, ci: tuple[float, float] | None, digits: int = 1) -> str:
    """A median and its interval: '79.2 [78.1, 80.3]'."""
    if value is None:
        return "n/a"
    return f"{fmt(value, digits)} {fmt_ci(ci, digits)}"


def cell_text(text: Any) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    if text is None:
        return ""
    return " ".join(str(text).split()).replace("|", "\\|")


class Column(BaseModel):
    header: str
    align: Literal["left", "right"] = "left"
    code: bool = False  # shown as code (Markdown backticks, HTML <code>)


# The widest table the report prints: at 1,200 px (and on an A4 page) ten columns of figures still
# fit; a wider table is printed as parts (its key columns repeated in each), never cut off.
MAX_COLUMNS = 10


class ColumnGroup(BaseModel):
    """A named part of a wide table: the headers it shows after the table's key columns."""

    title: str
    headers: list[str]


class Table(BaseModel):
    columns: list[Column]
    rows: list[list[str]]
    row_classes: list[str] = []  # HTML only: one class per row ("" for none)
    keys: int = 2  # the leading columns that name a row (model, config, ...): repeated in every part
    groups: list[ColumnGroup] = []  # how a wide table is split; none: in order, MAX_COLUMNS at a time

    def column(self, header: str) -> list[str]:
        i = [c.header for c in self.columns].index(header)
        return [r[i] for r in self.rows]

    def parts(self) -> list[tuple[str, Table]]:
        """The table as printed: itself when it fits MAX_COLUMNS, else parts of at most MAX_COLUMNS
        columns, each the key columns and one group. Every column lands in exactly one part (a column
        no group names goes to a last part), so splitting loses nothing."""
        headers = [c.header for c in self.columns]
        if len(headers) <= MAX_COLUMNS:
            return [("", self)]
        rest = headers[self.keys:]
        named = [(g.title, [h for h in g.headers if h in rest]) for g in self.groups]
        left = [h for h in rest if not any(h in hs for _, hs in named)]
        if left:
            named.append(("other columns" if named else "", left))
        width = max(1, MAX_COLUMNS - self.keys)
        chunked: list[tuple[str, list[str]]] = []
        for title, hs in named:  # a group wider than the page goes on in a part of its own
            pieces = [hs[i:i + width] for i in range(0, len(hs), width)]
            chunked += [(title if len(pieces) == 1 else f"{title or 'part'} {i + 1} of {len(pieces)}", piece)
                        for i, piece in enumerate(pieces)]
        out = []
        for title, hs in chunked:
            idx = list(range(self.keys)) + [headers.index(h) for h in hs]
            out.append((title, Table(columns=[self.columns[i] for i in idx],
                                     rows=[[r[i] for i in idx] for r in self.rows],
                                     row_classes=self.row_classes, keys=self.keys)))
        return out


def _cols(*spec: str) -> list[Column]:
    """'name' left-aligned, '>name' right-aligned, '`name' code."""
    out = []
    for s in spec:
        if s.startswith(">"):
            out.append(Column(header=s[1:], align="right"))
        elif s.startswith("`"):
            out.append(Column(header=s[1:], code=True))
        else:
            out.append(Column(header=s))
    return out


def _groups(*spec: tuple[str, list[str]]) -> list[ColumnGroup]:
    return [ColumnGroup(title=title, headers=headers) for title, headers in spec]


def _md_cell(value: str, column: Column) -> str:
    text = cell_text(value)
    if column.code and text:
        return f"``{text}``" if "`" in text else f"`{text}`"
    return text


def to_markdown(table: Table) -> str:
    """The table in Markdown: one table, or (when wide) its parts, each after a line naming it."""
    parts = table.parts()
    if len(parts) == 1:
        return _markdown_table(parts[0][1])
    return "\n\n".join(f"*{title}:*\n\n{_markdown_table(part)}" for title, part in parts)


def _markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(c.header for c in table.columns) + " |",
             "|" + "|".join("---:" if c.align == "right" else "---" for c in table.columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(v, c) for v, c in zip(row, table.columns)) + " |" for row in table.rows]
    return "\n".join(lines)


def _s(v: Any) -> str:
    """Text of a value; '' for a missing one (None or NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


# --- the tables -----------------------------------------------------------------------------------


# model details the Quantization table shows (file size as GiB, context as max context): not repeated in Setup
QUANT_DETAILS = frozenset({"quantization", "params_b", "size_bytes", "context_length", "source"})


def setup_tables(data) -> dict[str, Table]:
    s = data.setup
    in_quant = {q.model for q in data.quant}
    return {
        # one row per model, its recorded details in one cell that wraps (those the Quantization table shows
        # are not repeated)
        "models": Table(columns=_cols("model", "kind", "as the server reported it", "`digest"),
                        rows=[[m.name, m.kind, "; ".join(f"{k} {v}" for k, v in m.details.items()
                                                         if not (m.name in in_quant and k in QUANT_DETAILS)) or "-",
                               m.digest or "unknown"] for m in s.models]),
        "cache_checks": Table(columns=_cols("asked for", "server reports", ">requests"),
                              rows=[[c.target, _server_says(c.state), str(c.n)] for c in data.cache.checks]),
    }


ANSWER_CHECKS = ("ok", "empty", "template_tokens", "echo")  # metrics.AnswerCheck


def answers_table(data) -> Table:
    cols = _cols("model", "config", "prompt style") + [Column(header=k, align="right") for k in ANSWER_CHECKS]
    rows = [[c.model, c.config.label, c.prompt_style] + [str(c.answer_checks.get(k, 0)) for k in ANSWER_CHECKS]
            for c in data.cells]
    classes = ["regression" if any(c.answer_checks.get(k) for k in ANSWER_CHECKS[1:]) else "" for c in data.cells]
    return Table(columns=cols, rows=rows, row_classes=classes)


def definition_tables(data) -> dict[str, Table]:
    out = {
        "definitions": Table(columns=_cols("`metric", "definition"),
                             rows=[[name, formula] for name, formula in data.definitions.items()]),
        "run_definitions": Table(columns=_cols("term", "definition"),
                                 rows=[[name, formula] for name, formula in data.run_definitions.items()]),
        "statistics": Table(columns=_cols("term", "definition"),
                            rows=[[name, text] for name, text in data.statistics.items()]),
        "energy_definitions": Table(columns=_cols("`column", "definition"),
                                    rows=[[name, text] for name, text in data.energy_definitions.items()]),
    }
    return out


def results_table(data) -> Table:
    columns = [(f, h) for f, h in RESULT_COLUMNS if _shown(f, data.cache.states)]
    cols = _cols("model", "config", ">n")
    for field, header in columns:
        cols.append(Column(header=header, align="right"))
        if field in RESULT_INTERVALS:
            cols.append(Column(header=RESULT_INTERVALS[field][1], align="right"))
    cols += _cols(">valid runs / runs", ">failed requests", ">invalid runs")
    rows = []
    for c in data.cells:
        row = [c.model, c.config.label, str(c.n_requests)]
        for field, _ in columns:
            value = getattr(c, field)
            row.append(str(value) if field.endswith("_n") else fmt(value, 2) if field == "decode_client_vs_server_pct" else fmt(value))
            if field in RESULT_INTERVALS:
                row.append(fmt_ci(getattr(c, RESULT_INTERVALS[field][0])))
        row += [f"{c.valid_runs} / {c.runs}", str(c.failed_requests), str(c.invalid_runs)]
        rows.append(row)
    return Table(columns=cols, rows=rows, groups=_result_groups(data.cache.states))


def _result_groups(states: list[str]) -> list[ColumnGroup]:
    """The results table's parts: throughput, TTFT (two cache states a part), then end-to-end
    latency with run-to-run stability and validity."""
    def headers(fields: list[str]) -> list[str]:
        out = []
        for f in fields:
            out.append(PCT_HEADERS[f])
            if f in RESULT_INTERVALS:
                out.append(RESULT_INTERVALS[f][1])
        return out

    shown = [st for st in CACHE_STATES if st in states]
    ttft = [ColumnGroup(title="time to first token, " + " and ".join(_LABEL[st] for st in pair),
                        headers=headers([f"ttft_{st}_{k}" for st in pair for k in ("n", "p50_ms", "p95_ms")]))
            for pair in (shown[i:i + 2] for i in range(0, len(shown), 2))]
    return [ColumnGroup(title="throughput", headers=["n", *headers(["decode_tps_mean", "decode_tps_p50",
                                                                    "decode_tps_p95", "prefill_tps_p50",
                                                                    "prefill_tps_client_p50"])]),
            *ttft,
            ColumnGroup(title="end-to-end latency, stability and validity",
                        headers=[*headers(["e2e_p50_ms", "e2e_p95_ms", "cv_pct", "decode_client_vs_server_pct"]),
                                 "valid runs / runs", "failed requests", "invalid runs"])]


# The mark the glance tables put on a winning median (the winner rule's pick); WIN_LEGEND says the rule once.
WIN_MARK = "★"
WIN_LEGEND = (f"{WIN_MARK}: the winning median at that config or scenario: the best one, whose 95% interval "
              "overlaps no other model's (higher is better for decode tok/s and efficiency, lower for TTFT and "
              "latency); unmarked where the intervals overlap (a tie, listed under What this data cannot decide)")
_SCENARIO_OF = {field: scenario for scenario, field, *_ in SINGLE_SCENARIOS}  # value field -> winner scenario


def _winners(data) -> dict[tuple[str, str], str]:
    """(winner scenario, config label or "") -> the model that won it; ties and n/a are absent."""
    return {(w.scenario, w.config): w.winner for w in data.winners if w.winner not in ("tie", "n/a")}


def _marked(text: str, won: bool) -> str:
    return f"{text} {WIN_MARK}" if won else text


def headline_table(data) -> Table:
    """The first screen's answer: one row per model x config with the headline figures, each median
    with its interval, TTFT per measured cache state in one column, and how many runs were valid; a
    median the winner rule picked carries WIN_MARK."""
    states = [st for st in CACHE_STATES if st in data.cache.states]
    ttft = "TTFT p50 ms (" + " / ".join(_LABEL[st] for st in states) + ")" if states else "TTFT p50 ms"
    cols = _cols("model", "config", ">decode tok/s p50 [95% CI]", ">" + ttft, ">e2e p50 ms [95% CI]",
                 ">n", ">valid runs / runs")
    won = _winners(data)

    def win(c, field: str) -> bool:
        return won.get((_SCENARIO_OF[field], c.config.label)) == c.model

    rows = [[c.model, c.config.label,
             _marked(fmt_est(c.decode_tps_p50, c.decode_tps_p50_ci), win(c, "decode_tps_p50")),
             " / ".join(_marked(fmt(getattr(c, f"ttft_{st}_p50_ms")), win(c, f"ttft_{st}_p50_ms"))
                        for st in states) or "n/a",
             _marked(fmt_est(c.e2e_p50_ms, c.e2e_p50_ci), win(c, "e2e_p50_ms")), str(c.n_requests),
             f"{c.valid_runs} / {c.runs}"]
            for c in data.cells]
    return Table(columns=cols, rows=rows)


def ma_headline_table(data) -> Table:
    """The first screen's multi-agent rows: one per model x scenario, the efficiency median with its
    interval (WIN_MARK where the winner rule picked it)."""
    ma = data.multi_agent
    won = _winners(data)
    return Table(columns=_cols("model", "scenario", ">efficiency % p50 [95% CI]", ">speedup p50",
                               ">concurrent wall s", ">valid runs / runs"),
                 rows=[[r.model, r.scenario,
                        _marked(fmt_est(r.efficiency_p50, r.efficiency_p50_ci),
                                won.get((f"multi-agent efficiency {r.scenario}", "")) == r.model),
                        fmt(r.speedup_p50, 2), fmt(r.concurrent_wall_s_mean, 2), f"{r.valid_runs} / {r.runs}"]
                       for r in (ma.results if ma is not None else [])])


def pct_table(data) -> Table:
    # the medians only: a mean's or a p95's share of the baseline's follows from the Results tables
    fields = [f for f in PCT_FIELDS if _shown(f, data.cache.states) and "p50" in f]
    cols = _cols("model", "config") + [Column(header=f"{PCT_HEADERS[f]} %", align="right") for f in fields]
    # the baseline's own rows are 100 by definition: left out
    rows = [[r.model, r.config.label] + [fmt(r.values[f]) for f in fields] for r in data.pct_of_baseline
            if r.model != data.baseline_model]
    return Table(columns=cols, rows=rows)


def run_spread_table(data) -> Table:
    width = max((len(c.run_means_decode_tps) for c in data.cells), default=0)
    cols = _cols("model", "config") + [Column(header=f"run {i + 1}", align="right") for i in range(width)] + _cols(
        ">CV %")
    rows = [[c.model, c.config.label] + [fmt(v) for v in c.run_means_decode_tps]
            + [""] * (width - len(c.run_means_decode_tps)) + [fmt(c.cv_pct)] for c in data.cells]
    return Table(columns=cols, rows=rows)


def multi_agent_tables(data) -> dict[str, Table]:
    ma = data.multi_agent
    if ma is None:
        return {}
    a = "agents"
    sent: dict[str, set[tuple[str, str]]] = {}
    for r in ma.results:
        sent.setdefault(r.scenario, set()).add((r.collector_options, r.insight_options))
    # options that every model was sent alike belong to the scenario: said once, in its row
    alike = all(len(v) == 1 for v in sent.values())
    scenarios = (Table(columns=_cols("`scenario", "meaning", "`collector options", "`insight options"),
                       rows=[[n, m, *next(iter(sent[n]))] if n in sent else [n, m, "", ""]
                             for n, m in ma.scenarios.items()])
                 if alike and sent else Table(columns=_cols("`scenario", "meaning"),
                                              rows=[[n, m] for n, m in ma.scenarios.items()]))
    return {
        "ma_scenarios": scenarios,
        # the medians with their intervals are the first screen's (ma_headline); efficiency is speedup / agents
        # x 100, so its minimum is the speedup's too
        "ma_results": Table(
            columns=_cols("model", "scenario", ">efficiency % min", ">sequential wall s", ">runs with contention"),
            rows=[[r.model, r.scenario, fmt(r.efficiency_min), fmt(r.sequential_wall_s_mean, 2),
                   f"{r.contention_runs} / {r.valid_runs}"] for r in ma.results]),
        "ma_agents": Table(
            columns=_cols("model", "scenario", ">collector tok/s conc", ">collector tok/s solo", ">insight tok/s conc",
                          ">insight tok/s solo", ">collector TTFT ms conc", ">collector TTFT ms solo",
                          ">insight TTFT ms conc", ">insight TTFT ms solo", ">delta tok/s", ">delta TTFT ms",
                          "TTFT cache state (calls)"),
            rows=[[r.model, r.scenario] + [fmt(getattr(r, a)[k]) for k in (
                "collector_concurrent_decode_tps", "collector_solo_decode_tps", "insight_concurrent_decode_tps",
                "insight_solo_decode_tps", "collector_concurrent_ttft_ms", "collector_solo_ttft_ms",
                "insight_concurrent_ttft_ms", "insight_solo_ttft_ms")] + [fmt(r.delta_decode_tps), fmt(r.delta_ttft_ms),
                                                                            r.ttft_states]
                  for r in ma.results],
            groups=_groups(("decode tok/s", ["collector tok/s conc", "collector tok/s solo", "insight tok/s conc",
                                             "insight tok/s solo", "delta tok/s"]),
                           ("TTFT", ["collector TTFT ms conc", "collector TTFT ms solo", "insight TTFT ms conc",
                                     "insight TTFT ms solo", "delta TTFT ms", "TTFT cache state (calls)"]))),
        "ma_options": Table(columns=_cols("model", "scenario", "`collector", "`insight"),
                            rows=[] if alike else [[r.model, r.scenario, r.collector_options, r.insight_options]
                                                   for r in ma.results]),
        "ma_definitions": Table(columns=_cols("term", "definition"),
                                rows=[[n, t] for n, t in ma.definitions.items()]
                                + [["contention", rule] for rule in ma.contention_rules]),
        "ma_invalid": Table(columns=_cols("model", "scenario", "run_id", "invalid_reason"),
                            rows=[[_s(r["model"]), _s(r["scenario"]), _s(r["run_id"]),
                                   _s(r["invalid_reason"]) or "not given"] for r in ma.invalid_runs]),
        # efficiency is speedup / n_agents, so its share of the baseline's is the speedup's: one column;
        # the baseline's own rows are 100 by definition: left out
        "ma_pct": Table(columns=_cols("model", "scenario") + [Column(header=_MA_PCT_HEADERS.get(f, f"{h} %"),
                                                                     align="right") for f, h in _MA_PCT_SHOWN],
                        rows=[[r.model, r.scenario] + [fmt(r.values[f]) for f, _ in _MA_PCT_SHOWN]
                              for r in data.ma_pct_of_baseline if r.model != data.baseline_model]),
    }


_MA_PCT_SHOWN = [(f, h) for f, h in MA_PCT_FIELDS if f != "efficiency_p50"]
_MA_PCT_HEADERS = {"speedup_p50": "speedup (= efficiency) median %"}


def winner_table(data) -> Table:
    cols = _cols("scenario", "config") + [Column(header=f"{m} median [95% CI]", align="right")
                                          for m in data.winner_models] + _cols("winner", "intervals")
    rows, classes = [], []
    for w in data.winners:
        digits = 3 if "joule" in w.scenario else 1
        # the rule and which way is better are said once, above the table: a row says only how it came out
        intervals = "separate" if w.winner not in ("tie", "n/a") else w.reason.removeprefix("95% intervals ")
        rows.append([w.scenario, w.config or "scenario options"]
                    + [fmt_est(w.estimates[m].value, w.estimates[m].ci, digits) + _n(w.estimates[m].n)
                       if m in w.estimates else "n/a"
                       for m in data.winner_models]
                    + [w.winner, intervals])
        classes.append("tie" if w.winner in ("tie", "n/a") else "win")
    return Table(columns=cols, rows=rows, row_classes=classes)


def _n(n: int | None) -> str:
    return "" if n is None else f" n={n}"


def energy_table(data) -> Table:
    e = data.energy
    priced = any(p.tokens_per_dollar_p50 is not None for p in e.points)
    cols = _cols("model", "config", ">decode tok/s p50", ">tok/J median", ">tok/J 95% CI", ">energy J per run median",
                 ">runs with energy") + (_cols(">tokens per currency unit median") if priced else []) + _cols(
        "on frontier")
    rows = [[p.model, p.config, fmt(p.decode_tps_p50), fmt(p.tokens_per_j_p50, 3), fmt_ci(p.tokens_per_j_ci, 3),
             fmt(p.energy_j_p50), str(p.runs_with_energy)] + ([fmt(p.tokens_per_dollar_p50, 0)] if priced else [])
            + ["yes" if p.on_frontier else "no"] for p in e.points]
    return Table(columns=cols, rows=rows, row_classes=["win" if p.on_frontier else "" for p in e.points])


def vram_tables(data) -> dict[str, Table]:
    measured = any(r.measured_mib_max is not None for r in data.vram)
    cols = _cols("model", ">GPU layers", ">ctx", ">estimate GiB")
    if measured:
        cols += _cols(">measured max MiB", ">measured GiB")
    cols += _cols("decision", "reason")
    rows = []
    for r in data.vram:
        row = [r.model, _s(r.num_gpu), _s(r.num_ctx), fmt(r.estimate_gib, 3)]
        if measured:
            row += [fmt(r.measured_mib_max, 0),
                    fmt(None if r.measured_mib_max is None else r.measured_mib_max / 1024, 3)]
        rows.append(row + [r.decision, r.reason])
    return {
        "vram": Table(columns=cols, rows=rows),
        "quant": Table(columns=_cols("model", "quantization", ">params (B)", ">bits/weight", ">file GiB",
                                     ">max context", "source"),
                       rows=[[q.model, q.quantization or "unknown", fmt(q.params_b, 3), fmt(q.bits_per_weight, 2),
                              fmt(q.file_gib, 3), _s(q.context_length) or "unknown", q.source or "unknown"]
                             for q in data.quant]),
    }


def regression_tables(data) -> dict[str, Table]:
    r = data.regression
    if r is None:
        return {}
    order = {"regression": 0, "improvement": 1, "within threshold": 2, "not comparable": 3}
    comps = sorted(r.comparisons, key=lambda c: order[c.verdict])
    return {
        "regression": Table(
            columns=_cols("kind", "cell", "metric", ">baseline", ">current", ">n baseline / current", ">change %",
                          "verdict", "`matched on"),
            rows=[[c.kind, c.label, f"{c.metric} ({'higher' if c.higher_is_better else 'lower'} is better)",
                   fmt(c.baseline), fmt(c.current), f"{_s(c.n_baseline) or '?'} / {_s(c.n_current) or '?'}",
                   "n/a" if c.change_pct is None else f"{c.change_pct:+.1f}", c.verdict, c.key] for c in comps],
            row_classes=["regression" if c.verdict == "regression" else "win" if c.verdict == "improvement" else ""
                         for c in comps]),
        "regression_missing": Table(columns=_cols("kind", "cell", "`config", "side"),
                                    rows=[[m.kind, m.label, m.key, m.side] for m in r.missing]),
    }


def quality_tables(data) -> dict[str, Table]:
    return {
        "flagged": Table(columns=_cols("config", "run_id", ">attempt", "metric", ">value", ">median", ">MAD",
                                       ">threshold"),
                         rows=[[f.config, f.run_id, str(f.attempt), f.metric, fmt(f.value, 2), fmt(f.median, 2),
                                fmt(f.mad, 2), fmt(f.threshold, 2)] for f in data.flagged_runs]),
        "reruns": Table(columns=_cols("config", "metric", "attempts", ">before", ">after", ">change %",
                                      ">before 95% CI", ">after 95% CI"),
                        rows=[[r.config, r.metric, ", ".join(str(a) for a in r.attempts), fmt(r.before), fmt(r.after),
                               fmt(r.change_pct), fmt_ci(r.before_ci), fmt_ci(r.after_ci)] for r in data.reruns]),
        "failures": Table(columns=_cols("model", "config", "run_id", ">request", "error_kind", "message", "note"),
                          rows=[[f.model, f.config.label, f.run_id, str(f.request_index), f.error_kind or "unknown",
                                 _s(f.message), f.note] for f in data.failures]),
        "fallbacks": Table(columns=_cols("model", "config", "decision"),
                           rows=[[_s(f.get("model")), _s(f.get("from_config")), _s(f.get("decision"))]
                                 for f in data.fallbacks]),
        "server_failures": Table(columns=_cols("instance", "operation", "model", "error_kind", "message"),
                                 rows=[[_s(f.get("instance")), _s(f.get("operation")), _s(f.get("model")),
                                        _s(f.get("error_kind")), _s(f.get("error_message"))]
                                       for f in data.server_failures]),
        "invalid": Table(columns=_cols("model", "config", "run_id", "invalid_reason"),
                         rows=[[r.model, r.config.label, r.run_id, r.invalid_reason or "not given"]
                               for r in data.invalid_runs]),
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f} %"


def suites_tables(data) -> dict[str, Table]:
    su = data.suites
    if su is None:
        return {}
    return {
        "suite_scenarios": Table(
            columns=_cols("`model", "scenario", "JSON mode", ">requests", ">failed", ">JSON parse", ">schema valid",
                          ">route accuracy", ">sane", ">output tokens mean", ">latency p50 ms", ">p95 ms", ">p99 ms"),
            rows=[[r["model"], r["scenario"], "yes" if r["json_mode"] else "no", str(r["requests"]), str(r["errors"]),
                   _pct(r["json_parse_rate"]), _pct(r["schema_valid_rate"]), _pct(r["route_accuracy"]),
                   _pct(r["sane_rate"]), fmt(r["output_tokens_mean"]), fmt(r["latency_ms_p50"], 0),
                   fmt(r["latency_ms_p95"], 0), fmt(r["latency_ms_p99"], 0)] for r in su.scenarios],
            groups=_groups(("answers", ["JSON mode", "requests", "failed", "JSON parse", "schema valid",
                                        "route accuracy", "sane"]),
                           ("output and latency", ["output tokens mean", "latency p50 ms", "p95 ms", "p99 ms"]))),
        "qa_matrix": Table(
            columns=_cols("`model", "kind", ">questions", ">unanswerable", ">unreadable", ">overall",
                          ">value accuracy (x0.75)", ">ref overlap (x0.15)", ">NA recall (x0.10)", ">unit match",
                          ">latency p50 ms", ">p95 ms", ">output tokens mean"),
            rows=[[r["model"], r["kind"], str(r["questions"]), str(r["unanswerable"]), str(r["failed"]),
                   fmt(r["overall"], 3), fmt(r["value_accuracy"], 3), fmt(r["ref_overlap"], 3), fmt(r["na_recall"], 3),
                   fmt(r["unit_match"], 3), fmt(r["latency_ms_p50"], 0), fmt(r["latency_ms_p95"], 0),
                   fmt(r["output_tokens_mean"])] for r in su.qa],
            row_classes=["ensemble" if r["kind"] == "ensemble" else "" for r in su.qa],
            groups=_groups(("scores", ["questions", "unanswerable", "unreadable", "overall", "value accuracy (x0.75)",
                                       "ref overlap (x0.15)", "NA recall (x0.10)", "unit match"]),
                           ("latency and output", ["latency p50 ms", "p95 ms", "output tokens mean"]))),
        "quality_speed": Table(
            columns=_cols("`model", ">QA overall", ">decode tok/s p50", "frontier"),
            rows=[[p.model, fmt(p.overall, 3), fmt(p.decode_tps_p50), "yes" if p.on_frontier else ""]
                  for p in sorted(su.points, key=lambda p: -p.decode_tps_p50)]),
    }


def tables(data) -> dict[str, Table]:
    """All of the report's tables by name (a name is absent when its section has no data at all)."""
    out: dict[str, Table] = {}
    out.update(setup_tables(data))
    out.update(definition_tables(data))
    out["results"] = results_table(data)
    out["headline"] = headline_table(data)
    out["ma_headline"] = ma_headline_table(data)
    out["answers"] = answers_table(data)
    out["pct"] = pct_table(data)
    out["run_spread"] = run_spread_table(data)
    out.update(multi_agent_tables(data))
    out["winners"] = winner_table(data)
    out["energy"] = energy_table(data)
    out.update(vram_tables(data))
    out.update(regression_tables(data))
    out.update(quality_tables(data))
    out.update(suites_tables(data))
    return out
