"""The published HTML report in a real browser (headless Debian chromium via Playwright): every
section is there and visible, every plot decodes, every table has rows, the page loads nothing
from anywhere, and a model answer with a script tag is shown as text and never runs.
A full-page screenshot goes to test-output/report/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_publish import FAST, SCRIPT, SECTIONS, SLOW, plant, publish
from test_ui_browser import CHROMIUM, CHROMIUM_ARGS

from local_prefect import ROOT

SHOTS = ROOT / "test-output" / "report"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason="chromium is not installed (apt-get install -y chromium; .ci/run does it)")]


def test_report_opens_in_a_browser_with_every_section_and_nothing_runs(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    root = plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW},
                 multi={"fast-model": 80.0, "slow-model": 55.0}, answers={"fast-model": f"Sure! {SCRIPT} done"})
    html = publish(root).html
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
            rows = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.rows.length)")
            assert rows and min(rows) >= 2, rows  # a header and at least one row of data each
            answer = page.get_by_text(SCRIPT, exact=False).first
            answer.scroll_into_view_if_needed()
            expect(answer).to_be_visible()  # the tag is text on the page
            page.screenshot(path=str(SHOTS / "planted.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and errors == []  # the answer's script never ran
    assert [u for u in fetched if not u.startswith(("file:", "data:"))] == []  # self-contained
    assert fetched[0] == html.as_uri()
