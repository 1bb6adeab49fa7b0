"""The load section of the report and the regression check over load steps, from load steps stored as
Parquet (made by the real runner against the fake client of tests/test_load_runner.py)."""

from __future__ import annotations

import json

import pytest

from trbench.data.environment import Manifest
from trbench.data import store
from trbench.data.rows import ErrorCount
from trbench.report.regression import compare
from trbench.report import publish
from trbench.report.build import build_report
from trbench.run import load_step as runner
from tests.test_load_runner import PROMPTS, FakeAsyncClient

SPEC = {"tr_id": "load-rep", "models": ["smollm2:135m"], "seed": 1, "max_tokens": 8, "single_agent": False,
        "load": {"concurrency": [1, 4], "requests": 8, "warmup_requests": 1, "slo": {"e2e_ms": 10_000}}}


def _measure(spec, fail_every: int = 0) -> list[tuple[dict, list[dict]]]:
    out = []
    for plan in runner.plan_steps(spec, "i0", "http://fake", slots=2):
        client = FakeAsyncClient(fail_every=fail_every if plan.step.concurrency == 4 else 0)
        out.append(runner.execute_step(spec, plan, lambda _b, _u, c=client: c, PROMPTS, "digest"))
    return out


def _write_tr(root, spec, steps=None, scale: float = 1.0, fail_every: int = 0):
    for row, rows in steps or _measure(spec, fail_every):
        # scale: the same steps as a slower or faster build of the server would have measured them
        store.write_run(root, {**row, "output_tps": row["output_tps"] * scale}, rows, Manifest(), kind="load")


@pytest.fixture
def spec():
    from trbench.config.spec import parse_spec

    return parse_spec(SPEC)


def test_the_report_shows_every_step_goodput_saturation_and_curves(tmp_path, spec):
    root = tmp_path / spec.tr_id
    _write_tr(root, spec, fail_every=4)
    files = publish(root, spec)
    load = files.data.load
    assert [s.step_label for s in load.steps] == ["c1", "c4"]
    c4 = load.steps[1]
    assert (c4.n_requests, c4.n_warmup, c4.n_errors, c4.error_kinds) == (8, 1, 2, [ErrorCount(kind="http_5xx", count=2)])
    assert c4.good_pct == pytest.approx(75.0)  # the errors miss the SLO; every ok request meets it
    assert load.slo == {"e2e_ms": 10_000.0}
    (summary,) = load.summaries
    assert summary.saturation_rps == pytest.approx(load.steps[0].offered_rps)  # c4 has 75 % good: saturated
    md, appendix = files.markdown.read_text(), files.appendix_markdown.read_text()
    # the report: goodput and saturation with the curves; the appendix: every step's table
    assert "## Load" in md and "saturation point req/s" in md and "http_5xx:2" in appendix
    # the fake client's answers end before max_tokens: how far out of step the streams ran is shown ...
    assert [s.n_ended_early for s in load.steps] == [8, 6] and "output share min" in appendix
    from trbench.report.load_tables import load_tables

    # ... and not where every stream produced its whole length (exact outputs)
    exact = load.model_copy(update={"steps": [s.model_copy(update={"n_ended_early": 0}) for s in load.steps]})
    headers = [c.header for c in load_tables(files.data.model_copy(update={"load": exact}))["load_steps"].columns]
    assert "ended early" in headers and not any(h.startswith("output share") for h in headers)
    assert "load_curves.png" in md and (root / "report" / "plots" / "load_curves.png").is_file()
    html = files.html.read_text()
    assert '<section id="load">' in html and "data:image/png;base64" in html


def test_the_regression_check_covers_the_load_figures(tmp_path, spec):
    steps = _measure(spec)
    _write_tr(tmp_path / "base", spec, steps)
    _write_tr(tmp_path / "slower", spec, steps, scale=0.85)
    _write_tr(tmp_path / "same", spec, steps, scale=0.95)
    base = build_report(tmp_path / "base", spec)
    slower = compare(build_report(tmp_path / "slower", spec), base, 10.0)
    hit = [c for c in slower.regressions if c.kind == "load"]
    assert {c.metric for c in hit} >= {"load output tok/s"}
    assert all(c.change_pct == pytest.approx(-15.0) for c in hit if c.metric == "load output tok/s")
    same = compare(build_report(tmp_path / "same", spec), base, 10.0)
    assert not [c for c in same.regressions if c.metric == "load output tok/s"]
    assert [c for c in same.comparisons if c.kind == "load" and c.metric == "load output tok/s"]


def test_a_baseline_at_another_server_queue_is_compared_and_the_queue_named(tmp_path, spec):
    # steps are matched on model, config and offered load (matching.py), so a baseline on another server
    # compares the same step; its queue (a shorter OLLAMA_MAX_QUEUE turns waits into 503s) is named as differing
    steps = _measure(spec)
    _write_tr(tmp_path / "base", spec, [({**row, "max_queue": 4}, rows) for row, rows in steps])
    _write_tr(tmp_path / "same", spec, [({**row, "max_queue": 4}, rows) for row, rows in steps], scale=0.85)
    _write_tr(tmp_path / "other", spec, [({**row, "max_queue": 1}, rows) for row, rows in steps], scale=0.85)
    base = build_report(tmp_path / "base", spec)
    same = compare(build_report(tmp_path / "same", spec), base, 10.0)
    other = compare(build_report(tmp_path / "other", spec), base, 10.0)
    assert [c for c in same.regressions if c.metric == "load output tok/s"] and not same.differences
    assert [c for c in other.regressions if c.metric == "load output tok/s"]
    assert [str(d) for d in other.differences] == ["server_queue 1 here, 4 in the baseline"]


def test_batching_interference_shows_only_where_every_stream_had_a_slot(tmp_path, spec):
    from trbench.measure.load_metrics import LOAD_DEFINITIONS
    from tests.test_report_publish import md_table_after

    steps = _measure(spec)
    assert [row["slots"] for row, _ in steps] == [2, 2]
    root = tmp_path / "fewer-slots"
    _write_tr(root, spec, steps)
    assert "Batching interference" not in publish(root, spec).appendix_markdown.read_text()  # 4 streams, 2 slots

    prefill = {"c1": 663.0, "c4": 2716.0}  # as llama.cpp measured a batch of four prompts against one
    roomy = [({**row, "slots": 4, "prefill_ms_p50": prefill[row["step_label"]]}, rows) for row, rows in steps]
    root = tmp_path / "slot-per-stream"
    _write_tr(root, spec, roomy)
    md = publish(root, spec).appendix_markdown.read_text()  # a detail table: the appendix's
    (row,) = md_table_after(md, next(ln for ln in md.splitlines() if ln.startswith("Batching interference")))
    assert (row["step"], row["slots"], row["prefill p50 ms"], row["prefill p50 ms at c=1"]) == ("c4", "4", "2716.0", "663.0")
    assert row["wait inside the batched prefill ms"] == "2053.0"
    assert "batched prefill wait" in LOAD_DEFINITIONS and "| batched prefill wait |" in md
    summary = json.loads((root / "report" / "summary.json").read_text())
    (wait,) = [r for r in summary["records"] if r["metric"] == "batched_prefill_wait_ms"]
    assert wait["value"] == pytest.approx(2053.0) and wait["definition"] == "load.batched prefill wait"
