"""docs/metric-names.md is the table trbench.report.metric_names holds, and the report prints it in its
appendix, with the load section's pointer where TPOT and ITL stand side by side."""

from __future__ import annotations

from pathlib import Path

from tests.test_report_publish import FAST, SLOW, plant
from trbench.measure.metrics import DEFINITIONS
from trbench.report import build_report, render_appendix_html, render_appendix_markdown
from trbench.report import metric_names

DOC = Path(__file__).resolve().parent.parent / "docs" / "metric-names.md"


def test_the_docs_page_is_generated_from_the_table():
    assert DOC.read_text() == metric_names.page(), "run: python -m trbench.report.metric_names > docs/metric-names.md"


def test_every_trbench_figure_names_a_defined_metric_and_every_peer():
    for n in metric_names.NAMES:
        assert not n.key or n.key in DEFINITIONS or n.key in ("output_tps", "request_rps"), n.key
        assert all((n.guidellm, n.vllm, n.aiperf, n.llama_bench))


def test_the_names_that_differ_are_mapped_both_ways():
    by = {n.figure: n for n in metric_names.NAMES}
    assert "called ITL" in by["TPOT"].guidellm and "Inter Token Latency" in by["TPOT"].aiperf
    assert "(latency - ttft) / (output_len - 1)" in by["TPOT"].vllm
    assert "pooled" in by["ITL (chunk gap)"].vllm and "Inter Chunk Latency" in by["ITL (chunk gap)"].aiperf
    assert "called TPOT" in by["(none)"].guidellm  # guidellm's TPOT has no trbench counterpart


def test_the_report_appendix_points_to_the_names_or_prints_them_where_it_shows_load(tmp_path):
    from tests.test_load_report import SPEC, _write_tr
    from trbench.config.spec import parse_spec

    data = build_report(plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}, runs=2, requests=2))
    md = render_appendix_markdown(data)
    appendix = md[md.index("## Metric definitions"):]
    assert metric_names.CONVENTION in appendix and "docs/metric-names.md" in appendix
    assert "| TPOT |" not in appendix  # no load figure here: the table is the page's
    assert 'id="metric-names"' in render_appendix_html(data)

    spec = parse_spec(SPEC)
    _write_tr(tmp_path / spec.tr_id, spec)
    loaded = build_report(tmp_path / spec.tr_id)
    md = render_appendix_markdown(loaded)
    appendix = md[md.index("Metric names across tools"):]
    assert metric_names.CONVENTION in appendix and metric_names.AMBIGUOUS in appendix
    for n in metric_names.NAMES:
        assert f"| {n.figure} |" in appendix
    assert 'id="metric-names"' in render_appendix_html(loaded)


def test_the_load_section_says_whose_tpot_and_itl_it_shows(tmp_path):
    from tests.test_load_report import SPEC, _write_tr
    from trbench.config.spec import parse_spec

    spec = parse_spec(SPEC)
    root = tmp_path / spec.tr_id
    _write_tr(root, spec)
    md = render_appendix_markdown(build_report(root))  # the per-step table is the appendix's
    assert metric_names.LOAD_NOTE in md and "ITL (chunk gap) p50 ms" in md
