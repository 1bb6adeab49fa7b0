"""The report's figures (matplotlib, Agg: no display, no pyplot state, safe in worker threads).

Each function takes a ReportData and returns a Plot (PNG bytes with a title and caption), or None
when there is nothing to draw; render_plots() returns those that exist. The numbers drawn are the
report's numbers (medians and bootstrap 95% intervals from build_report), never recomputed here.

  throughput_ttft         decode tok/s median and TTFT p50 per model x config, interval bars
  run_spread              mean decode tok/s of every valid run per model x config (run to run)
  multi_agent_efficiency  efficiency % median per scenario and model, interval bars, 100 % line
  efficiency_frontier     tokens per joule against decode tok/s, frontier drawn (energy only)
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; the figures below never touch pyplot

from matplotlib.figure import Figure  # noqa: E402

from trbench.data.rows import CACHE_STATE_LABELS  # noqa: E402
from trbench.report.models import Plot, ReportData  # noqa: E402

DPI = 110
COLORS = ["#1f5f99", "#d9822b", "#3a9a4f", "#b8403a", "#7b5ea7", "#8c6d31", "#3b9fb5", "#c25a9b"]
# PNG metadata without the matplotlib version: the same data gives the same bytes across upgrades
_PNG_META = {"Software": None}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    return buf.getvalue()


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _err(value: float | None, ci: tuple[float, float] | None) -> tuple[float, float]:
    """Asymmetric error bar lengths (below, above) of a median and its interval; 0 without one."""
    if value is None or ci is None:
        return 0.0, 0.0
    return max(value - ci[0], 0.0), max(ci[1] - value, 0.0)


def _grouped_bars(ax, groups: list[str], series: list[str], value, title: str, ylabel: str) -> None:
    """Bars per group (x) and series (colour), with interval whiskers; value(group, series) ->
    (median, interval) or None."""
    n = max(len(series), 1)
    width = 0.8 / n
    for si, name in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for gi, group in enumerate(groups):
            got = value(group, name)
            if got is None or got[0] is None:
                continue
            v, ci = got
            below, above = _err(v, ci)
            xs.append(gi - 0.4 + width * (si + 0.5))
            ys.append(v)
            lo.append(below)
            hi.append(above)
        ax.bar(xs, ys, width=width * 0.92, color=_color(si), label=name)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#222", elinewidth=1, capsize=3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=15 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center",
                       fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend_on_top(fig: Figure, ax) -> None:
    """One legend above the axes, out of the bars' way."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.9))
    else:
        fig.tight_layout()


def _configs(data: ReportData) -> list[str]:
    return list(dict.fromkeys(c.config.label for c in data.cells))


def _models(data: ReportData) -> list[str]:
    return list(dict.fromkeys(c.model for c in data.cells))


def throughput_ttft(data: ReportData) -> Plot | None:
    if not data.cells:
        return None
    configs, models = _configs(data), _models(data)
    cell = {(c.config.label, c.model): c for c in data.cells}
    fig = Figure(figsize=(max(7.0, 2.2 * len(configs) + 3), 3.8))
    ax1, ax2 = fig.subplots(1, 2)

    def tps(cfg, m):
        c = cell.get((cfg, m))
        return (c.decode_tps_p50, c.decode_tps_p50_ci) if c else None

    # TTFT per cache state: one group per config x state, never a bar that pools cold and cached
    states = data.cache.states
    groups = [(cfg, st) for cfg in configs for st in states]

    def ttft(group, m):
        c = cell.get((group[0], m))
        if c is None or getattr(c, f"ttft_{group[1]}_p50_ms") is None:
            return None
        return getattr(c, f"ttft_{group[1]}_p50_ms"), getattr(c, f"ttft_{group[1]}_p50_ci")

    _grouped_bars(ax1, configs, models, tps, "decode tok/s median (higher is better)", "tok/s")
    labels = {f"{cfg}\n{CACHE_STATE_LABELS[st]}": (cfg, st) for cfg, st in groups}
    _grouped_bars(ax2, list(labels), models, lambda label, m: ttft(labels[label], m),
                  "TTFT p50 by cache state (lower is better)", "ms")
    if len(states) > 1:
        ax2.set_yscale("log")  # cold and cached prefills differ tenfold
    _legend_on_top(fig, ax1)
    return Plot(name="throughput_ttft", title="Throughput and TTFT (per cache state) per model x config",
                caption="Bars: pooled medians; whiskers: bootstrap 95% intervals (runs and requests resampled). "
                        "TTFT is shown per cache state of the prefill (cold, cached), on a log scale when both "
                        "are shown.", png=_png(fig))


def run_spread(data: ReportData) -> Plot | None:
    if not any(c.run_means_decode_tps for c in data.cells):
        return None
    models = _models(data)
    labels = [f"{c.model}\n{c.config.label}" for c in data.cells]
    fig = Figure(figsize=(max(6.0, 1.3 * len(labels) + 2), 3.8))
    ax = fig.subplots()
    # one scatter per model and one set of median lines: a few artists, not a few per cell
    points: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in models}
    medians = [(i, c.decode_tps_p50) for i, c in enumerate(data.cells) if c.decode_tps_p50 is not None]
    for i, c in enumerate(data.cells):
        values = [v for v in c.run_means_decode_tps if v is not None]
        xs, ys = points[c.model]
        xs.extend(i + (j - (len(values) - 1) / 2) * 0.08 for j in range(len(values)))
        ys.extend(values)
    for m, (xs, ys) in points.items():
        if xs:
            ax.scatter(xs, ys, color=_color(models.index(m)), s=28, zorder=3, label=m)
    if medians:
        ax.hlines([v for _, v in medians], [i - 0.3 for i, _ in medians], [i + 0.3 for i, _ in medians],
                  color="#222", linewidth=1, zorder=2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("mean decode tok/s per run", fontsize=9)
    ax.set_title("Run-to-run spread (points: runs; line: pooled median)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _legend_on_top(fig, ax)
    return Plot(name="run_spread", title="Run-to-run spread of decode tok/s",
                caption="One point per valid run (its mean decode tok/s); the line is the config's pooled median.",
                png=_png(fig))


def multi_agent_efficiency(data: ReportData) -> Plot | None:
    ma = data.multi_agent
    if ma is None or not ma.results:
        return None
    scenarios = list(dict.fromkeys(r.scenario for r in ma.results))
    models = list(dict.fromkeys(r.model for r in ma.results))
    by = {(r.scenario, r.model): r for r in ma.results}
    fig = Figure(figsize=(max(6.0, 2.4 * len(scenarios) + 2), 3.8))
    ax = fig.subplots()

    def eff(scenario, m):
        r = by.get((scenario, m))
        return (r.efficiency_p50, r.efficiency_p50_ci) if r else None

    _grouped_bars(ax, scenarios, models, eff, "efficiency % median (100 % = two agents at the cost of one)",
                  "efficiency %")
    ax.axhline(100, color="#888", linestyle="--", linewidth=1)
    ax.axhline(50, color="#bbb", linestyle=":", linewidth=1)
    _legend_on_top(fig, ax)
    return Plot(name="multi_agent_efficiency", title="Multi-agent efficiency per scenario",
                caption="Bars: median over the valid runs; whiskers: bootstrap 95% intervals over the per-run "
                        "values; dashed: 100 % (perfect overlap), dotted: 50 % (no gain over running one after "
                        "the other).",
                png=_png(fig))


def _frontier_axes(fig: Figure, ax, front: list[tuple[float, float]], xlabel: str, ylabel: str, title: str) -> None:
    """A frontier plot's dashed line through its frontier points (x, y), its labels, grid and legend."""
    if len(front) > 1:
        xs, ys = zip(*sorted(front))
        ax.plot(xs, ys, color="#444", linestyle="--", linewidth=1, label="frontier")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _legend_on_top(fig, ax)


def efficiency_frontier(data: ReportData) -> Plot | None:
    # (point, decode tok/s, tokens per joule) of the points that have both
    points = [(p, p.decode_tps_p50, p.tokens_per_j_p50) for p in data.energy.points
              if p.decode_tps_p50 is not None and p.tokens_per_j_p50 is not None]
    if not data.energy.measured or not points:
        return None
    models = list(dict.fromkeys(p.model for p, _, _ in points))
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    xs, ys = [tps for _, tps, _ in points], [tpj for _, _, tpj in points]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for p, tps, tpj in points:
        i = models.index(p.model)
        below, above = _err(tpj, p.tokens_per_j_ci)
        ax.errorbar([tps], [tpj], yerr=[[below], [above]], fmt="o", color=_color(i),
                    markersize=7 if p.on_frontier else 5, capsize=3,
                    label=p.model if p.model not in ax.get_legend_handles_labels()[1] else None)
        # labels of points that (nearly) coincide are stacked, not drawn over each other
        near = sum(abs(x - tps) < 0.05 * span_x and abs(y - tpj) < 0.05 * span_y for x, y in placed)
        placed.append((tps, tpj))
        ax.annotate(p.config, (tps, tpj), fontsize=7, xytext=(5, 4 - 10 * near), textcoords="offset points")
    ax.margins(x=0.15, y=0.12)
    _frontier_axes(fig, ax, [(tps, tpj) for p, tps, tpj in points if p.on_frontier],
                   "decode tok/s median", "tokens per joule median", "Efficiency frontier (up and right is better)")
    return Plot(name="efficiency_frontier", title="Efficiency frontier: tokens per joule against decode tok/s",
                caption="One point per model x config; whiskers: bootstrap 95% intervals of tokens per joule over "
                        "runs; dashed: the configs no other beats on both axes.", png=_png(fig))


def qa_breakdown(data: ReportData) -> Plot | None:
    """Each model's (and ensemble's) QA overall as its weighted components, stacked."""
    su = data.suites
    rows = [r for r in (su.qa if su else []) if r["overall"] is not None]
    if not rows:
        return None
    parts = [("value accuracy x 0.75", "value_accuracy", 0.75), ("ref overlap x 0.15", "ref_overlap", 0.15),
             ("NA recall x 0.10", "na_recall", 0.10)]
    fig = Figure(figsize=(max(5.5, 1.3 * len(rows) + 2.5), 3.8))
    ax = fig.subplots()
    names = [r["model"] for r in rows]
    bottom = [0.0] * len(rows)
    for i, (label, key, w) in enumerate(parts):
        heights = [w * (r[key] or 0.0) for r in rows]
        ax.bar(names, heights, bottom=bottom, color=_color(i), label=label)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for x, r in enumerate(rows):
        ax.annotate(f"{r['overall']:.3f}", (x, r["overall"]), ha="center", xytext=(0, 3), textcoords="offset points",
                    fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("WattBot score", fontsize=9)
    ax.set_title("QA score breakdown per model (1 = every answer right)", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    _legend_on_top(fig, ax)
    return Plot(name="qa_breakdown", title="QA score breakdown per model",
                caption="Stacked: each component times its weight; the label is the overall score. Ensembles are "
                        "the majority vote of the models named.", png=_png(fig))


def quality_vs_speed(data: ReportData) -> Plot | None:
    su = data.suites
    points = su.points if su else []
    if su is None or not points:
        return None
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    for i, p in enumerate(points):
        ax.plot([p.decode_tps_p50], [p.overall], "o", color=_color(i), markersize=8 if p.on_frontier else 5,
                label=p.model)
        ax.annotate(p.model, (p.decode_tps_p50, p.overall), fontsize=7, xytext=(5, 4), textcoords="offset points")
    ax.set_ylim(-0.02, 1.02)
    ax.margins(x=0.2)
    _frontier_axes(fig, ax, [(p.decode_tps_p50, p.overall) for p in points if p.on_frontier],
                   "decode tok/s median (fastest config)", "QA overall score",
                   "Good enough and fastest (up and right is better)")
    return Plot(name="quality_vs_speed", title="QA quality against decode speed",
                caption=f"One point per model; larger points are on the frontier ({su.frontier_rule}).",
                png=_png(fig))


def load_curves(data: ReportData) -> Plot | None:
    """Load mode's throughput-latency curves: one line per model x config through its steps."""
    steps = [s for s in (data.load.steps if data.load else []) if s.valid]
    if not steps:
        return None
    lines: dict[str, list] = {}
    for s in steps:
        lines.setdefault(f"{s.model} {s.config}", []).append(s)
    fig = Figure(figsize=(9.0, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, group) in enumerate(lines.items()):
        for ax, xy in ((ax1, lambda s: (s.output_tps, s.ttft_ms_p95)), (ax2, lambda s: (s.request_rps, s.e2e_ms_p99))):
            pts = [(*xy(s), s.step_label) for s in group if None not in xy(s)]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=_color(i), label=name)
            for px, py, label in pts:
                ax.annotate(label, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for ax, xl, yl, title in ((ax1, "output tok/s", "TTFT p95 ms", "Output tok/s against TTFT p95"),
                              (ax2, "requests/s", "e2e p99 ms", "Requests/s against e2e p99")):
        ax.set_xlabel(xl, fontsize=9)
        ax.set_ylabel(yl, fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    _legend_on_top(fig, ax1)
    return Plot(name="load_curves", title="Load: throughput against latency, per step",
                caption="One line per model x config through its load steps (labels: the step); right and down is "
                        "better. Each point is one step's figures over its measured requests.", png=_png(fig))


PLOTS = [throughput_ttft, run_spread, multi_agent_efficiency, efficiency_frontier, load_curves, qa_breakdown,
         quality_vs_speed]


def render_plots(data: ReportData) -> list[Plot]:
    """Every figure there is data for, in report order."""
    return [p for p in (make(data) for make in PLOTS) if p is not None]
