"""The report's figures, read as matplotlib objects: no text meets another (tick labels, titles,
legends, point labels: their bounding boxes as drawn), one colour per model in every figure, medians
as points (no bars), a labelled tick at every decade of a log axis, no figure (and a sentence saying
why) where the data is all zero, the spec's SLO limits on the load curves, and figures as wide as the
report's text column at twice its pixel density.

Planted data: single-agent and multi-agent runs from tests/test_report_publish.plant (the quickstart's
two models and two configs, TTFT cold and cached), load steps from the real load runner against the
fake client of tests/test_load_runner (tests/test_load_report), quality figures set on the report."""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest
from matplotlib.collections import LineCollection
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report_publish import MANIFEST, plant
from trbench.config.spec import parse_spec
from trbench.report import build_report, render_html, render_markdown
from trbench.report.answer_quality import QualityPoint, SuitesSection, frontier
from trbench.report.models import Measured, ReportData
from trbench.report.plot_layout import COLUMN_CSS_PX, ENSEMBLE_COLOR, PIXEL_RATIO, PlainFormatter, model_colors, plain
from trbench.report.plots import PLOTS, Drawing, drawings, render_plots, report_models

# the page head and style both HTML documents (the report and its appendix) share
TEMPLATE = Path(__file__).resolve().parent.parent / "trbench" / "report" / "templates" / "_html.j2"
SMOL, GEMMA = "smollm2:135m", "gemma3:270m"
LONG = "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"
SLO = {"ttft_ms": 2000.0, "tpot_ms": 60.0, "e2e_ms": 5000.0}


def _manifest(models: list[str]) -> dict:
    return {**MANIFEST, "models": {m: {} for m in models},
            "spec": {**MANIFEST["spec"], "models": models, "baseline_model": models[-1]}}


def _qa(model: str, overall: float, va: float = 0.0, ro: float = 0.0, na: float = 0.0, kind: str = "model") -> dict:
    return {"model": model, "kind": kind, "overall": overall, "value_accuracy": va, "ref_overlap": ro,
            "na_recall": na, "questions": 2, "unanswerable": 1, "failed": 0, "unit_match": va, "latency_ms_p50": 900.0,
            "latency_ms_p95": 1500.0, "output_tokens_mean": 30.0}


def planted(root: Path, models: dict[str, dict], *, cached: dict[str, float] | None = None, qa: list[dict] | None = None,
            slo: dict[str, float] | None = None, load_scale: float = 1.0, energy: bool = False) -> ReportData:
    """A report's data: single- and multi-agent runs of the models, TTFT cached (ms per model) beside
    cold, QA rows (their order as given) and load steps of smollm2:135m under the SLOs."""
    names = list(models)
    plant(root / "tr", models, tr_id="tr", manifest=_manifest(names), energy=energy,
          multi={m: 60.0 + 10 * i for i, m in enumerate(names)})
    data = build_report(root / "tr")
    for c in data.cells:
        if cached and c.model in cached:
            v = cached[c.model]
            c.ttft_cached_n, c.ttft_cached_p50_ms, c.ttft_cached_p50_ci = 12, v, (v * 0.95, v * 1.05)
    if cached:
        data.cache.states = ["cold", "cached"]
    if qa is not None:
        _set_qa(data, qa)
    spec = parse_spec({**LOAD_SPEC, "tr_id": "load", "load": {**LOAD_SPEC["load"], "concurrency": [1, 2, 4],
                                                               "slo": slo or {}}})
    _write_tr(root / "load", spec, scale=load_scale)
    data.load = build_report(root / "load", spec).load
    data.measured.append(Measured(workload="load", title="Load", summary="3 steps"))
    return data


def _set_qa(data: ReportData, qa: list[dict]) -> None:
    speed = {c.model: c.decode_tps_p50 or 0.0 for c in data.cells}
    points = [QualityPoint(model=r["model"], overall=r["overall"], decode_tps_p50=speed[r["model"]])
              for r in qa if r["kind"] == "model"]
    data.suites = SuitesSection(scenarios=[], qa=qa, points=frontier(points))
    if "suites" not in data.workloads:
        data.measured.append(Measured(workload="suites", title="Quality suites", summary="qa"))


QUICK = {SMOL: {"tps": 124.8, "ttft": 95.0, "e2e": 600.0, "sd": 0.05, "tpj": 2.0, "vram": 900.0},
         GEMMA: {"tps": 62.0, "ttft": 237.0, "e2e": 1200.0, "sd": 0.05, "tpj": 1.0, "vram": 1400.0}}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> ReportData:
    """The quickstart's shape: two models, two configs, TTFT cold and cached (237 ms against 22-41 ms),
    QA scores listed in the other model order, load steps under three SLOs, energy per run."""
    return planted(tmp_path_factory.mktemp("quick"), QUICK, cached={SMOL: 22.0, GEMMA: 40.5},
                   qa=[_qa(GEMMA, 0.425, 0.5, 1 / 6), _qa(SMOL, 0.1, na=1.0),
                       _qa(f"ensemble({SMOL},{GEMMA})", 0.1, na=1.0, kind="ensemble")],
                   slo=SLO, energy=True)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory) -> ReportData:
    """Six models, long names among them, every figure crowded."""
    models = {f"model-{i}": {**QUICK[SMOL], "tps": 20.0 + 17 * i, "ttft": 30.0 * (i + 1)} for i in range(4)}
    models[LONG] = {**QUICK[GEMMA], "tps": 35.0}
    models["hf.co/unsloth/gemma-3-27b-it-GGUF:Q8_0"] = {**QUICK[GEMMA], "tps": 9.0, "ttft": 2400.0}
    return planted(tmp_path_factory.mktemp("crowded"), models, cached={m: 8.0 + i for i, m in enumerate(models)},
                   qa=[_qa(m, 0.05 * i, 0.06 * i, 0.5, 1.0) for i, m in enumerate(models)], slo=SLO, energy=True)


@pytest.fixture(scope="module")
def quickstart_figures(quickstart) -> dict[str, Drawing]:
    return _figures(quickstart)


@pytest.fixture(scope="module")
def crowded_figures(crowded) -> dict[str, Drawing]:
    return _figures(crowded)


def _figures(data: ReportData) -> dict[str, Drawing]:
    return {d.name: d for d in drawings(data)}


def _draw(data: ReportData, name: str) -> Drawing | None:
    """One figure of the data, coloured as the report colours it."""
    make = next(f for f in PLOTS if f.__name__ == name)
    return make(data, model_colors(report_models(data)))


def _copy(data: ReportData) -> ReportData:
    return data.model_copy(deep=True)


# --- no text meets another ---------------------------------------------------------------------------


def drawn_texts(fig: Figure) -> list[tuple[str, object]]:
    """Every text the figure draws (tick labels in view, axis labels, titles, legend entries, point labels)
    with its bounding box on the canvas."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(lo), abs(hi))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if lo - slack <= tick.get_loc() <= hi + slack and tick.label1.get_visible():
                    texts.append(tick.label1)
            texts.append(axis.label)
        texts += [ax.title, *ax.texts]
    for legend in fig.legends:
        texts += legend.get_texts()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


@pytest.mark.parametrize("shape", ["quickstart", "crowded"])
def test_no_text_of_any_figure_meets_another_or_leaves_the_figure(shape, request) -> None:
    figures = request.getfixturevalue(f"{shape}_figures")
    assert {"throughput_ttft", "run_spread", "multi_agent_efficiency", "efficiency_frontier", "load_curves",
            "qa_breakdown", "quality_vs_speed"} <= {n for n, d in figures.items() if d.figure is not None}
    for name, d in figures.items():
        texts = drawn_texts(d.figure)
        assert len(texts) > 8, name
        page = d.figure.bbox
        for text, box in texts:
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
                (name, text)
        for i, (a, box_a) in enumerate(texts):
            for b, box_b in texts[i + 1:]:
                assert _overlap(box_a, box_b) < 1.0, (name, a, b)
        for ax in d.figure.axes:  # no two ticks of an axis read the same
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t.get_text() for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True) if t.get_text()]
                assert len(labels) == len(set(labels)), (name, labels)


def test_tick_labels_have_the_decimals_that_tell_them_apart() -> None:
    fmt = PlainFormatter()
    for locs, labels in (([0.88, 0.96, 1.04], ["0.88", "0.96", "1.04"]), ([0, 25, 50, 75], ["0", "25", "50", "75"]),
                         ([1000, 1200, 1400], ["1,000", "1,200", "1,400"]), ([0, 2.5, 5.0], ["0.0", "2.5", "5.0"])):
        assert fmt.format_ticks(locs) == labels
    assert [plain(v) for v in (2000.0, 60.0, 12.5, 0.5)] == ["2,000", "60", "12.5", "0.5"]


def test_the_old_ttft_panel_labels_would_have_been_caught() -> None:
    """The check sees an overlap where there is one: the old TTFT panel's four config x state labels,
    rotated 15 degrees, on half a 9-inch figure."""
    fig = Figure(figsize=(4.5, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_xticks(range(4))
    ax.set_xticklabels([f"{cfg}\n{st}" for cfg in ("gpu0_ctx512_temp0.8", "gpu80_ctx1024_temp0.8")
                        for st in ("cold", "cached")], rotation=15, ha="right", fontsize=8)
    texts = [box for text, box in drawn_texts(fig) if "gpu" in text]
    assert len(texts) == 4 and any(_overlap(a, b) > 1.0 for a, b in zip(texts, texts[1:]))


# --- points, not bars; log axes labelled at every decade -----------------------------------------------


def test_medians_are_points_with_interval_whiskers_never_bars(quickstart_figures) -> None:
    for name, d in quickstart_figures.items():
        if d.figure is None:
            continue
        assert not [p for ax in d.figure.axes for p in ax.patches if isinstance(p, Rectangle)], name
    ttft = quickstart_figures["throughput_ttft"].figure
    whiskers = [c for ax in ttft.axes for c in ax.collections if isinstance(c, LineCollection)]
    assert whiskers and any(len(seg) for c in whiskers for seg in c.get_segments())


def _decades_labelled(axis) -> tuple[list[float], set[float]]:
    lo, hi = sorted(axis.get_view_interval())
    decades = [10.0 ** k for k in range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)]
    labelled = {round(t.get_loc(), 6) for t in axis.get_major_ticks() + axis.get_minor_ticks()
                if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi * (1 + 1e-9)}
    return decades, labelled


def test_a_ttft_axis_spanning_tenfold_is_logarithmic_with_every_decade_labelled(quickstart_figures) -> None:
    d = quickstart_figures["throughput_ttft"]
    fig = d.figure
    fig.canvas.draw()
    ttft = fig.axes[-1]
    assert ttft.get_xscale() == "log" and "log" in ttft.get_xlabel() and "logarithmic" in d.caption
    decades, labelled = _decades_labelled(ttft.xaxis)
    assert len(decades) >= 2 and set(decades) <= labelled
    # the axis spans two decades: 20, 50, 200 and 500 are labelled too, in plain numbers
    assert {20.0, 50.0, 200.0, 500.0} <= labelled
    texts = {t.get_text() for t in ttft.get_xticklabels(minor=False) + ttft.get_xticklabels(minor=True)}
    assert {"10", "100", "1,000"} <= texts and not any("^" in t or "$" in t for t in texts)
    assert fig.axes[0].get_xscale() == "linear" and fig.axes[0].get_xlim()[0] == 0  # decode tok/s from 0


def test_ttft_within_tenfold_stays_on_a_linear_axis_from_zero(quickstart) -> None:
    data = _copy(quickstart)
    for c in data.cells:
        c.ttft_cached_p50_ms, c.ttft_cached_p50_ci = 60.0, (58.0, 63.0)
    d = _draw(data, "throughput_ttft")
    assert d is not None and d.figure is not None
    ttft = d.figure.axes[-1]
    assert ttft.get_xscale() == "linear" and ttft.get_xlim()[0] == 0 and "logarithmic" not in d.caption


# --- one colour per model ----------------------------------------------------------------------------


def _colours_by_model(fig: Figure) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for artist in fig.findobj(lambda a: str(a.get_gid() or "").startswith("model:")):
        model = str(artist.get_gid())[len("model:"):]
        if isinstance(artist, Line2D):
            out[model].add(to_hex(artist.get_color()))
            out[model].add(to_hex(artist.get_markeredgecolor()))
        elif isinstance(artist, LineCollection):
            out[model] |= {to_hex(c) for c in artist.get_colors()}
    for legend in fig.legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if text.get_text() in out:
                out[text.get_text()].add(to_hex(handle.get_color()))  # type: ignore[union-attr]
    return out


@pytest.mark.parametrize("shape", ["quickstart", "crowded"])
def test_each_model_has_one_colour_in_every_figure(shape, request) -> None:
    data, figures = request.getfixturevalue(shape), request.getfixturevalue(f"{shape}_figures")
    expected = model_colors(report_models(data))
    assert len(set(expected.values())) == len(expected)  # no two models share one
    seen: dict[str, set[str]] = defaultdict(set)
    figures_per_model: dict[str, int] = defaultdict(int)
    for name, d in figures.items():
        if d.figure is None:
            continue
        for model, colours in _colours_by_model(d.figure).items():
            assert colours == {expected.get(model, ENSEMBLE_COLOR).lower()}, (name, model, colours)
            seen[model] |= colours
            figures_per_model[model] += 1
    # the QA rows list the models in the other order; the colours do not follow them
    assert figures_per_model[SMOL if shape == "quickstart" else "model-0"] >= 5
    assert all(len(c) == 1 for c in seen.values())


def test_the_colour_map_follows_the_report_order_and_outgrows_the_palette() -> None:
    assert list(model_colors(["b", "a"])) == ["b", "a"]
    many = model_colors([f"m{i}" for i in range(25)])
    assert len(set(many.values())) == 25


# --- nothing to draw: no figure, and the report says why ----------------------------------------------


def test_all_zero_quality_draws_no_figure_and_the_report_says_why(quickstart) -> None:
    data = _copy(quickstart)
    _set_qa(data, [_qa(GEMMA, 0.0), _qa(SMOL, 0.0), _qa(f"ensemble({SMOL},{GEMMA})", 0.0, kind="ensemble")])
    figures = _figures(data)
    for name in ("qa_breakdown", "quality_vs_speed"):
        assert figures[name].figure is None and figures[name].reason, name
    plots = render_plots(data)
    md, html = render_markdown(data, plots), render_html(data, plots)
    assert "qa_breakdown.png" not in md and "quality_vs_speed.png" not in md
    assert "No QA breakdown figure: every QA score and each of its components is 0." in md
    assert "No quality-against-speed figure: every model's QA overall score is 0" in md
    assert 'id="plot-qa_breakdown">No QA breakdown figure' in html and 'id="plot-qa_breakdown"><img' not in html
    # the figures with data are still drawn
    assert figures["throughput_ttft"].figure is not None and "throughput_ttft.png" in md


def test_a_zero_beside_a_nonzero_score_is_drawn(quickstart) -> None:
    data = _copy(quickstart)
    _set_qa(data, [_qa(GEMMA, 0.0), _qa(SMOL, 0.0, na=1.0)])
    breakdown, speed = _draw(data, "qa_breakdown"), _draw(data, "quality_vs_speed")
    assert breakdown is not None and breakdown.figure is not None  # NA recall 1.0: something to show
    assert speed is not None and speed.figure is None  # both overall scores 0


def test_no_decode_rate_ttft_or_efficiency_draws_no_figure(quickstart) -> None:
    data = _copy(quickstart)
    for c in data.cells:
        c.decode_tps_p50 = c.ttft_cold_p50_ms = c.ttft_cached_p50_ms = None
        c.run_means_decode_tps = [None, 0.0]
    assert data.multi_agent is not None
    for r in data.multi_agent.results:
        r.efficiency_p50 = 0.0
    figures = _figures(data)
    for name in ("throughput_ttft", "run_spread", "multi_agent_efficiency"):
        assert figures[name].figure is None and figures[name].reason.startswith("No "), name
    md = render_markdown(data, render_plots(data))
    for name in ("throughput_ttft", "run_spread", "multi_agent_efficiency"):
        assert figures[name].reason in md


def test_a_section_without_data_has_neither_figure_nor_reason(tmp_path) -> None:
    root = tmp_path / "single"
    plant(root, {SMOL: QUICK[SMOL]}, tr_id="single", manifest=_manifest([SMOL]))
    names = {d.name for d in drawings(build_report(root))}
    assert names == {"throughput_ttft", "run_spread"}


# --- SLO limits on the load curves ----------------------------------------------------------------------


def _slo_lines(fig: Figure) -> dict[str, float]:
    return {str(a.get_gid())[len("slo:"):]: float(a.get_ydata()[0])  # type: ignore[index]
            for a in fig.findobj(Line2D) if str(a.get_gid() or "").startswith("slo:")}


def test_load_curves_draw_each_slo_limit_inside_the_axes(quickstart_figures) -> None:
    d = quickstart_figures["load_curves"]
    assert _slo_lines(d.figure) == SLO
    for ax in d.figure.axes:  # each limit is within its panel's view
        for line in ax.get_lines():
            if str(line.get_gid() or "").startswith("slo:"):
                lo, hi = ax.get_ylim()
                assert lo <= line.get_ydata()[0] <= hi  # type: ignore[index]
    assert "SLO limit" in [t.get_text() for t in d.figure.legends[0].get_texts()]
    assert "SLO limit" in d.caption and "ttft_ms" in d.alt


def test_load_curves_without_slos_draw_no_limit(quickstart) -> None:
    data = _copy(quickstart)
    assert data.load is not None
    data.load.slo = {}
    d = _draw(data, "load_curves")
    assert d is not None and d.figure is not None and _slo_lines(d.figure) == {} and "SLO" not in d.caption


def test_an_slo_with_no_figure_to_hold_against_is_named(quickstart) -> None:
    data = _copy(quickstart)
    assert data.load is not None
    data.load.slo = {"e2e_ms": 5000.0}
    for s in data.load.steps:
        s.e2e_ms_p99 = None
    d = _draw(data, "load_curves")
    assert d is not None and d.figure is not None and _slo_lines(d.figure) == {} and "Not drawn: e2e_ms" in d.caption


# --- size, sharpness and alt text --------------------------------------------------------------------


def test_figures_are_the_text_column_wide_at_twice_its_pixel_density(quickstart) -> None:
    css = TEMPLATE.read_text()
    assert re.search(rf"p, li \{{ max-width: {COLUMN_CSS_PX}px; \}}", css)  # the column the figures fill
    plots = [p for p in render_plots(quickstart) if p.png]
    assert len(plots) == 7
    html = render_html(quickstart, plots)
    for p in plots:
        with Image.open(io.BytesIO(p.png)) as im:  # type: ignore[arg-type]
            assert im.size[0] == COLUMN_CSS_PX * PIXEL_RATIO
            assert im.size == (p.width_px * PIXEL_RATIO, p.height_px * PIXEL_RATIO)
        assert f'alt="{p.alt}" width="{p.width_px}" height="{p.height_px}"' in html.replace("&#39;", "'")


def test_alt_text_names_what_each_figure_shows(quickstart, quickstart_figures) -> None:
    figures = quickstart_figures
    for name, d in figures.items():
        assert d.alt and d.alt.endswith("."), name
    assert all(m in figures["throughput_ttft"].alt for m in (SMOL, GEMMA, "decode tok/s", "TTFT", "cached"))
    assert "efficiency" in figures["multi_agent_efficiency"].alt
    assert all(m in figures["qa_breakdown"].alt for m in ("overall", "NA recall", "ensemble("))
    md = render_markdown(quickstart, render_plots(quickstart))
    assert f"![{figures['load_curves'].alt}](plots/load_curves.png)" in md
