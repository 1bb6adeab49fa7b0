"""The published HTML report in a real browser (headless Debian chromium via Playwright): every
section is there and visible, every plot decodes, every table has rows, the page loads nothing
from anywhere, and a model answer with a script tag is shown as text and never runs.
A full-page screenshot goes to test-output/report/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_publish import APPENDIX_SECTIONS, FAST, SCRIPT, SECTIONS, SLOW, plant, publish
from test_ui_browser import CHROMIUM, CHROMIUM_ARGS

from local_prefect import ROOT
from trbench.report.plot_layout import COLUMN_CSS_PX, PIXEL_RATIO

SHOTS = ROOT / "test-output" / "report"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason="chromium is not installed (apt-get install -y chromium; .ci/run does it)")]


def test_report_opens_in_a_browser_with_every_section_and_nothing_runs(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    root = plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW},
                 multi={"fast-model": 80.0, "slow-model": 55.0}, answers={"fast-model": f"Sure! {SCRIPT} done"})
    files = publish(root)
    html, appendix = files.html, files.appendix_html
    SHOTS.mkdir(parents=True, exist_ok=True)
    fetched, dialogs, errors = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: fetched.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html.as_uri(), wait_until="load")

            h2 = page.locator("h2")
            expect(h2).to_have_text(SECTIONS)
            for i in range(len(SECTIONS)):
                h2.nth(i).scroll_into_view_if_needed()
                expect(h2.nth(i)).to_be_visible()
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            # throughput/TTFT, run-to-run spread, multi-agent efficiency (no energy: no frontier)
            assert len(images) == 3 and all(done and w > 100 and h > 100 for done, w, h in images), images
            # each figure is shown the text column wide, from a PNG with twice its pixels
            shown = page.evaluate("Array.from(document.images).map(i => [i.getBoundingClientRect().width, "
                                  "i.naturalWidth])")
            assert all(w == COLUMN_CSS_PX and natural == COLUMN_CSS_PX * PIXEL_RATIO for w, natural in shown), shown
            rows = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.rows.length)")
            assert rows and min(rows) >= 2, rows  # a header and at least one row of data each
            page.screenshot(path=str(SHOTS / "planted.png"), full_page=True)
            # the appendix: its sections, its tables, the sample answers (the tag shown as text), no plot
            page.goto(appendix.as_uri(), wait_until="load")
            expect(page.locator("h2")).to_have_text(APPENDIX_SECTIONS)
            rows = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.rows.length)")
            assert rows and min(rows) >= 2, rows
            assert page.evaluate("document.images.length") == 0
            answer = page.get_by_text(SCRIPT, exact=False).first
            answer.scroll_into_view_if_needed()
            expect(answer).to_be_visible()  # the tag is text on the page
            page.screenshot(path=str(SHOTS / "planted-appendix.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and errors == []  # the answer's script never ran
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []  # self-contained
    assert fetched[0] == html.as_uri() and appendix.as_uri() in fetched


# the page's width a report must fit without a sideways scroll, and the printable width of an A4
# page with the print stylesheet's 15 mm margins, in CSS px (96 per inch)
SCREEN_PX = 1200
A4_PRINTABLE_PX = int((210 - 2 * 15) / 25.4 * 96)

_TABLE_EDGES = """() => Array.from(document.querySelectorAll('table')).map(t => {
    const r = t.getBoundingClientRect();
    return {right: r.right + window.scrollX, width: r.width, scroll: t.parentElement.scrollWidth - t.parentElement.clientWidth,
            headers: Array.from(t.querySelectorAll('th')).map(th => {
                const h = th.getBoundingClientRect();
                return {text: th.textContent, right: h.right + window.scrollX, width: h.width,
                        clipped: th.scrollWidth > th.clientWidth + 1};
            })};
})"""


def _fits(page, width: int) -> list[str]:
    """What sticks out past `width`: the page's own scroll, a table's right edge, a header cut off."""
    out = []
    scroll = page.evaluate("document.scrollingElement.scrollWidth")
    if scroll > width:
        out.append(f"page scrolls sideways: {scroll} px > {width}")
    for i, t in enumerate(page.evaluate(_TABLE_EDGES)):
        heads = [h["text"] for h in t["headers"]]
        if t["right"] > width + 1 or t["scroll"] > 0:  # 1 px: half the collapsed outer border
            out.append(f"table {i} ({heads[:3]}...) ends at {t['right']:.0f} px, scrolls {t['scroll']} px")
        out += [f"table {i}: header {h['text']!r} not shown whole" for h in t["headers"]
                if h["right"] > width + 1 or h["width"] <= 0 or h["clipped"]]
    return out


def test_report_fits_1200_px_and_an_a4_page_with_every_column_header(tmp_path):
    from playwright.sync_api import sync_playwright
    from test_report_fit import plant_everything

    from trbench.report import build_report, publish
    from trbench.report.load_tables import load_tables
    from trbench.report.tables import MAX_COLUMNS, tables

    root = plant_everything(tmp_path / "planted")
    files = publish(root)
    data = build_report(root)
    wide = {name: t for name, t in {**tables(data), **load_tables(data)}.items() if len(t.columns) > MAX_COLUMNS}
    assert {"results", "load_steps"} <= set(wide)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shown: set[str] = set()
    printed: dict[str, int] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for name, html in (("report", files.html), ("appendix", files.appendix_html)):
                page = browser.new_page(viewport={"width": SCREEN_PX, "height": 900})
                page.goto(html.as_uri(), wait_until="load")
                assert page.evaluate("document.scrollingElement.scrollWidth") <= SCREEN_PX
                assert _fits(page, SCREEN_PX) == [], name
                page.screenshot(path=str(SHOTS / f"fit-1200-{name}.png"), full_page=True)
                if name == "report":  # the first screen answers: the glance table is on it, whole
                    glance = page.locator("table.headline").first.bounding_box()
                    assert glance and glance["y"] + glance["height"] <= 2 * 900, glance

                # printed: the print stylesheet at the printable width of an A4 page
                page.emulate_media(media="print")
                page.set_viewport_size({"width": A4_PRINTABLE_PX, "height": 1000})
                assert _fits(page, A4_PRINTABLE_PX) == [], name
                page.screenshot(path=str(SHOTS / f"fit-print-{name}.png"), full_page=True)
                shown |= {h["text"] for t in page.evaluate(_TABLE_EDGES) for h in t["headers"]}
                pdf = tmp_path / f"{name}.pdf"
                page.pdf(path=str(pdf), format="A4", prefer_css_page_size=True, print_background=True)
                printed[name] = pdf.read_bytes().count(b"/Type /Page") - pdf.read_bytes().count(b"/Type /Pages")
                (SHOTS / f"planted-{name}.pdf").write_bytes(pdf.read_bytes())
                page.close()
        finally:
            browser.close()
    for name, table in wide.items():  # every column of every wide table has its header on paper
        missing = [c.header for c in table.columns if c.header not in shown]
        assert missing == [], (name, missing)
    # printed, the appendix over several pages; the report shorter than its appendix
    assert printed["appendix"] > 3 and 1 <= printed["report"] < printed["appendix"], printed
