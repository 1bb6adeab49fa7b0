"""The quality suites in the TR flow, on a real Prefect server (prefect_test_harness), against the
mock provider (a fake LLM server for harness tests, trbench/engines/mock.py): every suite of every
model as mapped tasks, each answer a typed row, the per-scenario summary and the QA results
matrix written, a resume that does not ask again, and `trbench ensemble` on the stored TR. The
same pipeline against a real llama.cpp server: tests/test_smoke.py."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.tr import tr
from trbench.cli import app
from trbench.data import store
from trbench.suites.matrix import read_results_matrix
from trbench.suites.results import MATRIX_FILE, SUITES_DIR, SUMMARY_FILE

MODELS = ["tiny-a:1", "tiny-b:1"]


def mock_spec(tr_id: str, port: int, **extra) -> dict:
    return {
        "tr_id": tr_id, "provider": "mock", "models": MODELS, "server": {"ports": [port], "token_ms": 0},
        "grid": {"num_ctx": [1024]}, "runs": 1, "requests_per_run": 1, "warmup_requests": 0, "max_tokens": 8,
        "ttft": "cold", "seed": 1,
        "suites": {"scenarios": ["router", "orchestrator", "chat"], "qa": True, "messages": 3, "questions": 4},
        **extra,
    }


def test_suites_run_as_tasks_and_are_summarized(prefect_api, tmp_path, free_ports):
    state = tr(spec=mock_spec("mock-suites", free_ports(1)[0]), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "mock-suites"
    rows = store.read_frame(root, "suite_requests")
    # every model x suite, the counts the spec asked for, every answer checked
    counts = rows.groupby(["model", "suite"]).size().to_dict()
    assert counts == {(m, s): n for m in MODELS for s, n in
                      (("router", 3), ("orchestrator", 3), ("chat", 3), ("qa", 4))}
    assert (rows["status"] == "ok").all() and rows["e2e_ms"].gt(0).all() and rows["output_tokens"].gt(0).all()
    json_rows = rows[rows["suite"] != "chat"]
    assert json_rows["json_mode"].all() and not rows.loc[rows["suite"] == "chat", "json_mode"].any()
    assert set(json_rows["json_ok"]) == {True, False}  # the mock's canned invalid answers were caught
    assert rows.loc[rows["suite"] == "chat", "json_ok"].isna().all()
    assert rows.loc[rows["suite"] == "router", "expected"].notna().all()

    summary = pd.read_parquet(root / SUITES_DIR / SUMMARY_FILE)
    assert len(summary) == 6 and set(summary["scenario"]) == {"router", "orchestrator", "chat"}
    router = summary[summary["scenario"] == "router"].iloc[0]
    r = rows[(rows["suite"] == "router") & (rows["model"] == router["model"])]
    assert router["json_parse_rate"] == pytest.approx(r["json_ok"].astype(float).mean())
    assert router["route_accuracy"] == pytest.approx(r["route_ok"].astype(float).mean())
    assert router["latency_ms_p50"] == pytest.approx(r["e2e_ms"].median())

    matrix = read_results_matrix(root / SUITES_DIR / MATRIX_FILE)
    assert list(matrix["model"]) == MODELS and (matrix["questions"] == 4).all()
    assert ((matrix["overall"] >= 0) & (matrix["overall"] <= 1)).all()

    # a resume asks nothing again: the suite run files are the ledger
    files = {p: p.stat().st_mtime_ns for p in (root / store.SUITE_TABLE).rglob("*.parquet")}
    again = tr(spec=mock_spec("mock-suites", free_ports(1)[0]), output_dir=str(tmp_path), return_state=True)
    assert again.is_completed(), again.message
    assert {p: p.stat().st_mtime_ns for p in (root / store.SUITE_TABLE).rglob("*.parquet")} == files

    # the ensemble of the stored TR: a row of the results matrix, scored like a model
    result = CliRunner().invoke(app, ["ensemble", "mock-suites", "--models", ",".join(MODELS),
                                      "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ensemble(tiny-a:1,tiny-b:1): overall" in result.stdout
    matrix = read_results_matrix(root / SUITES_DIR / MATRIX_FILE)
    assert list(matrix["kind"]) == ["model", "model", "ensemble"]
    # failed answers do not vote: the ensemble lacks an answer only where every model does
    assert matrix["failed"].iloc[2] <= matrix["failed"].iloc[:2].min() and matrix["questions"].iloc[2] == 4
    bad = CliRunner().invoke(app, ["ensemble", "mock-suites", "--models", "tiny-a:1,nope", "--output-dir",
                                   str(tmp_path)])
    assert bad.exit_code == 2 and "model nope has no QA answers" in bad.output and "fix:" in bad.output

    # the report: the quality section beside the speed results, stamped as a mock TR
    from trbench.report import publish

    files = publish(root)
    md = files.markdown.read_text()
    assert md.count("**Mock provider.**") == 1 and "never a baseline" in md
    appendix = files.appendix_markdown.read_text()  # the suites' tables are the appendix's
    quality = appendix.split("## Quality tables", 1)[1].split("\n## ", 1)[0]
    for part in ("### Scenarios", "| `tiny-a:1` | router | yes |", "### QA results matrix",
                 "| `ensemble(tiny-a:1,tiny-b:1)` | ensemble |", "JSON mode: the server was asked for JSON"):
        assert part in quality, part
    assert {"qa_breakdown"} <= {p.stem for p in files.plots}
    key = md.split("## Key findings", 1)[1].split("## Objective", 1)[0]
    assert "Quality suites, answers that parse" in key and "QA over retrieved documents" in key
    assert "id=\"quality\"" in files.html.read_text()
