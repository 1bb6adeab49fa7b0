"""report/summary.json and summary.csv: written by every report render, valid against
docs/summary.schema.json (which is what the pydantic model gives), the same records in both files,
and their numbers those of an independent recomputation from the Parquet rows.

Planted Parquet: single-agent and multi-agent runs from tests/test_report_publish.plant, load steps
measured by the real load runner against the fake client (tests/test_load_report), embeddings steps
as tests/test_report_shapes writes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from jsonschema import Draft202012Validator

from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report_publish import FAST, SLOW, plant
from tests.test_report_shapes import _embedding_steps
from trbench.config.spec import parse_spec
from trbench.report import publish
from trbench.report.summary import CSV_COLUMNS, SummaryFile, schema_text

ROOT = Path(__file__).resolve().parent.parent
TR_ID = "planted"


@pytest.fixture(scope="module")
def tr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TR with every workload but the suites: single agent, multi agent, load and embeddings."""
    root = tmp_path_factory.mktemp("summary") / TR_ID
    plant(root, {"fast-model": FAST, "slow-model": SLOW}, multi={"fast-model": 60.0, "slow-model": 40.0})
    _write_tr(root, parse_spec({**LOAD_SPEC, "tr_id": TR_ID}), fail_every=4)
    _embedding_steps(root, TR_ID)
    publish(root, html=False, plots=False)
    return root


@pytest.fixture(scope="module")
def summary(tr: Path) -> dict:
    return json.loads((tr / "report" / "summary.json").read_text())


def _frame(root: Path, table: str) -> pd.DataFrame:
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pandas()


def _records(summary: dict, **match) -> list[dict]:
    return [r for r in summary["records"] if all(r[k] == v for k, v in match.items())]


def test_the_schema_file_is_what_the_model_gives() -> None:
    assert (ROOT / "docs/summary.schema.json").read_text() == schema_text(), (
        "docs/summary.schema.json differs from trbench.report.summary.SummaryFile; run `make docs`")


def test_the_files_are_beside_the_report_and_meet_the_schema(tr: Path, summary: dict) -> None:
    assert (tr / "report" / "summary.csv").is_file() and (tr / "report" / f"{TR_ID}.md").is_file()
    schema = json.loads((ROOT / "docs/summary.schema.json").read_text())
    errors = sorted(Draft202012Validator(schema).iter_errors(summary), key=str)
    assert not errors, errors[:3]
    assert summary["schema_version"] == 1 and summary["tr_id"] == TR_ID
    SummaryFile.model_validate(summary)
    # every definition id a record names has its text, and no other
    named = {i for r in summary["records"] for i in (r["definition"], r["ci_definition"]) if i}
    assert set(summary["definitions"]) == named and all(summary["definitions"].values())


def test_only_the_workloads_the_tr_has(tr: Path, summary: dict, tmp_path: Path) -> None:
    assert {r["workload"] for r in summary["records"]} == {"single_agent", "multi_agent", "load", "embeddings"}
    single = plant(tmp_path / "single", {"fast-model": FAST})
    files = publish(single, html=False, plots=False)
    assert files.summary_json == single / "report" / "summary.json"
    only = json.loads(files.summary_json.read_text())
    assert {r["workload"] for r in only["records"]} == {"single_agent"}


def test_decode_median_and_n_equal_a_recomputation_from_parquet(tr: Path, summary: dict) -> None:
    reqs, runs = _frame(tr, "requests"), _frame(tr, "runs")
    cells = 0
    for (model, g, c, t), cell_runs in runs.groupby(["model", "num_gpu", "num_ctx", "temperature"]):
        valid = cell_runs.loc[cell_runs["valid"], "run_id"]
        pooled = reqs[reqs["run_id"].isin(valid) & ~reqs["is_warmup"] & (reqs["status"] == "ok")]
        tps, e2e = pooled["decode_tps"].dropna().to_numpy(), pooled["e2e_ms"].dropna().to_numpy()
        config = f"gpu{g}_ctx{c}_temp{t:g}"
        (median,) = _records(summary, workload="single_agent", model=model, config=config, metric="decode_tps",
                             statistic="median")
        assert median["value"] == pytest.approx(float(np.median(tps)), rel=1e-12)
        assert median["n"] == len(pooled) and median["n_of"] == "requests" and median["unit"] == "tok/s"
        assert median["config_values"] == {"num_gpu": int(g), "num_ctx": int(c), "temperature": float(t)}
        assert median["ci_low"] <= median["value"] <= median["ci_high"]
        assert median["definition"] == "request.decode_tps"
        (mean,) = _records(summary, model=model, config=config, metric="decode_tps", statistic="mean")
        assert mean["value"] == pytest.approx(float(tps.mean()), rel=1e-12) and mean["ci_low"] is None
        (e2e_median,) = _records(summary, model=model, config=config, metric="e2e_ms", statistic="median")
        assert e2e_median["value"] == pytest.approx(float(np.median(e2e)), rel=1e-12)
        cells += 1
    assert cells == 4


def test_ttft_is_per_cache_state_and_only_the_states_measured(summary: dict) -> None:
    ttft = {r["metric"] for r in _records(summary, workload="single_agent") if r["metric"].startswith("ttft")}
    assert ttft == {"ttft_cold_ms"}  # the planted requests are all cold


def test_multi_agent_and_load_figures_are_the_stored_ones(tr: Path, summary: dict) -> None:
    ma = _frame(tr, "ma_runs")
    for (model, scenario), runs in ma.groupby(["model", "scenario"]):
        (speedup,) = _records(summary, workload="multi_agent", model=model, config=scenario, metric="speedup",
                              statistic="median")
        assert speedup["value"] == pytest.approx(float(np.median(runs.loc[runs["valid"], "speedup"])), rel=1e-12)
        assert speedup["n"] == int(runs["valid"].sum()) and speedup["n_of"] == "runs"
    steps = _frame(tr, "load_steps")
    for step in steps.itertuples():
        (tps,) = _records(summary, workload="load", model=step.model, metric="output_tps", statistic="value",
                          config=f"gpu{step.num_gpu}_ctx{step.num_ctx}_temp{step.temperature:g} {step.step_label}")
        assert tps["value"] == pytest.approx(step.output_tps, rel=1e-12) and tps["n"] == step.n_requests
    emb = _frame(tr, "emb_steps")
    for step in emb.itertuples():
        (texts,) = _records(summary, workload="embeddings", metric="texts_per_s",
                            config=f"{step.instance} batch{step.batch_size}_conc{step.concurrency}")
        assert texts["value"] == pytest.approx(step.texts_per_s, rel=1e-12)


def test_the_csv_holds_the_same_records(tr: Path, summary: dict) -> None:
    with (tr / "report" / "summary.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == len(summary["records"])

    def typed(row: dict[str, str]) -> dict:
        out: dict = {k: (v if v != "" else None) for k, v in row.items()}
        out["config_values"] = json.loads(row["config_values"])
        for k in ("value", "ci_low", "ci_high"):
            out[k] = None if out[k] is None else float(out[k])
        out["n"] = None if out["n"] is None else int(out["n"])
        return out

    for row, record in zip(rows, summary["records"]):
        assert typed(row) == record  # floats read back to the same double


def _scenario_row(model: str, parse: float, route: float | None) -> dict:
    return {"model": model, "scenario": "router", "json_mode": True, "requests": 8, "errors": 0,
            "json_parse_rate": parse, "schema_valid_rate": parse, "route_accuracy": route, "sane_rate": 1.0,
            "output_tokens_mean": 12.5, "latency_ms_p50": 100.0, "latency_ms_p95": 150.0, "latency_ms_p99": 170.0}


def _qa_row(model: str, overall: float, kind: str = "model") -> dict:
    return {"model": model, "kind": kind, "questions": 4, "unanswerable": 1, "failed": 0, "overall": overall,
            "value_accuracy": overall, "ref_overlap": 0.5, "na_recall": 1.0, "unit_match": 0.75,
            "latency_ms_p50": 200.0, "latency_ms_p95": 300.0, "output_tokens_mean": 20.0}


def test_the_suites_records_are_the_section_rows(tr: Path) -> None:
    from trbench.report import build_report
    from trbench.report.answer_quality import SuitesSection
    from trbench.report.models import Measured
    from trbench.report.summary import build_summary

    data = build_report(tr)
    suites = SuitesSection(scenarios=[_scenario_row("fast-model", 1.0, 0.75), _scenario_row("slow-model", 0.5, None)],
                           qa=[_qa_row("fast-model", 0.25), _qa_row("ensemble(fast-model,slow-model)", 0.5, "ensemble")],
                           points=[])
    data = data.model_copy(update={"suites": suites, "measured": [
        *data.measured, Measured(workload="suites", title="Quality suites", summary="router, qa")]})
    summary = build_summary(data).model_dump(mode="json")
    schema = json.loads((ROOT / "docs/summary.schema.json").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(summary))
    (route,) = _records(summary, workload="suites", model="fast-model", config="router", metric="route_accuracy")
    assert (route["value"], route["n"], route["n_of"], route["unit"]) == (0.75, 8, "requests", "1")
    (none,) = _records(summary, workload="suites", model="slow-model", metric="route_accuracy")
    assert none["value"] is None  # n/a in the report, null here
    (ensemble,) = _records(summary, workload="suites", config="qa", metric="qa_overall",
                           model="ensemble(fast-model,slow-model)")
    assert ensemble["value"] == 0.5 and ensemble["config_values"] == {"suite": "qa", "kind": "ensemble"}
    assert ensemble["n"] == 4 and ensemble["n_of"] == "questions" and ensemble["definition"] == "suites.qa_overall"
    assert summary["definitions"]["suites.qa_overall"].startswith("WattBot QA score")
