"""The report's figures (matplotlib, Agg: no display, no pyplot state, safe in worker threads).

drawings(data) draws every figure the report's data holds, as matplotlib Figures (tests read them);
render_plots(data) turns them into Plots (PNG bytes with a title, caption and alt text). A figure
whose section has data but nothing to draw (every value missing or zero) comes back as its reason,
which the report prints where the figure would be; a figure whose section has no data at all is not
spoken of (the section says so itself). The numbers drawn are the report's (medians and bootstrap
95% intervals from build_report), never recomputed here.

  throughput_ttft         decode tok/s and TTFT p50 per cache state, per model x config
  run_spread              mean decode tok/s of every valid run per model x config (run to run)
  multi_agent_efficiency  efficiency % median per scenario and model, 50 % and 100 % lines
  efficiency_frontier     tokens per joule against decode tok/s, frontier drawn (energy only)
  load_curves             load steps' throughput against latency, with the spec's SLO limits
  qa_breakdown            QA overall score and its components per model and ensemble
  quality_vs_speed        QA overall score against decode tok/s, frontier drawn

Rules every figure keeps (the layout itself: trbench/report/plot_layout.py):
- a median is a point with its interval as a whisker, never a bar: a bar's length means nothing on
  a log axis, and a point needs no zero;
- categories are rows with horizontal labels (long names wrap), so no label meets another;
- one colour per model, the same in every figure of a report (model_colors, built once);
- a log axis only where the values span tenfold or more, labelled at every decade (and at 2 and 5
  when it spans two decades or fewer), in plain numbers;
- every figure is the report's text column wide (COLUMN_CSS_PX) at PIXEL_RATIO device pixels per CSS
  pixel, its text at about the page's body size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trbench.data.rows import CACHE_STATE_LABELS
from trbench.report.load_results import LoadStepResult
from trbench.report.models import Plot, ReportData
from trbench.report.plot_layout import (
    NEUTRAL, PIXEL_RATIO, SLO_COLOR, Colors, PlainFormatter, Row, color_of, dot_height, dots, key_handle, label_points,
    legend_above, model_colors, model_handle, new_figure, plain, present, png_bytes, row_axis, row_height, style_axes,
    value_axis)
from trbench.prose.english import count, join

STATE_MARKERS = {"cold": ("o", True), "partial": ("D", True), "cached": ("s", True), "cold_asked": ("o", False),
                 "cached_asked": ("s", False), "unknown": ("X", True)}
CONFIG_MARKERS = ["o", "s", "D", "^", "v", "P", "X", "*"]
CONFIG_LINES = ["-", "--", ":", "-."]

Value = tuple[float | None, tuple[float, float] | None]


@dataclass
class Drawing:
    """One figure as drawn (figure set), or why the report has none (reason set)."""

    name: str
    title: str
    caption: str = ""
    alt: str = ""
    figure: Figure | None = None
    reason: str = ""
    models: list[str] = field(default_factory=list)  # the models it colours


def report_models(data: ReportData) -> list[str]:
    """Every model the report speaks of, in the report's order: the measured ones as the spec lists
    them (the order of the cells and steps), then any other model the setup names."""
    names = [c.model for c in data.cells]
    names += [r.model for r in (data.multi_agent.results if data.multi_agent else [])]
    names += [s.model for s in (data.load.steps if data.load else [])]
    names += [p.model for p in data.energy.points]
    names += [str(r["model"]) for r in (data.suites.qa if data.suites else []) if r.get("kind", "model") == "model"]
    names += [m.name for m in data.setup.models]
    return list(dict.fromkeys(names))


def _configs(data: ReportData) -> list[str]:
    return list(dict.fromkeys(c.config.label for c in data.cells))


def _ordered(colors: Colors, models: list[str]) -> list[str]:
    """The models in the report's order (the colour map's), any others after them."""
    return [m for m in colors if m in models] + [m for m in dict.fromkeys(models) if m not in colors]


def throughput_ttft(data: ReportData, colors: Colors) -> Drawing | None:
    name, title = "throughput_ttft", "Decode rate and TTFT per model x config"
    if not data.cells:
        return None
    configs, models = _configs(data), _ordered(colors, [c.model for c in data.cells])
    cell = {(c.config.label, c.model): c for c in data.cells}
    states = [st for st in data.cache.states if present([getattr(c, f"ttft_{st}_p50_ms") for c in data.cells])]
    has_tps = present([c.decode_tps_p50 for c in data.cells])
    if not has_tps and not states:
        return Drawing(name, title, reason="No decode-rate or TTFT figure: no model x config has a decode rate or a "
                                           "TTFT above zero.")
    tps_rows = [Row(cfg, [(m, *_tps(cell.get((cfg, m)))) for m in models]) for cfg in configs]
    ttft_rows = [Row(cfg, [((m, st), *_ttft(cell.get((cfg, m)), st)) for m in models for st in states])
                 for cfg in configs]
    ttft_keys = [(m, st) for m in models for st in states]
    per_row = max(len(models) if has_tps else 0, len(ttft_keys))
    fig = new_figure(dot_height(len(configs), row_height(tps_rows, per_row)))
    panels = fig.subplots(1, int(has_tps) + int(bool(states)), sharey=True, squeeze=False)[0]
    log = False
    if has_tps:
        ax = panels[0]
        drawn = dots(ax, tps_rows, models, lambda m: (f"model:{m}", color_of(colors, m), "o", True))
        value_axis(ax.xaxis, drawn, zero=True)
        style_axes(ax, "decode tok/s median (higher is better)", "tok/s", grid="x")
    if states:
        ax = panels[-1]

        def state_style(key) -> tuple[str, str, str, bool]:
            marker, filled = STATE_MARKERS.get(key[1], ("o", True))
            return f"model:{key[0]}", color_of(colors, key[0]), marker, filled

        drawn = dots(ax, ttft_rows, ttft_keys, state_style)
        log = value_axis(ax.xaxis, drawn, zero=True)
        style_axes(ax, "TTFT p50 by cache state (lower is better)", "ms (log scale)" if log else "ms", grid="x")
    handles = [model_handle(colors, m) for m in models]
    labels = list(models)
    if len(states) > 1 or (states and states != ["cold"]):
        for st in states:
            marker, filled = STATE_MARKERS.get(st, ("o", True))
            handles.append(key_handle(marker, filled))
            labels.append(f"TTFT {CACHE_STATE_LABELS.get(st, st)}")
    legend_above(fig, handles, labels)
    shown = (["decode tok/s"] if has_tps else []) + (
        [f"TTFT p50 per cache state ({join(CACHE_STATE_LABELS.get(s, s) for s in states)})"] if states else [])
    caption = ("Points: pooled medians; whiskers: bootstrap 95% intervals (runs and requests resampled); one row per "
               "config, one colour per model." + (" TTFT: one marker per cache state of the prefill, never pooled."
                                                   if states else "")
               + (" The TTFT axis is logarithmic: its values span tenfold or more." if log else ""))
    alt = (f"Dot plot of {join(shown)}, medians with 95% intervals, for {join(models)} at "
           f"{count(len(configs), 'config')} ({join(configs)}).")
    return Drawing(name, title, caption, alt, fig, models=models)


def _tps(c) -> Value:
    return (c.decode_tps_p50, c.decode_tps_p50_ci) if c else (None, None)


def _ttft(c, state: str) -> Value:
    if c is None:
        return None, None
    return getattr(c, f"ttft_{state}_p50_ms"), getattr(c, f"ttft_{state}_p50_ci")


def run_spread(data: ReportData, colors: Colors) -> Drawing | None:
    name, title = "run_spread", "Run-to-run spread of decode tok/s"
    if not data.cells:
        return None
    if not present([v for c in data.cells for v in c.run_means_decode_tps]):
        return Drawing(name, title, reason="No run-to-run figure: no valid run has a mean decode rate above zero.")
    configs, models = _configs(data), _ordered(colors, [c.model for c in data.cells])
    per_row = len(models)
    rows = [Row(cfg, []) for cfg in configs]
    fig = new_figure(dot_height(len(configs), row_height(rows, per_row)))
    ax = fig.subplots()
    step = min(0.8 / max(per_row, 1), 0.3)
    by = {(c.config.label, c.model): c for c in data.cells}
    for mi, m in enumerate(models):
        xs, ys, med_x, med_y = [], [], [], []
        for ri, cfg in enumerate(configs):
            c = by.get((cfg, m))
            if c is None:
                continue
            y = ri + (mi - (per_row - 1) / 2) * step
            values = [v for v in c.run_means_decode_tps if v is not None]
            xs += values
            ys += [y] * len(values)
            if c.decode_tps_p50 is not None:
                med_x.append(c.decode_tps_p50)
                med_y.append(y)
        ax.plot(xs, ys, "o", color=color_of(colors, m), markersize=5, alpha=0.85, zorder=3, gid=f"model:{m}")
        ax.plot(med_x, med_y, "|", color=NEUTRAL, markersize=13, markeredgewidth=1.6, zorder=4)
    row_axis(ax, configs)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.xaxis.set_major_formatter(PlainFormatter())
    ax.margins(x=0.08)
    style_axes(ax, "mean decode tok/s of each valid run", "tok/s", grid="x")
    legend_above(fig, [model_handle(colors, m) for m in models] + [key_handle("|")], [*models, "pooled median"])
    runs = sum(len([v for v in c.run_means_decode_tps if v is not None]) for c in data.cells)
    return Drawing(name, title,
                   "One point per valid run (its mean decode tok/s); the bar is the config's pooled median. The axis "
                   "does not start at 0: it shows the spread.",
                   f"Strip plot of the mean decode tok/s of {count(runs, 'valid run')} for {join(models)} at "
                   f"{count(len(configs), 'config')}, with each pooled median.", fig, models=models)


def multi_agent_efficiency(data: ReportData, colors: Colors) -> Drawing | None:
    name, title = "multi_agent_efficiency", "Multi-agent efficiency per scenario"
    ma = data.multi_agent
    if ma is None or not ma.results:
        return None
    if not present([r.efficiency_p50 for r in ma.results]):
        return Drawing(name, title, reason="No efficiency figure: no model x scenario has an efficiency median above 0.")
    scenarios = list(dict.fromkeys(r.scenario for r in ma.results))
    models = _ordered(colors, [r.model for r in ma.results])
    by = {(r.scenario, r.model): r for r in ma.results}
    rows = [Row(s, [(m, by[(s, m)].efficiency_p50, by[(s, m)].efficiency_p50_ci) for m in models if (s, m) in by])
            for s in scenarios]
    fig = new_figure(dot_height(len(scenarios), row_height(rows, len(models))))
    ax = fig.subplots()
    drawn = dots(ax, rows, models, lambda m: (f"model:{m}", color_of(colors, m), "o", True))
    ax.axvline(100, color="#888888", linestyle="--", linewidth=1, zorder=2)
    ax.axvline(50, color="#888888", linestyle=":", linewidth=1, zorder=2)
    ax.set_xlim(0, max(110.0, max(drawn) * 1.05))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    style_axes(ax, "efficiency % median (higher is better)", "efficiency %", grid="x")
    legend_above(fig, [model_handle(colors, m) for m in models]
                 + [key_handle("", linestyle="--", color="#888888"), key_handle("", linestyle=":", color="#888888")],
                 [*models, "100 %: two agents at the cost of one", "50 %: no gain over one after the other"])
    return Drawing(name, title,
                   "Points: median over the valid runs; whiskers: bootstrap 95% intervals over the per-run values; "
                   "dashed: 100 % (perfect overlap), dotted: 50 % (no gain over running one after the other).",
                   f"Dot plot of the median multi-agent efficiency % with 95% intervals for {join(models)} in "
                   f"{count(len(scenarios), 'scenario')} ({join(scenarios)}), with lines at 50 % and 100 %.",
                   fig, models=models)


def _scatter_legend(fig: Figure, colors: Colors, models: list[str], configs: list[str], frontier: bool) -> None:
    handles = [model_handle(colors, m) for m in models]
    labels = list(models)
    if len(configs) > 1:
        handles += [key_handle(CONFIG_MARKERS[i % len(CONFIG_MARKERS)]) for i in range(len(configs))]
        labels += configs
    if frontier:
        handles.append(key_handle("", linestyle="--"))
        labels.append("frontier")
    legend_above(fig, handles, labels)


def _frontier_line(ax: Axes, front: list[tuple[float, float]]) -> bool:
    if len(front) < 2:
        return False
    xs, ys = zip(*sorted(front))
    ax.plot(xs, ys, color=NEUTRAL, linestyle="--", linewidth=1, zorder=2)
    return True


def efficiency_frontier(data: ReportData, colors: Colors) -> Drawing | None:
    name, title = "efficiency_frontier", "Efficiency frontier: tokens per joule against decode tok/s"
    if not data.energy.measured:
        return None
    points = [p for p in data.energy.points if p.decode_tps_p50 is not None and p.tokens_per_j_p50 is not None]
    if not points or not present([p.tokens_per_j_p50 for p in points]):
        return Drawing(name, title, reason="No frontier figure: no model x config has both a decode rate and tokens "
                                           "per joule above zero.")
    models = _ordered(colors, [p.model for p in points])
    configs = list(dict.fromkeys(p.config for p in points))
    fig = new_figure(3.8)
    ax = fig.subplots()
    front = []
    for p in points:
        tps, tpj, ci = p.decode_tps_p50 or 0.0, p.tokens_per_j_p50 or 0.0, p.tokens_per_j_ci  # both set (above)
        err = [[max(tpj - ci[0], 0.0)], [max(ci[1] - tpj, 0.0)]] if ci else None
        marker = CONFIG_MARKERS[configs.index(p.config) % len(CONFIG_MARKERS)]
        bars = ax.errorbar([tps], [tpj], yerr=err, fmt=marker, color=color_of(colors, p.model),
                           markersize=8 if p.on_frontier else 6, capsize=3, zorder=3)
        for artist in bars.get_children():
            artist.set_gid(f"model:{p.model}")
        if p.on_frontier:
            front.append((tps, tpj))
    drew_front = _frontier_line(ax, front)
    ax.margins(x=0.12, y=0.12)
    style_axes(ax, "Efficiency frontier (up and right is better)", "decode tok/s median", "tokens per joule median")
    _scatter_legend(fig, colors, models, configs, drew_front)
    return Drawing(name, title,
                   "One point per model x config (marker: config; larger: on the frontier); whiskers: bootstrap 95% "
                   "intervals of tokens per joule over runs; dashed: the configs no other beats on both axes.",
                   f"Scatter plot of median tokens per joule against median decode tok/s for {join(models)} at "
                   f"{count(len(configs), 'config')}, with the efficiency frontier.", fig, models=models)


QA_PARTS = [("overall", "overall score", "o", True), ("value_accuracy", "value accuracy", "s", False),
            ("ref_overlap", "ref overlap", "^", False), ("na_recall", "NA recall", "D", False)]


def qa_breakdown(data: ReportData, colors: Colors) -> Drawing | None:
    """Each model's (and ensemble's) QA overall score and its components, one row each."""
    name, title = "qa_breakdown", "QA score and its components per model"
    su = data.suites
    rows = [r for r in (su.qa if su else []) if r["overall"] is not None]
    if not rows:
        return None
    if not present([r.get(key) for r in rows for key, *_ in QA_PARTS]):
        return Drawing(name, title, reason="No QA breakdown figure: every QA score and each of its components "
                                           "is 0.")
    qa_rows = [Row(str(r["model"]), [((str(r["model"]), key), r.get(key), None) for key, *_ in QA_PARTS]) for r in rows]
    keys = [(str(r["model"]), key) for r in rows for key, *_ in QA_PARTS]
    marks = {key: (marker, filled) for key, _, marker, filled in QA_PARTS}
    fig = new_figure(dot_height(len(rows), row_height(qa_rows, len(QA_PARTS))))
    ax = fig.subplots()

    def part_style(key) -> tuple[str, str, str, bool]:
        model, part = key
        return f"model:{model}", color_of(colors, model), *marks[part]

    # each row keeps its own four sub-rows: keyed per (row, part), drawn one row at a time
    for i, row in enumerate(qa_rows):
        only = [Row(d.label, d.points if j == i else []) for j, d in enumerate(qa_rows)]
        dots(ax, only, [k for k in keys if k[0] == row.label], part_style)
    ax.set_xlim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    style_axes(ax, "QA scores per model (1 = every answer right)", "score", grid="x")
    models = [str(r["model"]) for r in rows if r.get("kind", "model") == "model"]
    legend_above(fig, [key_handle(marker, filled) for _, _, marker, filled in QA_PARTS],
                 [label for _, label, _, _ in QA_PARTS])
    ensembles = [str(r["model"]) for r in rows if r.get("kind", "model") != "model"]
    return Drawing(name, title,
                   "Overall score = 0.75 x value accuracy + 0.15 x ref overlap + 0.10 x NA recall; each is 0 to 1, "
                   "one row per model" + (" and ensemble (grey: the majority vote of the models named)"
                                          if ensembles else "") + ".",
                   f"Dot plot of the QA overall score, value accuracy, ref overlap and NA recall for "
                   f"{join(str(r['model']) for r in rows)}.", fig, models=models)


def quality_vs_speed(data: ReportData, colors: Colors) -> Drawing | None:
    name, title = "quality_vs_speed", "QA quality against decode speed"
    su = data.suites
    points = su.points if su else []
    if su is None or not points:
        return None
    if not present([p.overall for p in points]):
        return Drawing(name, title, reason="No quality-against-speed figure: every model's QA overall score is 0, so "
                                           "only speed tells them apart (the table above).")
    models = _ordered(colors, [p.model for p in points])
    fig = new_figure(3.6)
    ax = fig.subplots()
    for p in points:
        ax.plot([p.decode_tps_p50], [p.overall], "o", color=color_of(colors, p.model),
                markersize=9 if p.on_frontier else 6, zorder=3, gid=f"model:{p.model}")
    front = _frontier_line(ax, [(p.decode_tps_p50, p.overall) for p in points if p.on_frontier])
    ax.set_ylim(-0.02, 1.02)
    ax.margins(x=0.15)
    ax.xaxis.set_major_formatter(PlainFormatter())
    style_axes(ax, "Good enough and fastest (up and right is better)", "decode tok/s median (fastest config)",
               "QA overall score")
    _scatter_legend(fig, colors, models, [], front)
    return Drawing(name, title, "One point per model; larger points are on the frontier (the rule stated above).",
                   f"Scatter plot of the QA overall score against median decode tok/s for {join(models)}.",
                   fig, models=models)


@dataclass
class LoadPanel:
    """One panel of the load curves: a latency figure of each step against a throughput figure."""

    title: str
    ylabel: str
    slo: str  # the SLO (spec load.slo key) each request is held to on this latency
    y: Callable[[LoadStepResult], float | None]
    xlabel: str
    x: Callable[[LoadStepResult], float | None]


LOAD_PANELS = [LoadPanel("TTFT p95", "TTFT p95 ms", "ttft_ms", lambda s: s.ttft_ms_p95, "output tok/s", lambda s: s.output_tps),
               LoadPanel("TPOT p95", "TPOT p95 ms", "tpot_ms", lambda s: s.tpot_ms_p95, "output tok/s", lambda s: s.output_tps),
               LoadPanel("e2e p99", "e2e p99 ms", "e2e_ms", lambda s: s.e2e_ms_p99, "requests/s", lambda s: s.request_rps)]


def load_curves(data: ReportData, colors: Colors) -> Drawing | None:
    """Load mode's throughput-latency curves: one line per model x config through its steps, one panel
    per latency figure, each with its SLO limit where the spec sets one."""
    name, title = "load_curves", "Load: throughput against latency, per step"
    steps = data.load.steps if data.load else []
    if not steps:
        return None
    valid = [s for s in steps if s.valid]
    if not valid:
        return Drawing(name, title, reason="No load curves: no load step is valid (the steps table below says why).")
    slo = data.load.slo if data.load else {}
    panels = [p for p in LOAD_PANELS if present([p.y(s) for s in valid]) and present([p.x(s) for s in valid])]
    if not panels:
        return Drawing(name, title, reason="No load curves: no valid step has both a throughput and a latency "
                                           "above zero.")
    lines: dict[tuple[str, str], list] = {}
    for s in valid:
        lines.setdefault((s.model, s.config), []).append(s)
    models = _ordered(colors, [m for m, _ in lines])
    configs = list(dict.fromkeys(c for _, c in lines))
    fig = new_figure(3.9)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    logs: list[str] = []
    labelled: list[tuple[Axes, list[tuple[float, float, str]]]] = []
    for ax, panel in zip(axes, panels):
        ys: list[float] = []
        panel_pts: list[tuple[float, float, str]] = []
        for (model, config), group in lines.items():
            pts = [(x, y, s.step_label) for s in group if (x := panel.x(s)) is not None and (y := panel.y(s)) is not None]
            ci = configs.index(config)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=CONFIG_MARKERS[ci % len(CONFIG_MARKERS)],
                    linestyle=CONFIG_LINES[ci % len(CONFIG_LINES)], color=color_of(colors, model), markersize=5,
                    zorder=3, gid=f"model:{model}")
            ys += [p[1] for p in pts]
            panel_pts += pts
        labelled.append((ax, panel_pts))
        limit = slo.get(panel.slo)
        if limit is not None:
            ax.axhline(limit, color=SLO_COLOR, linestyle="--", linewidth=1.2, zorder=2, gid=f"slo:{panel.slo}")
            ys.append(limit)
        if value_axis(ax.yaxis, ys, zero=True):
            logs.append(panel.title)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(PlainFormatter())
        ax.margins(x=0.12)
        style_axes(ax, panel.title + (f" (SLO {plain(limit)} ms)" if limit is not None else ""), panel.xlabel, panel.ylabel)
    handles = [model_handle(colors, m) for m in models]
    labels = list(models)
    if len(configs) > 1:
        handles += [key_handle(CONFIG_MARKERS[i % len(CONFIG_MARKERS)], linestyle=CONFIG_LINES[i % len(CONFIG_LINES)])
                    for i in range(len(configs))]
        labels += configs
    drawn_slos = [p.slo for p in panels if p.slo in slo]
    if drawn_slos:
        handles.append(key_handle("", linestyle="--", color=SLO_COLOR))
        labels.append("SLO limit")
    legend_above(fig, handles, labels)
    fig.canvas.draw()  # the layout settles before the step labels are placed
    for ax, pts in labelled:
        label_points(fig, ax, pts)
    unshown = [k for k in slo if k not in drawn_slos]
    caption = ("One line per model x config through its load steps (labels: the step, where there is room); right "
               "and down is better. Each point is one step's figures over its measured requests."
               + (" Dashed red: the spec's SLO limit on each request; where a step's p95 is above it, more than "
                  "about 5 % of its requests missed it (a p99: 1 %)." if drawn_slos else "")
               + (f" Not drawn: {join(unshown)} (no figure of it to hold against)." if unshown else "")
               + (f" Logarithmic latency axis ({join(logs)}): its values and limit span tenfold or more."
                  if logs else ""))
    alt = (f"Line plots of {join(p.title for p in panels)} against throughput over the load steps of "
           f"{join(f'{m} {c}' for m, c in lines)}" + (f", with the SLO limits on {join(drawn_slos)}" if drawn_slos else "")
           + ".")
    return Drawing(name, title, caption, alt, fig, models=models)


PLOTS: list[Callable[[ReportData, Colors], Drawing | None]] = [
    throughput_ttft, run_spread, multi_agent_efficiency, efficiency_frontier, load_curves, qa_breakdown,
    quality_vs_speed]


def drawings(data: ReportData) -> list[Drawing]:
    """Every figure the report's data holds (or why it has none), in report order, coloured by one
    model -> colour map."""
    colors = model_colors(report_models(data))
    return [d for d in (make(data, colors) for make in PLOTS) if d is not None]


def to_plot(d: Drawing) -> Plot:
    if d.figure is None:
        return Plot(name=d.name, title=d.title, reason=d.reason)
    png = png_bytes(d.figure)
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR: its size in pixels
    return Plot(name=d.name, title=d.title, caption=d.caption, alt=d.alt, png=png, width_px=round(width / PIXEL_RATIO),
                height_px=round(height / PIXEL_RATIO))


def render_plots(data: ReportData) -> list[Plot]:
    """Every figure there is data for, in report order, and the reason for each one left out."""
    return [to_plot(d) for d in drawings(data)]
