"""The Prefect UI in a real browser: a custom run of the quickstart deployment from the run form,
picked up by a process worker, and its report and validation artifacts on the run page.

Headless Debian chromium driven by Playwright (no Playwright browser download). Screenshots of every
step go to test-output/ui/ (git-ignored). About 2-3 minutes on 2 cores, most of it the TR run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest

from local_prefect import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-output" / "ui"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason="chromium is not installed (apt-get install -y chromium; .ci/run does it)")]


def wait_final(api_url: str, flow_run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return run
        time.sleep(3)
    raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout} s: {run['state']}")


def wait_schedule_active(api_url: str, deployment: str, active: bool, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.post(f"{api_url}/deployments/filter", json={"deployments": {"name": {"any_": [deployment]}}},
                           timeout=10).json()
        if found and found[0]["schedules"][0]["active"] is active:
            return
        time.sleep(0.5)
    raise AssertionError(f"{deployment}'s schedule is not active={active} after the toggle")


def find_runs(api_url: str, deployment: str, tr_id: str, timeout: float = 30) -> list[dict]:
    """The flow runs the form created, found by their tr_id parameter among every run of the deployment.

    Every page of results is read: the server sorts by id (random uuid4) by default, and the session's server holds
    runs of other tests and the runs the nightly schedule made while it was switched on."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen, offset, mine = 0, 0, []
        while True:
            batch = httpx.post(f"{api_url}/flow_runs/filter", timeout=10, json={
                "deployments": {"name": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_DESC",
                "limit": 200, "offset": offset}).json()
            mine += [r for r in batch if r["parameters"].get("tr_id") == tr_id]
            seen += len(batch)
            if len(batch) < 200:
                break
            offset += 200
        if mine:
            return mine
        time.sleep(1)
    raise AssertionError(f"no flow run with tr_id {tr_id!r} among the {seen} runs of {deployment!r}: the form did not create it")


def test_custom_run_from_the_ui_shows_report_and_validation(local_prefect, free_ports, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    tr_id = f"ui-{uuid.uuid4().hex[:8]}"
    ports = free_ports(2)  # the quickstart's two instances (multi-agent), away from 18434/18435
    out = tmp_path / "outputs"
    base = local_prefect.url

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            shot = lambda name: page.screenshot(path=str(SHOTS / f"{name}.png"))  # noqa: E731

            # 1. every deployment of prefect.yaml is listed
            page.goto(f"{base}/deployments", wait_until="networkidle")

            def deployment(name: str):
                return page.locator("a.deployment-list__name", has_text=re.compile(rf"^\s*{name}\s*$"))

            for name in ("quickstart", "tr116", "rerun", "report", "fanout"):
                expect(deployment(name)).to_be_visible()
            shot("01-deployments")

            # 2. TR116's nightly cron schedule is there, switched off until someone turns it on
            deployment("tr116").click()
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+$"))
            expect(page.get_by_text("nightly", exact=True)).to_be_visible()
            switch = page.get_by_role("switch").first
            expect(switch).not_to_be_checked()
            shot("02-tr116-schedule")
            # the documented way to switch it on (and off again) from the UI
            switch.click()
            expect(switch).to_be_checked()
            wait_schedule_active(local_prefect.api_url, "tr116", True)
            shot("02-tr116-schedule-on")
            switch.click()
            expect(switch).not_to_be_checked()
            wait_schedule_active(local_prefect.api_url, "tr116", False)

            # 3. the quickstart deployment, its Run menu, the custom run form
            page.goto(f"{base}/deployments", wait_until="networkidle")
            deployment("quickstart").click()
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+$"))
            expect(page.get_by_role("button", name="Run", exact=True)).to_be_visible()
            shot("03-quickstart")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").first.click()
            page.wait_for_url(re.compile(r".*/run(\?.*)?$"))
            expect(page.get_by_text("Parameters", exact=True)).to_be_visible()
            shot("04-custom-run-form")

            # 4. the typed parameters render as fields: fill tr_id, models, runs, output_dir, ports
            def field(name: str):
                label = page.locator(".schema-form-property__label", has_text=re.compile(rf"^{name} "))
                return page.locator(".schema-form-property").filter(has=label).first

            def set_text(name: str, kind: str, value: str) -> None:
                f = field(name)
                f.get_by_role("button", name=kind, exact=True).click()
                f.locator("textarea, input").first.fill(value)

            def set_list(name: str, values: list[str]) -> None:
                f = field(name)
                f.get_by_role("button", name="list", exact=True).click()
                for v in values:
                    f.get_by_role("button", name="Add item").click()
                    f.locator("textarea, input").last.fill(v)

            set_text("tr_id", "str", tr_id)
            set_list("models", ["smollm2:135m"])
            set_text("runs", "int", "1")
            set_text("output_dir", "str", str(out))
            set_list("ports", [str(p) for p in ports])
            expect(field("spec")).to_be_visible()  # spec: dict | None renders too (a JSON editor when chosen)
            field("ports").scroll_into_view_if_needed()
            shot("05-custom-run-filled")
            page.get_by_role("button", name="Submit").click()
            # the UI goes back to the deployment and confirms with a toast "<run name> scheduled to start now"
            page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]+(\?.*)?$"))
            expect(page.get_by_text("scheduled to start").first).to_be_visible()
            shot("05b-submitted")

            # 5. the worker takes it; wait (through the API) until it is final
            (run,) = find_runs(local_prefect.api_url, "quickstart", tr_id)  # one Submit, one run
            expected = {"spec_path": "deployments/quickstart.yaml", "tr_id": tr_id, "models": ["smollm2:135m"],
                        "runs": 1, "output_dir": str(out), "ports": ports}
            assert {k: run["parameters"].get(k) for k in expected} == expected
            page.goto(f"{base}/runs/flow-run/{run['id']}", wait_until="networkidle")
            shot("06-flow-run-started")
            final = wait_final(local_prefect.api_url, run["id"], timeout=480)
            assert final["state"]["type"] == "COMPLETED", (final["state"], local_prefect.log("worker-host-a.log")[-3000:],
                                                           local_prefect.log("worker-host-b.log")[-3000:])
            assert "valid" in final["state"]["message"]

            # 6. reload the run page: Completed, and the report and validation artifacts are there
            page.reload(wait_until="networkidle")
            expect(page.get_by_text("Completed").first).to_be_visible()
            page.locator("[role=tablist] li", has_text=re.compile(r"^Artifacts$")).click()
            report_card = page.get_by_text(f"{tr_id}-report", exact=True)
            validation_card = page.get_by_text(f"{tr_id}-validation", exact=True)
            expect(report_card).to_be_visible()
            expect(validation_card).to_be_visible()
            shot("07-flow-run-artifacts")

            report_card.click()
            page.wait_for_url(re.compile(r".*/artifacts/artifact/.*"))
            expect(page.get_by_text("smollm2:135m").first).to_be_visible()  # the rendered Markdown
            shot("08-report-artifact")
            page.go_back(wait_until="networkidle")
            page.locator("[role=tablist] li", has_text=re.compile(r"^Artifacts$")).click()
            page.get_by_text(f"{tr_id}-validation", exact=True).click()
            page.wait_for_url(re.compile(r".*/artifacts/artifact/.*"))
            expect(page.locator("table").first).to_be_visible()  # the summary table
            shot("09-validation-artifact")
        finally:
            browser.close()

    # the data went where the form said: one model, one run per cell
    runs = ds.dataset(out / tr_id / "runs", partitioning="hive").to_table().to_pandas()
    assert set(runs["model"]) == {"smollm2:135m"} and (runs.groupby("num_ctx").size() == 1).all()
    # the report's command starts this run again, not Prefect's engine the worker ran
    command = json.loads((out / tr_id / "manifest.json").read_text())["command"]
    start, params = command.split(" --params ")
    assert start == "prefect deployment run tr/quickstart"
    assert {k: json.loads(shlex.split(params)[0]).get(k) for k in expected} == expected
