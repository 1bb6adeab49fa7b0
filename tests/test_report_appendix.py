"""The report as two documents: the publishable report (<tr_id>.md / .html) and its appendix
(<tr_id>-appendix.md / .html), each detail said once, and the winner marked in the glance tables."""

from __future__ import annotations

import re

import pytest

from tests.test_report_publish import FAST, SLOW, md_table_after, plant
from trbench.report import build_report, publish, render_appendix_html, render_markdown
from trbench.report.tables import WIN_MARK

QUICKSTART_LINES = 220  # the publishable report of a quickstart-shaped TR, at most (the quickstart: 132)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    # the quickstart's shape: two models at two configs, 3 runs, multi-agent, one model ahead on every figure
    root = plant(tmp_path_factory.mktemp("two") / "planted", {"fast-model": FAST, "slow-model": SLOW},
                 multi={"fast-model": 60.0, "slow-model": 62.0})
    return publish(root, plots=False)


def _paragraphs(md: str) -> set[str]:
    """Blank-line separated blocks of prose and tables, headings left out (a heading names, never says)."""
    blocks = (b.strip() for b in md.split("\n\n"))
    return {b for b in blocks if b and not b.startswith("#")}


def test_the_report_is_short_and_its_appendix_is_written_beside_it(files):
    md = files.markdown.read_text()
    assert len(md.splitlines()) <= QUICKSTART_LINES
    assert files.appendix_markdown == files.markdown.with_name("planted-appendix.md")
    assert files.appendix_markdown.is_file() and files.appendix_html is not None and files.appendix_html.is_file()


def test_no_paragraph_is_in_both_documents(files):
    both = _paragraphs(files.markdown.read_text()) & _paragraphs(files.appendix_markdown.read_text())
    assert not both


def test_each_document_links_the_other(files):
    md = files.markdown.read_text()
    assert md.rstrip().splitlines()[-1].endswith("[planted-appendix.md](planted-appendix.md).")
    assert "[planted.md](planted.md)" in files.appendix_markdown.read_text()
    assert 'href="planted-appendix.html"' in files.html.read_text()
    assert 'href="planted.html"' in files.appendix_html.read_text()


def test_the_detail_tables_are_in_the_appendix_only(files):
    md, appendix = files.markdown.read_text(), files.appendix_markdown.read_text()
    for heading in ("### Winner by scenario", "### % of baseline", "### Run-to-run spread", "### Statistics",
                    "## Metric definitions", "## Flagged runs", "### Models"):
        assert f"\n{heading}\n" in appendix and f"\n{heading}\n" not in md, heading
    assert md_table_after(appendix, "## Single-agent tables")


def test_the_baseline_rows_are_left_out_of_the_pct_tables_and_efficiency_shown_once(files):
    appendix = files.appendix_markdown.read_text()
    baseline = files.data.baseline_model
    pct = md_table_after(appendix, "### % of baseline")
    assert pct and all(r["model"] != baseline for r in pct)
    ma = md_table_after(appendix, "### Multi-agent % of baseline")
    assert ma and all(r["model"] != baseline for r in ma)
    assert "speedup (= efficiency) median %" in ma[0] and not any("efficiency % median" in k for k in ma[0])


def _marked(rows: list[dict[str, str]], column: str) -> dict[tuple[str, str], bool]:
    return {(r["model"], r.get("config") or r["scenario"]): WIN_MARK in r[column] for r in rows}


def test_the_winner_mark_sits_exactly_on_the_values_the_interval_rule_picks(files):
    data, md = files.data, files.markdown.read_text()
    won = {(w.scenario, w.config): w.winner for w in data.winners}
    glance = md_table_after(md, "### Results at a glance")
    for (model, config), marked in _marked(glance, "decode tok/s p50 [95% CI]").items():
        assert marked == (won[("single-agent decode tok/s", config)] == model)
    for (model, config), marked in _marked(glance, "e2e p50 ms [95% CI]").items():
        assert marked == (won[("single-agent e2e latency", config)] == model)
    for (model, config), marked in _marked(glance, "TTFT p50 ms (cold)").items():
        assert marked == (won[("single-agent TTFT cold", config)] == model)
    ma = md_table_after(md, "Multi-agent, per model x scenario: the median of the valid runs with its bootstrap 95% "
                            "interval.")
    for (model, scenario), marked in _marked(ma, "efficiency % p50 [95% CI]").items():
        assert marked == (won[(f"multi-agent efficiency {scenario}", "")] == model)
    assert any(WIN_MARK in r["decode tok/s p50 [95% CI]"] for r in glance)  # fast-model wins every config
    assert f"{WIN_MARK}: the winning median" in md  # the legend, once
    assert md.count(f"{WIN_MARK}: ") == 1


def test_a_tie_and_a_lone_model_are_never_marked(tmp_path):
    # equal models: every interval overlaps, so no mark; one model: nothing to win against
    tie = build_report(plant(tmp_path / "tie", {"a-model": FAST, "b-model": {**FAST}}, seed=3))
    assert all(w.winner in ("tie", "n/a") for w in tie.winners if w.scenario.startswith("single-agent decode"))
    glance = md_table_after(render_markdown(tie), "### Results at a glance")
    decode_won = {w.config for w in tie.winners if w.scenario == "single-agent decode tok/s"
                  and w.winner not in ("tie", "n/a")}
    assert not decode_won and not any(WIN_MARK in r["decode tok/s p50 [95% CI]"] for r in glance)
    alone = build_report(plant(tmp_path / "alone", {"fast-model": FAST}))
    md = render_markdown(alone)
    rows = md_table_after(md, "### Results at a glance")
    assert rows and not any(WIN_MARK in v for r in rows for v in r.values())
    assert WIN_MARK not in md  # nor a legend for a mark that cannot appear
    assert "Every figure with its p95, CV and counts: in the appendix." in md


def test_the_html_appendix_renders_every_section_of_the_markdown_one(files):
    html = render_appendix_html(files.data)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for heading in re.findall(r"^## (.+)$", files.appendix_markdown.read_text(), flags=re.M):
        assert f">{heading}</h2>" in html, heading
    assert "<img" not in html  # the plots are the report's



def test_a_lone_baseline_model_has_no_pct_rows_and_its_appendix_still_validates(tmp_path):
    from tests.test_report_publish import MANIFEST
    from trbench.validation.frames import report_frame

    spec = {**MANIFEST["spec"], "models": ["fast-model"], "baseline_model": "fast-model"}
    files = publish(plant(tmp_path / "planted", {"fast-model": FAST}, manifest={**MANIFEST, "spec": spec}),
                    plots=False)
    assert files.data.baseline_model == "fast-model"
    appendix = files.appendix_markdown.read_text()
    assert "Only the baseline model ran: nothing to compare." in appendix
    frame = report_frame(files.appendix_markdown, {"single"}, "appendix")
    assert frame["found"].all() and frame["table_ok"].all()


def test_the_report_artifact_is_the_publishable_report_and_names_its_appendix(files):
    from trbench.tr.closing import report_artifacts
    from trbench.workloads.steps import DirectSteps

    class Recording(DirectSteps):
        """The plain steps, keeping the Markdown artifacts it is asked to show."""

        def __init__(self) -> None:
            super().__init__()
            self.markdown: dict[str, str] = {}

        def markdown_artifact(self, key: str, markdown: str, description: str) -> None:
            self.markdown[key] = markdown

    steps = Recording()
    report_artifacts(steps, files)
    text = steps.markdown["planted-report"]
    assert text.startswith(render_markdown(files.data))  # the publishable report, without the plot links
    assert "### Winner by scenario" not in text
    assert text.rstrip().endswith(f"`{files.appendix_markdown}`")  # where the appendix is
