"""How every figure of the report is laid out (trbench/report/plots.py draws them): its size and
resolution, one colour per model, legends above the axes, axes (a log axis only where the values span
tenfold or more, labelled at every decade in plain numbers), dot-plot rows with horizontal labels, and
point labels placed only where they meet no other."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot; the figures never touch pyplot

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import Formatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

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
LABEL_CHARS = 26  # a row label longer than this wraps
# PNG metadata without the matplotlib version: the same data gives the same bytes across upgrades
_PNG_META = {"Software": None}

Colors = dict[str, str]


# --- colours and the figure ------------------------------------------------------------------------


def model_colors(models: Sequence[str]) -> Colors:
    """One colour per model, fixed for the whole report; past the palette, evenly spaced hues."""
    if len(models) <= len(PALETTE):
        return {m: PALETTE[i] for i, m in enumerate(models)}
    cmap = colormaps["turbo"]
    return {m: to_hex(cmap((i + 0.5) / len(models))) for i, m in enumerate(models)}


def color_of(colors: Colors, model: str) -> str:
    """A model's colour; a name the map lacks (an ensemble: a majority vote of models) is grey."""
    return colors.get(model, ENSEMBLE_COLOR)


def new_figure(height_in: float) -> Figure:
    """A figure WIDTH_IN wide whose PNG is a whole number of CSS pixels high (an even number of pixels)."""
    height_in = round(height_in * DPI / PIXEL_RATIO) * PIXEL_RATIO / DPI
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text with before saving
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    return buf.getvalue()


def legend_above(fig: Figure, handles: list, labels: list[str]) -> None:
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


def model_handle(colors: Colors, model: str) -> Line2D:
    return Line2D([], [], marker="o", linestyle="none", color=color_of(colors, model), markersize=6,
                  gid=f"model:{model}")


def key_handle(marker: str = "o", filled: bool = True, linestyle: Any = "none", color: str = NEUTRAL) -> Line2D:
    return Line2D([], [], marker=marker, linestyle=linestyle, color=color, markersize=6 if marker else 0,
                  markerfacecolor=color if filled else "white")


def wrap(label: str) -> str:
    """A row label in lines of at most LABEL_CHARS (a name without spaces breaks at its punctuation)."""
    if len(label) <= LABEL_CHARS:
        return label
    spaced = label.replace(",", ", ").replace("/", "/ ").replace("_", "_ ")
    lines = textwrap.wrap(spaced, LABEL_CHARS, break_long_words=True)
    return "\n".join(ln.replace(", ", ",").replace("/ ", "/").replace("_ ", "_") for ln in lines)


def positive(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and v > 0 and math.isfinite(v)]


def plain(v: float) -> str:
    """One number as a reader writes it: 60, 2,000, 12.5, 0.5."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,g}"


# a log axis's labels span decades: each written for itself (0.01, 0.1, 1, 10), not to a shared decimal count
_LOG_LABELS = FuncFormatter(lambda v, _pos: plain(v))


class PlainFormatter(Formatter):
    """Tick labels in plain numbers (1,000, not 10^3) with the fewest decimals that tell every tick of
    the axis apart: 0.88, 0.96, 1.04 (never 1 and 1), 25, 50, 75."""

    def format_ticks(self, values) -> list[str]:
        decimals = next((d for d in range(7) if all(abs(round(float(v), d) - float(v)) <= 1e-9 * max(abs(float(v)), 1.0)
                                                    for v in values)), 6)
        return [f"{float(v):,.{decimals}f}" for v in values]

    def __call__(self, x: float, pos: int | None = None) -> str:
        return plain(x)  # one value alone (no ticks to tell apart)


def log_axis(axis, values: list[float]) -> None:
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
    axis.set_major_formatter(PlainFormatter())
    axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if hi - lo <= 2 else tuple(range(2, 10))))
    axis.set_minor_formatter(PlainFormatter() if hi - lo <= 2 else NullFormatter())


def value_axis(axis, values: list[float], *, zero: bool) -> bool:
    """A log axis where the values span LOG_SPAN or more, else linear (from 0 when zero); True for log."""
    pos = positive(list(values))
    if pos and max(pos) / min(pos) >= LOG_SPAN:
        log_axis(axis, pos)
        return True
    axis.set_major_locator(MaxNLocator(nbins=6))
    axis.set_major_formatter(PlainFormatter())
    if zero:
        top = max(values, default=1.0) * 1.08 or 1.0
        (axis.axes.set_xlim if axis.axis_name == "x" else axis.axes.set_ylim)(0, top)
    return False


def style_axes(ax: Axes, title: str, xlabel: str = "", ylabel: str = "", grid: str = "both") -> None:
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


def row_height(rows: list[Row], per_row: int) -> float:
    lines = max((wrap(r.label).count("\n") + 1 for r in rows), default=1)
    return max(0.42, 0.17 * per_row + 0.1, 0.17 * lines + 0.12)


def dot_height(n_rows: int, row_in: float) -> float:
    return 1.75 + n_rows * row_in


def dots(ax: Axes, rows: list[Row], keys: Sequence[Hashable], style: Callable[[Any], tuple[str, str, str, bool]]
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
    row_axis(ax, [r.label for r in rows])
    return drawn


def row_axis(ax: Axes, labels: list[str]) -> None:
    """The y axis of a dot plot: one labelled band per row, the first on top, parted by thin lines."""
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([wrap(label) for label in labels], fontsize=SMALL)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    for boundary in range(1, len(labels)):
        ax.axhline(boundary - 0.5, color="#dddddd", linewidth=0.8, zorder=1)
    ax.tick_params(axis="y", length=0)


def present(values: list[float | None]) -> bool:
    """Whether there is anything to draw: some value that is not missing and not zero."""
    return any(v is not None and v != 0 for v in values)


def label_points(fig: Figure, ax: Axes, points: list[tuple[float, float, str]]) -> None:
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
