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

Rules every figure keeps:
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

import io
import math
import struct
import textwrap
from collections.abc import Callable, Hashable, Sequence
from typing import Any
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; the figures below never touch pyplot

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from trbench.data.rows import CACHE_STATE_LABELS  # noqa: E402
from trbench.report.load_results import LoadStepResult  # noqa: E402
from trbench.report.models import Plot, ReportData  # noqa: E402
from trbench.report.text import count, join  # noqa: E402

COLUMN_CSS_PX = 1000  # the report's text column: report.html.j2 caps p and figcaption at 1000px
PIXEL_RATIO = 2  # device pixels per CSS pixel: sharp on high-density screens and when printed
WIDTH_IN = 8.0  # 9 pt text then shows at about 15 px, the page's body size; printed on A4 at about 8 pt
DPI = COLUMN_CSS_PX * PIXEL_RATIO / WIDTH_IN
FONT = 9.0
SMALL = 8.0
# Okabe-Ito's colour-blind-safe set (yellow too light on white, black and grey taken by the neutral
# keys), the most distinct first, then four of Paul Tol's
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#332288", "#999933", "#882255",
           "#44AA99"]
ENSEMBLE_COLOR = "#555555"  # a majority vote of several models is none of them
NEUTRAL = "#444444"
SLO_COLOR = "#C0392B"
LOG_SPAN = 10.0  # values spanning at least this factor get a log axis
STATE_MARKERS = {"cold": ("o", True), "partial": ("D", True), "cached": ("s", True), "cold_asked": ("o", False),
                 "cached_asked": ("s", False), "unknown": ("X", True)}
CONFIG_MARKERS = ["o", "s", "D", "^", "v", "P", "X", "*"]
CONFIG_LINES = ["-", "--", ":", "-."]
LABEL_CHARS = 26  # a row label longer than this wraps
# PNG metadata without the matplotlib version: the same data gives the same bytes across upgrades
_PNG_META = {"Software": None}

Colors = dict[str, str]
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


# --- colours and the figure ------------------------------------------------------------------------


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


def model_colors(models: Sequence[str]) -> Colors:
    """One colour per model, fixed for the whole report; past the palette, evenly spaced hues."""
    if len(models) <= len(PALETTE):
        return {m: PALETTE[i] for i, m in enumerate(models)}
    cmap = colormaps["turbo"]
    return {m: matplotlib.colors.to_hex(cmap((i + 0.5) / len(models))) for i, m in enumerate(models)}


def _color(colors: Colors, model: str) -> str:
    return colors.get(model, ENSEMBLE_COLOR)


def _figure(height_in: float) -> Figure:
    """A figure WIDTH_IN wide whose PNG is a whole number of CSS pixels high (an even number of pixels)."""
    height_in = round(height_in * DPI / PIXEL_RATIO) * PIXEL_RATIO / DPI
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text with before saving
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    return buf.getvalue()


def _legend(fig: Figure, handles: list, labels: list[str]) -> None:
    """One legend above the axes, in as many columns as fit the figure's width."""
    if not handles:
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    limit = fig.bbox.width * 0.98
    for ncol in range(len(labels), 0, -1):
        legend = fig.legend(handles, labels, loc="outside upper center", ncol=ncol, fontsize=SMALL, frameon=False,
                            handletextpad=0.4, columnspacing=1.2)
        if ncol == 1 or legend.get_window_extent(renderer).width <= limit:
            return
        legend.remove()


def _model_handle(colors: Colors, model: str) -> Line2D:
    return Line2D([], [], marker="o", linestyle="none", color=_color(colors, model), markersize=6,
                  gid=f"model:{model}")


def _neutral_handle(marker: str = "o", filled: bool = True, linestyle: Any = "none", color: str = NEUTRAL) -> Line2D:
    return Line2D([], [], marker=marker, linestyle=linestyle, color=color, markersize=6 if marker else 0,
                  markerfacecolor=color if filled else "white")


def _wrap(label: str) -> str:
    """A row label in lines of at most LABEL_CHARS (a name without spaces breaks at its punctuation)."""
    if len(label) <= LABEL_CHARS:
        return label
    spaced = label.replace(",", ", ").replace("/", "/ ").replace("_", "_ ")
    lines = textwrap.wrap(spaced, LABEL_CHARS, break_long_words=True)
    return "\n".join(ln.replace(", ", ",").replace("/ ", "/").replace("_ ", "_") for ln in lines)


def _positive(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and v > 0 and math.isfinite(v)]


def _plain(v: float, _pos: object = None) -> str:
    """A tick value as a reader writes it: 20, 100, 1,000, 0.5."""
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.0f}" if v >= 1 else f"{v:g}"


def _log_axis(axis, values: list[float]) -> None:
    """A log axis from the decade below the smallest value to the one above the largest, a label at
    every decade, and at 2 and 5 times it when the axis spans two decades or fewer."""
    lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    hi = max(hi, lo + 1)
    ax = axis.axes
    if axis.axis_name == "x":
        ax.set_xscale("log")
        ax.set_xlim(10.0 ** lo, 10.0 ** hi)
    else:
        ax.set_yscale("log")
        ax.set_ylim(10.0 ** lo, 10.0 ** hi)
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if hi - lo <= 2 else tuple(range(2, 10))))
    axis.set_minor_formatter(FuncFormatter(_plain) if hi - lo <= 2 else NullFormatter())


def _value_axis(axis, values: list[float], *, zero: bool) -> bool:
    """A log axis where the values span LOG_SPAN or more, else linear (from 0 when zero); True for log."""
    pos = _positive(list(values))
    if pos and max(pos) / min(pos) >= LOG_SPAN:
        _log_axis(axis, pos)
        return True
    axis.set_major_locator(MaxNLocator(nbins=6))
    axis.set_major_formatter(FuncFormatter(_plain))
    if zero:
        top = max(values, default=1.0) * 1.08 or 1.0
        (axis.axes.set_xlim if axis.axis_name == "x" else axis.axes.set_ylim)(0, top)
    return False


def _style(ax: Axes, title: str, xlabel: str = "", ylabel: str = "", grid: str = "both") -> None:
    """Title, axis labels, tick label size and grid lines (grid: "x" for a dot plot, whose rows are
    parted by their own lines)."""
    ax.set_title(title, fontsize=FONT)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=FONT)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=SMALL)
    ax.tick_params(which="minor", labelsize=SMALL - 1)
    ax.grid(alpha=0.3, which="major", axis=grid)  # type: ignore[arg-type]
    ax.set_axisbelow(True)


# --- dot plots: rows of points with interval whiskers -----------------------------------------------


@dataclass
class Row:
    """One row of a dot plot: its label and its points (series key, median, interval)."""

    label: str
    points: list[tuple[Hashable, float | None, tuple[float, float] | None]]  # key: a model, (model, state) ...


def _row_height(rows: list[Row], per_row: int) -> float:
    lines = max((_wrap(r.label).count("\n") + 1 for r in rows), default=1)
    return max(0.42, 0.17 * per_row + 0.1, 0.17 * lines + 0.12)


def _dot_height(n_rows: int, row_in: float) -> float:
    return 1.75 + n_rows * row_in


def _dots(ax: Axes, rows: list[Row], keys: Sequence[Hashable], style: Callable[[Any], tuple[str, str, str, bool]]
          ) -> list[float]:
    """Rows top to bottom, one sub-row per key (of those any row has), a point per (row, key) with its
    interval; style(key) -> (gid, colour, marker, filled). Returns every value drawn (points and interval ends)."""
    used = [k for k in keys if any(k == key and v is not None for r in rows for key, v, _ in r.points)]
    step = min(0.8 / max(len(used), 1), 0.3)
    drawn: list[float] = []
    for k_index, key in enumerate(used):
        gid, color, marker, filled = style(key)
        xs, ys, lo, hi = [], [], [], []
        for r_index, row in enumerate(rows):
            for k, v, ci in row.points:
                if k != key or v is None:
                    continue
                xs.append(v)
                ys.append(r_index + (k_index - (len(used) - 1) / 2) * step)
                lo.append(max(v - ci[0], 0.0) if ci else 0.0)
                hi.append(max(ci[1] - v, 0.0) if ci else 0.0)
                drawn += [v, *(ci or ())]
        bars = ax.errorbar(xs, ys, xerr=[lo, hi], fmt=marker, color=color, ecolor=color, elinewidth=1.3, capsize=2.5,
                           markersize=6, markerfacecolor=color if filled else "white", markeredgewidth=1.2, zorder=3)
        for artist in bars.get_children():
            artist.set_gid(gid)
    _row_axis(ax, [r.label for r in rows])
    return drawn


def _row_axis(ax: Axes, labels: list[str]) -> None:
    """The y axis of a dot plot: one labelled band per row, the first on top, parted by thin lines."""
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([_wrap(label) for label in labels], fontsize=SMALL)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    for boundary in range(1, len(labels)):
        ax.axhline(boundary - 0.5, color="#dddddd", linewidth=0.8, zorder=1)
    ax.tick_params(axis="y", length=0)


def _present(values: list[float | None]) -> bool:
    """Whether there is anything to draw: some value that is not missing and not zero."""
    return any(v is not None and v != 0 for v in values)


# --- the figures ------------------------------------------------------------------------------------


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
    states = [st for st in data.cache.states if _present([getattr(c, f"ttft_{st}_p50_ms") for c in data.cells])]
    has_tps = _present([c.decode_tps_p50 for c in data.cells])
    if not has_tps and not states:
        return Drawing(name, title, reason="No decode-rate or TTFT figure: no model x config has a decode rate or a "
                                           "TTFT above zero.")
    tps_rows = [Row(cfg, [(m, *_tps(cell.get((cfg, m)))) for m in models]) for cfg in configs]
    ttft_rows = [Row(cfg, [((m, st), *_ttft(cell.get((cfg, m)), st)) for m in models for st in states])
                 for cfg in configs]
    ttft_keys = [(m, st) for m in models for st in states]
    per_row = max(len(models) if has_tps else 0, len(ttft_keys))
    fig = _figure(_dot_height(len(configs), _row_height(tps_rows, per_row)))
    panels = fig.subplots(1, int(has_tps) + int(bool(states)), sharey=True, squeeze=False)[0]
    log = False
    if has_tps:
        ax = panels[0]
        drawn = _dots(ax, tps_rows, models, lambda m: (f"model:{m}", _color(colors, m), "o", True))
        _value_axis(ax.xaxis, drawn, zero=True)
        _style(ax, "decode tok/s median (higher is better)", "tok/s", grid="x")
    if states:
        ax = panels[-1]

        def state_style(key) -> tuple[str, str, str, bool]:
            marker, filled = STATE_MARKERS.get(key[1], ("o", True))
            return f"model:{key[0]}", _color(colors, key[0]), marker, filled

        drawn = _dots(ax, ttft_rows, ttft_keys, state_style)
        log = _value_axis(ax.xaxis, drawn, zero=True)
        _style(ax, "TTFT p50 by cache state (lower is better)", "ms (log scale)" if log else "ms", grid="x")
    handles = [_model_handle(colors, m) for m in models]
    labels = list(models)
    if len(states) > 1 or (states and states != ["cold"]):
        for st in states:
            marker, filled = STATE_MARKERS.get(st, ("o", True))
            handles.append(_neutral_handle(marker, filled))
            labels.append(f"TTFT {CACHE_STATE_LABELS.get(st, st)}")
    _legend(fig, handles, labels)
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
    if not _present([v for c in data.cells for v in c.run_means_decode_tps]):
        return Drawing(name, title, reason="No run-to-run figure: no valid run has a mean decode rate above zero.")
    configs, models = _configs(data), _ordered(colors, [c.model for c in data.cells])
    per_row = len(models)
    rows = [Row(cfg, []) for cfg in configs]
    fig = _figure(_dot_height(len(configs), _row_height(rows, per_row)))
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
        ax.plot(xs, ys, "o", color=_color(colors, m), markersize=5, alpha=0.85, zorder=3, gid=f"model:{m}")
        ax.plot(med_x, med_y, "|", color=NEUTRAL, markersize=13, markeredgewidth=1.6, zorder=4)
    _row_axis(ax, configs)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.margins(x=0.08)
    _style(ax, "mean decode tok/s of each valid run", "tok/s", grid="x")
    _legend(fig, [_model_handle(colors, m) for m in models] + [_neutral_handle("|")],
            [*models, "pooled median"])
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
    if not _present([r.efficiency_p50 for r in ma.results]):
        return Drawing(name, title, reason="No efficiency figure: no model x scenario has an efficiency median above 0.")
    scenarios = list(dict.fromkeys(r.scenario for r in ma.results))
    models = _ordered(colors, [r.model for r in ma.results])
    by = {(r.scenario, r.model): r for r in ma.results}
    rows = [Row(s, [(m, by[(s, m)].efficiency_p50, by[(s, m)].efficiency_p50_ci) for m in models if (s, m) in by])
            for s in scenarios]
    fig = _figure(_dot_height(len(scenarios), _row_height(rows, len(models))))
    ax = fig.subplots()
    drawn = _dots(ax, rows, models, lambda m: (f"model:{m}", _color(colors, m), "o", True))
    ax.axvline(100, color="#888888", linestyle="--", linewidth=1, zorder=2)
    ax.axvline(50, color="#888888", linestyle=":", linewidth=1, zorder=2)
    ax.set_xlim(0, max(110.0, max(drawn) * 1.05))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    _style(ax, "efficiency % median (higher is better)", "efficiency %", grid="x")
    _legend(fig, [_model_handle(colors, m) for m in models]
            + [_neutral_handle("", linestyle="--", color="#888888"), _neutral_handle("", linestyle=":", color="#888888")],
            [*models, "100 %: two agents at the cost of one", "50 %: no gain over one after the other"])
    return Drawing(name, title,
                   "Points: median over the valid runs; whiskers: bootstrap 95% intervals over the per-run values; "
                   "dashed: 100 % (perfect overlap), dotted: 50 % (no gain over running one after the other).",
                   f"Dot plot of the median multi-agent efficiency % with 95% intervals for {join(models)} in "
                   f"{count(len(scenarios), 'scenario')} ({join(scenarios)}), with lines at 50 % and 100 %.",
                   fig, models=models)


def _scatter_legend(fig: Figure, colors: Colors, models: list[str], configs: list[str], frontier: bool) -> None:
    handles = [_model_handle(colors, m) for m in models]
    labels = list(models)
    if len(configs) > 1:
        handles += [_neutral_handle(CONFIG_MARKERS[i % len(CONFIG_MARKERS)]) for i in range(len(configs))]
        labels += configs
    if frontier:
        handles.append(_neutral_handle("", linestyle="--"))
        labels.append("frontier")
    _legend(fig, handles, labels)


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
    if not points or not _present([p.tokens_per_j_p50 for p in points]):
        return Drawing(name, title, reason="No frontier figure: no model x config has both a decode rate and tokens "
                                           "per joule above zero.")
    models = _ordered(colors, [p.model for p in points])
    configs = list(dict.fromkeys(p.config for p in points))
    fig = _figure(3.8)
    ax = fig.subplots()
    front = []
    for p in points:
        tps, tpj, ci = p.decode_tps_p50 or 0.0, p.tokens_per_j_p50 or 0.0, p.tokens_per_j_ci  # both set (above)
        err = [[max(tpj - ci[0], 0.0)], [max(ci[1] - tpj, 0.0)]] if ci else None
        marker = CONFIG_MARKERS[configs.index(p.config) % len(CONFIG_MARKERS)]
        bars = ax.errorbar([tps], [tpj], yerr=err, fmt=marker, color=_color(colors, p.model),
                           markersize=8 if p.on_frontier else 6, capsize=3, zorder=3)
        for artist in bars.get_children():
            artist.set_gid(f"model:{p.model}")
        if p.on_frontier:
            front.append((tps, tpj))
    drew_front = _frontier_line(ax, front)
    ax.margins(x=0.12, y=0.12)
    _style(ax, "Efficiency frontier (up and right is better)", "decode tok/s median", "tokens per joule median")
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
    if not _present([r.get(key) for r in rows for key, *_ in QA_PARTS]):
        return Drawing(name, title, reason="No QA breakdown figure: no score or component in the matrix above is "
                                           "above 0.")
    dots = [Row(str(r["model"]), [((str(r["model"]), key), r.get(key), None) for key, *_ in QA_PARTS]) for r in rows]
    keys = [(str(r["model"]), key) for r in rows for key, *_ in QA_PARTS]
    marks = {key: (marker, filled) for key, _, marker, filled in QA_PARTS}
    fig = _figure(_dot_height(len(rows), _row_height(dots, len(QA_PARTS))))
    ax = fig.subplots()

    def part_style(key) -> tuple[str, str, str, bool]:
        model, part = key
        return f"model:{model}", _color(colors, model), *marks[part]

    # each row keeps its own four sub-rows: keyed per (row, part), drawn one row at a time
    for i, row in enumerate(dots):
        only = [Row(d.label, d.points if j == i else []) for j, d in enumerate(dots)]
        _dots(ax, only, [k for k in keys if k[0] == row.label], part_style)
    ax.set_xlim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    _style(ax, "QA scores per model (1 = every answer right)", "score", grid="x")
    models = [str(r["model"]) for r in rows if r.get("kind", "model") == "model"]
    _legend(fig, [_neutral_handle(marker, filled) for _, _, marker, filled in QA_PARTS],
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
    if not _present([p.overall for p in points]):
        return Drawing(name, title, reason="No quality-against-speed figure: every model's QA overall score is 0, so "
                                           "only speed tells them apart (the table above).")
    models = _ordered(colors, [p.model for p in points])
    fig = _figure(3.6)
    ax = fig.subplots()
    for p in points:
        ax.plot([p.decode_tps_p50], [p.overall], "o", color=_color(colors, p.model),
                markersize=9 if p.on_frontier else 6, zorder=3, gid=f"model:{p.model}")
    front = _frontier_line(ax, [(p.decode_tps_p50, p.overall) for p in points if p.on_frontier])
    ax.set_ylim(-0.02, 1.02)
    ax.margins(x=0.15)
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    _style(ax, "Good enough and fastest (up and right is better)", "decode tok/s median (fastest config)",
           "QA overall score")
    _scatter_legend(fig, colors, models, [], front)
    return Drawing(name, title, f"One point per model; larger points are on the frontier ({su.frontier_rule}).",
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
    panels = [p for p in LOAD_PANELS if _present([p.y(s) for s in valid]) and _present([p.x(s) for s in valid])]
    if not panels:
        return Drawing(name, title, reason="No load curves: no valid step has both a throughput and a latency "
                                           "above zero.")
    lines: dict[tuple[str, str], list] = {}
    for s in valid:
        lines.setdefault((s.model, s.config), []).append(s)
    models = _ordered(colors, [m for m, _ in lines])
    configs = list(dict.fromkeys(c for _, c in lines))
    fig = _figure(3.9)
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
                    linestyle=CONFIG_LINES[ci % len(CONFIG_LINES)], color=_color(colors, model), markersize=5,
                    zorder=3, gid=f"model:{model}")
            ys += [p[1] for p in pts]
            panel_pts += pts
        labelled.append((ax, panel_pts))
        limit = slo.get(panel.slo)
        if limit is not None:
            ax.axhline(limit, color=SLO_COLOR, linestyle="--", linewidth=1.2, zorder=2, gid=f"slo:{panel.slo}")
            ys.append(limit)
        if _value_axis(ax.yaxis, ys, zero=True):
            logs.append(panel.title)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        ax.margins(x=0.12)
        _style(ax, panel.title + (f" (SLO {_plain(limit)} ms)" if limit is not None else ""), panel.xlabel, panel.ylabel)
    handles = [_model_handle(colors, m) for m in models]
    labels = list(models)
    if len(configs) > 1:
        handles += [_neutral_handle(CONFIG_MARKERS[i % len(CONFIG_MARKERS)], linestyle=CONFIG_LINES[i % len(CONFIG_LINES)])
                    for i in range(len(configs))]
        labels += configs
    drawn_slos = [p.slo for p in panels if p.slo in slo]
    if drawn_slos:
        handles.append(_neutral_handle("", linestyle="--", color=SLO_COLOR))
        labels.append("SLO limit")
    _legend(fig, handles, labels)
    fig.canvas.draw()  # the layout settles before the step labels are placed
    for ax, pts in labelled:
        _label_points(fig, ax, pts)
    unshown = [k for k in slo if k not in drawn_slos]
    caption = ("One line per model x config through its load steps (labels: the step, where there is room); right "
               "and down is better. Each point is one step's figures over its measured requests."
               + (" Dashed red: the spec's SLO limit on each request; a percentile above it means more than that "
                  "share of requests missed it." if drawn_slos else "")
               + (f" Not drawn: {join(unshown)} (no figure of it to hold against)." if unshown else "")
               + (f" Logarithmic latency axis ({join(logs)}): its values and limit span tenfold or more."
                  if logs else ""))
    alt = (f"Line plots of {join(p.title for p in panels)} against throughput over the load steps of "
           f"{join(f'{m} {c}' for m, c in lines)}" + (f", with the SLO limits on {join(drawn_slos)}" if drawn_slos else "")
           + ".")
    return Drawing(name, title, caption, alt, fig, models=models)


def _label_points(fig: Figure, ax: Axes, points: list[tuple[float, float, str]]) -> None:
    """Label each point where its label fits inside the axes and meets no other label; else none."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    inside = ax.get_window_extent(renderer)
    placed: list = []
    for x, y, label in points:
        for dx, dy, ha in ((4, 4, "left"), (4, -11, "left"), (-4, 4, "right"), (-4, -11, "right")):
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=SMALL - 1,
                               ha=ha, color=NEUTRAL, annotation_clip=True)
            text.set_in_layout(False)
            box = text.get_window_extent(renderer)
            fits = (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1)
            if fits and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()


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
    png = _png(d.figure)
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR: its size in pixels
    return Plot(name=d.name, title=d.title, caption=d.caption, alt=d.alt, png=png, width_px=round(width / PIXEL_RATIO),
                height_px=round(height / PIXEL_RATIO))


def render_plots(data: ReportData) -> list[Plot]:
    """Every figure there is data for, in report order, and the reason for each one left out."""
    return [to_plot(d) for d in drawings(data)]
