"""The report's reasoning section and summary records, for every shape: no model reasons (no section, no
records), some model x configs do, all do; planted Parquet (tests/test_report_publish.plant)."""

from __future__ import annotations

import json

import pytest

from tests.test_report_publish import FAST, SLOW, md_table_after, plant
from trbench.report import build_report, publish, render_appendix_html, render_appendix_markdown, render_markdown
from trbench.report.reasoning import CONVENTION

HEADING = "### Reasoning before the answer"
REASONING_METRICS = {"reasoning_requests", "reasoning_tokens", "answer_tokens", "decode_tps_reasoning",
                     "decode_tps_answer", "ttfat_cold_ms"}


def _summary_metrics(root) -> set[str]:
    publish(root)
    return {r["metric"] for r in json.loads((root / "report" / "summary.json").read_text())["records"]}


def test_no_reasoning_shows_no_section_and_writes_no_reasoning_records(tmp_path):
    root = plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}, runs=2, requests=3)
    data = build_report(root)
    assert all(c.reasoning_requests == 0 for c in data.cells)
    assert HEADING not in render_appendix_markdown(data) and 'id="reasoning"' not in render_appendix_html(data)
    assert not _summary_metrics(root) & REASONING_METRICS


def test_files_that_store_zero_reasoning_tokens_show_no_section(tmp_path):
    root = plant(tmp_path / "planted", {"fast-model": FAST}, runs=2, requests=3, reasoning={"fast-model": 0})
    data = build_report(root)
    assert HEADING not in render_appendix_markdown(data)
    assert data.cells[0].answer_tokens_p50 == 64  # the split is stored, there is just nothing reasoned


def test_some_model_configs_reasoning_are_counted_and_tabled(tmp_path):
    root = plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}, runs=2, requests=3,
                 reasoning={"fast-model": 6, "slow-model": 0})
    data = build_report(root)
    assert HEADING not in render_markdown(data)  # a detail table: the appendix's
    md = render_appendix_markdown(data)
    assert HEADING in md
    assert "2 of 4 model x configs streamed reasoning before the answer, in 12 of their 12 pooled requests." in md
    assert CONVENTION in md
    table = md_table_after(md, HEADING)
    fast = [r for r in table if r["model"] == "fast-model"]
    slow = [r for r in table if r["model"] == "slow-model"]
    assert [r["requests with reasoning"] for r in fast] == ["6 / 6"] * 2
    assert [r["requests with reasoning"] for r in slow] == ["0 / 6"] * 2
    # TTFAT is TTFT plus six reasoning steps of 5 ms; the slow model's answer starts with its first token
    for row in fast:
        assert float(row["TTFAT p50 ms (cold)"]) == pytest.approx(float(row["TTFT p50 ms (cold)"]) + 30.0, abs=1.0)
        assert (row["reasoning tokens p50"], row["answer tokens p50"]) == ("6", "58")
    for row in slow:
        assert row["TTFAT p50 ms (cold)"] == row["TTFT p50 ms (cold)"]
        assert row["reasoning decode tok/s p50"] == "n/a"
    assert 'id="reasoning"' in render_appendix_html(data)
    assert REASONING_METRICS <= _summary_metrics(root)


def test_every_model_config_reasoning_says_all(tmp_path):
    root = plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}, runs=2, requests=3,
                 reasoning={"fast-model": 3, "slow-model": 1})
    md = render_appendix_markdown(build_report(root))
    assert "All 4 model x configs streamed reasoning before the answer, in 24 of their 24 pooled requests." in md


def test_one_model_config_reasoning_says_the_one(tmp_path):
    from tests import test_report_publish as pub

    root = tmp_path / "planted"
    configs = pub.CONFIGS
    try:
        pub.CONFIGS = configs[:1]
        plant(root, {"fast-model": FAST}, runs=2, requests=2, reasoning={"fast-model": 2})
    finally:
        pub.CONFIGS = configs
    md = render_appendix_markdown(build_report(root))
    assert "The one model x config streamed reasoning before the answer, in 4 of its 4 pooled requests." in md
