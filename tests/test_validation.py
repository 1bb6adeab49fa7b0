"""GX data QA (trbench.validation.validate) on datasets built with the real row builders: a clean TR passes
every expectation; each injected defect is caught by its own named expectation, whose message names
the config and the column."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from trbench.data.environment import Manifest
from trbench.data import store
from trbench.validation import checks, frames, gx
from trbench.validation import validate as validation
from trbench.backends import RawExchange
from trbench.run.multi import AgentRun, AgentSlot, MultiRunPlan, _rows, multi_run_row
from trbench.report import write_report
from trbench.run.single import RunPlan, _keys, request_row, run_row
from trbench.run.settings import RunSettings
from trbench.config.spec import MatrixSpec, parse_spec

TR_ID = "TRqa"
MANIFEST = Manifest(command="pytest", packages={"pandas": "3"})
SPEC = parse_spec({
    "tr_id": TR_ID, "models": ["alpha:1b", "beta:2b"], "grid": {"num_ctx": [512, 1024], "temperature": [0.8]},
    "runs": 3, "requests_per_run": 3, "min_ok_requests": 2, "warmup_requests": 1, "ttft": "cold",
    "multi_agent": {"scenarios": ["baseline_vs_chimera", "chimera_homo"], "runs": 2},
})
CELLS = SPEC.cells()  # alpha 512, alpha 1024, beta 512, beta 1024

# The defects, one per config, so that each failure names exactly one config.
NEG_TTFT = ("alpha:1b|0|512|0.8", 1, 1)  # config key, run_index, measured request
ZERO_TOKENS = ("alpha:1b|0|1024|0.8", 0, 2)
TTFT_OVER_E2E = ("beta:2b|0|512|0.8", 2, 0)
BAD_ERROR_KIND = ("beta:2b|0|1024|0.8", 0, 1)
MISSING_RUN = ("beta:2b|0|1024|0.8", 2)  # this run is never written
BAD_EFFICIENCY = ("alpha:1b|chimera_homo", 1)
BAD_NOT_RUN = ("alpha:1b|0|1024|0.8", 2)  # a not_run code the code base never writes
NOT_SERVERS_RATE = ("alpha:1b|0|1024|0.8", 1, 0)  # a server view in another convention than the server's own


def exchange(t0_ns: int, ttft_ms: float, tokens: int, decode_ms: float, model: str) -> RawExchange:
    first = t0_ns + int(ttft_ms * 1e6)
    times = [first + int(i * decode_ms / tokens * 1e6) for i in range(tokens)]
    return RawExchange(backend="openai", url="http://127.0.0.1:1", model=model, sent_at_unix=1.7e9 + t0_ns / 1e9,
                       t_send_ns=t0_ns, t_end_ns=times[-1] + 2_000_000, token_times_ns=times,
                       token_kinds=["content"] * tokens, text="x" * tokens, output_tokens=tokens, prompt_tokens=30,
                       server_decode_tokens=tokens, server_decode_ms=decode_ms, finish_reason="length",
                       server_decode_tps_reported=(tokens - 1) / decode_ms * 1000.0, http_status=200)


def single_runs(root: Path, spec: MatrixSpec, defects: bool) -> None:
    for ci, cell in enumerate(spec.cells()):
        key = validation.single_key(cell.model, cell.num_gpu, cell.num_ctx, cell.temperature)
        for run_index in range(spec.runs):
            if defects and (key, run_index) == MISSING_RUN:
                continue
            plan = RunPlan(tr_id=spec.tr_id, cell=cell, cell_hash=spec.cell_hash(cell, "p"), run_index=run_index,
                           instance="embedded-0", instance_url="http://127.0.0.1:1")
            keys = _keys(RunSettings.of(spec), plan)
            rows = []
            for i in range(spec.warmup_requests + spec.requests_per_run):
                warm = i < spec.warmup_requests
                t0 = (ci * 100 + run_index * 10 + i) * 10**9
                ex = exchange(t0, 40.0 + i, 16, 200.0 + 5 * run_index, cell.model)
                rows.append(request_row(keys, i, warm, f"p{i}", ex, "a prompt", None if warm else "cold"))
            if defects:
                measured = [r for r in rows if not r["is_warmup"]]
                for defect, (k, ri, req) in (("neg", NEG_TTFT), ("zero", ZERO_TOKENS), ("over", TTFT_OVER_E2E),
                                             ("kind", BAD_ERROR_KIND), ("rate", NOT_SERVERS_RATE)):
                    if (key, run_index) != (k, ri):
                        continue
                    r = measured[req]
                    if defect == "neg":
                        r["ttft_ms"] = -5.0
                    elif defect == "zero":
                        r["output_tokens"] = 0
                    elif defect == "over":
                        r["ttft_ms"] = r["e2e_ms"] + 100.0
                    elif defect == "rate":  # n / ms, as trbench read before: 1/(n-1) high
                        r["decode_tps"] = r["server_decode_tokens"] / r["server_decode_ms"] * 1000.0
                    else:
                        r.update(status="error", error_kind="gremlins", error_message="planted")
            row = run_row(keys, RunSettings.of(spec), rows, 1.7e9, 1.0, None, "digest")
            if defects and (key, run_index) == BAD_NOT_RUN:
                row["not_run"] = "gremlins"
            store.write_run(root, row, rows, MANIFEST)


def agent(role: str, phase: str, start_s: float, wall_s: float, ttft_ms: float, tps: float, model: str) -> AgentRun:
    t0 = int(start_s * 1e9)
    calls = [(name, exchange(t0 + int(n * wall_s / 2 * 1e9), ttft_ms, 20, 20 / tps * 1000, model), "a prompt")
             for n, name in enumerate(["analysis", "report"])]
    return AgentRun(role=role, phase=phase, calls=calls, t_start_ns=t0, t_end_ns=t0 + int(wall_s * 1e9))


def multi_runs(root: Path, spec: MatrixSpec, defects: bool) -> None:
    ma = spec.multi_agent
    for model in spec.multi_agent_models:
        for scenario in ma.scenarios:
            collector_opts, insight_opts = ma.options(scenario)
            slots = [AgentSlot(role="collector", instance="embedded-0", instance_url="u0", options=collector_opts),
                     AgentSlot(role="insight", instance="embedded-1", instance_url="u1", options=insight_opts)]
            for run_index in range(ma.runs):
                plan = MultiRunPlan(tr_id=spec.tr_id, model=model, scenario=scenario, run_index=run_index,
                                    slots=slots, config_hash=f"h-{model}-{scenario}")
                base = 100.0 * run_index
                warm = [agent(r, "warmup", base, 0.5, 50.0, 90.0, model) for r in ("collector", "insight")]
                conc = {"collector": agent("collector", "concurrent", base + 10, 3.0, 80.0, 60.0, model),
                        "insight": agent("insight", "concurrent", base + 10.2, 3.5, 90.0, 58.0, model)}
                solo = {"collector": agent("collector", "solo", base + 20, 2.0, 60.0, 90.0, model),
                        "insight": agent("insight", "solo", base + 23, 2.4, 65.0, 88.0, model)}
                rows = _rows(spec, plan, warm + list(conc.values()) + list(solo.values()))
                row = multi_run_row(spec, plan, conc, solo, rows, 1.7e9, run_index % 2 == 0, "digest")
                if defects and (validation.multi_key(model, scenario), run_index) == BAD_EFFICIENCY:
                    row["efficiency_pct"] += 5.0
                store.write_run(root, row, rows, MANIFEST, kind="multi")


def build_tr(root: Path, defects: bool = False) -> Path:
    single_runs(root, SPEC, defects)
    multi_runs(root, SPEC, defects)
    return write_report(root, SPEC)


EXPECTED = validation.expected_runs_for(SPEC)


@pytest.fixture(scope="module")
def gx_context():
    return validation.make_context()  # the GX import (seconds) once per module


@pytest.fixture(scope="module")
def clean(tmp_path_factory, gx_context):
    root = tmp_path_factory.mktemp("clean") / TR_ID
    report = build_tr(root)
    t0 = time.perf_counter()
    result = validation.validate_tr(root, EXPECTED, report, context=gx_context)
    print(f"\nvalidate_tr on the clean TR: {time.perf_counter() - t0:.2f} s, {len(result.results)} expectations")
    return root, report, result


@pytest.fixture(scope="module")
def defective(tmp_path_factory, gx_context):
    root = tmp_path_factory.mktemp("bad") / TR_ID
    report = build_tr(root, defects=True)
    return validation.validate_tr(root, EXPECTED, report, context=gx_context)


def test_expected_run_keys_follow_the_documented_format():
    assert EXPECTED == {
        "alpha:1b|0|512|0.8": 3, "alpha:1b|0|1024|0.8": 3, "beta:2b|0|512|0.8": 3, "beta:2b|0|1024|0.8": 3,
        "alpha:1b|baseline_vs_chimera": 2, "alpha:1b|chimera_homo": 2,
        "beta:2b|baseline_vs_chimera": 2, "beta:2b|chimera_homo": 2,
    }
    assert validation.single_key("m", 80, 2048, 1.0) == "m|80|2048|1"


def test_clean_tr_passes_every_expectation(clean):
    _, _, result = clean
    failed = [r.message for r in result.results if not r.success]
    assert failed == []
    assert result.success
    tables = {r.table for r in result.results}
    assert tables == {"requests", "runs", "ma_requests", "ma_runs", "run_counts", "ma_run_counts", "report", "appendix",
                      "tr"}
    # every expectation has a stable, unique name per table, and the checks the brief names exist
    names = [(r.table, r.expectation) for r in result.results]
    assert len(names) == len(set(names))
    for table, name in [("requests", "ttft_positive_on_ok_rows"), ("requests", "output_tokens_at_least_1_on_ok_rows"),
                        ("requests", "ttft_not_above_e2e_on_ok_rows"), ("requests", "e2e_positive_on_ok_rows"),
                        ("requests", "status_in_set"), ("requests", "error_kind_in_documented_set"),
                        ("requests", "run_id_not_null"), ("requests", "column_dtypes"), ("runs", "cell_hash_not_null"),
                        ("ma_runs", "efficiency_equals_speedup_over_n_agents"), ("run_counts", "expected_runs_per_config"),
                        ("ma_run_counts", "expected_runs_per_config"), ("report", "report_sections_present")]:
        assert result.get(table, name).success
    # pandas-3 dtypes: string columns are checked as str, and the count checks actually counted
    assert result.get("requests", "column_dtypes").element_count == len(store.REQUEST_SCHEMA)
    assert result.get("run_counts", "expected_runs_per_config").element_count == 4
    assert result.get("ma_run_counts", "expected_runs_per_config").element_count == 4


def test_validation_json_and_summary_rows(clean, tmp_path):
    _, _, result = clean
    path = validation.write_validation_json(result, tmp_path / "qa" / "validation.json")
    data = json.loads(path.read_text())
    assert data["success"] is True and len(data["results"]) == len(result.results)
    assert validation.ValidationResult.model_validate(data).results[0].expectation == result.results[0].expectation
    rows = validation.summary_rows(result)
    assert len(rows) == len(result.results)
    assert set(rows[0]) == {"table", "expectation", "result", "columns", "unexpected", "message"}
    assert validation.summary_rows(result, failed_only=True) == []


# (table, expectation, config named in the message, column named in the message)
CAUGHT = [
    ("requests", "ttft_positive_on_ok_rows", NEG_TTFT[0], "ttft_ms"),
    ("requests", "output_tokens_at_least_1_on_ok_rows", ZERO_TOKENS[0], "output_tokens"),
    ("requests", "ttft_not_above_e2e_on_ok_rows", TTFT_OVER_E2E[0], "ttft_ms"),
    ("requests", "error_kind_in_documented_set", BAD_ERROR_KIND[0], "error_kind"),
    ("requests", "decode_tps_is_the_servers_own_rate", NOT_SERVERS_RATE[0], "decode_tps"),
    ("run_counts", "expected_runs_per_config", MISSING_RUN[0], "n_runs"),
    ("ma_runs", "efficiency_equals_speedup_over_n_agents", BAD_EFFICIENCY[0], "efficiency_pct"),
    ("runs", "not_run_in_set", BAD_NOT_RUN[0], "not_run"),
]


@pytest.mark.parametrize(("table", "name", "config", "column"), CAUGHT, ids=[c[1] for c in CAUGHT])
def test_injected_defect_is_caught_by_its_named_expectation(defective, table, name, config, column):
    outcome = defective.get(table, name)
    assert not outcome.success
    assert outcome.severity == "error"
    assert outcome.unexpected_count == 1
    assert config in outcome.message and column in outcome.message and name in outcome.message
    assert "\n" not in outcome.message
    example = outcome.unexpected_examples[0]
    assert example["config"] == config
    if table != "run_counts":
        assert example["run_id"] and example["model"] == config.split("|")[0]


def test_defects_fail_nothing_else(defective):
    assert not defective.success
    failed = {(r.table, r.expectation) for r in defective.failures}
    assert failed == {(t, n) for t, n, _, _ in CAUGHT}
    # the missing run also leaves its config short of valid runs: a warning, not an error
    assert {(r.table, r.expectation) for r in defective.warnings} == {("run_counts", "valid_runs_per_config")}


def test_missing_run_names_the_missing_run_index(defective):
    outcome = defective.get("run_counts", "expected_runs_per_config")
    assert outcome.unexpected_examples[0]["missing_run_indexes"] == [MISSING_RUN[1]]
    assert "2 runs of 3 expected" in outcome.message and "missing run_index [2]" in outcome.message


def test_examples_point_at_the_bad_rows(defective):
    neg = defective.get("requests", "ttft_positive_on_ok_rows").unexpected_examples[0]
    assert neg["ttft_ms"] == -5.0 and neg["run_id"].endswith("_r01_a1")
    zero = defective.get("requests", "output_tokens_at_least_1_on_ok_rows").unexpected_examples[0]
    assert zero["output_tokens"] == 0 and zero["status"] == "ok"
    eff = defective.get("ma_runs", "efficiency_equals_speedup_over_n_agents").unexpected_examples[0]
    assert eff["efficiency_pct"] == pytest.approx(eff["speedup"] / 2 * 100 + 5.0)


def test_a_column_of_the_wrong_dtype_is_named_with_what_was_expected(gx_context):
    frame = store.REQUEST_SCHEMA.empty_table().to_pandas()
    frame["ttft_ms"] = frame["ttft_ms"].astype("str")  # e.g. a file written with the number as text
    frame["attempt"] = frame["attempt"].astype("float64")  # a key: never null, so never float64
    frame["server_decode_tokens"] = frame["server_decode_tokens"].astype("float64")  # nullable: float64 is fine
    schema_checks, _ = frames._split(checks.request_checks(frame, multi=False))
    table = checks.TableCheck("requests", frames.dtype_rows(frame), schema_checks, "none", [])
    outcomes = {o.expectation: o for o in gx.run_table(gx_context.data_sources.add_pandas("wrong-dtype"), table)}
    assert outcomes["columns_present"].success
    dtypes = outcomes["column_dtypes"]
    assert not dtypes.success and dtypes.unexpected_count == 2
    assert "ttft_ms is str, expected float64" in dtypes.message
    assert "attempt is float64, expected int32" in dtypes.message or "attempt is float64, expected int64" in dtypes.message
    assert "server_decode_tokens" not in dtypes.message


def test_every_nullable_column_read_back_all_null_has_a_dtype_its_check_allows():
    """A table where a nullable column holds only nulls (a multi-agent run's contention when no run
    measured it): pandas' dtype for it is still one the column_dtypes check allows."""
    import pyarrow as pa

    for schema in (store.RUN_SCHEMA, store.MA_RUN_SCHEMA, store.REQUEST_SCHEMA, store.MA_REQUEST_SCHEMA):
        nullable = [f for f in schema if f.nullable]
        frame = pa.table({f.name: pa.nulls(2, f.type) for f in nullable}).to_pandas()
        for field in nullable:
            assert frames.dtype_label(frame[field.name]) in checks.allowed_dtypes(field, False), field


def test_report_sections_missing_or_empty(clean, gx_context, tmp_path):
    root, report, _ = clean
    text = report.read_text()
    head, _, rest = text.partition("## Failures")
    rest = rest[rest.index("## Recommendations"):]
    broken = tmp_path / "broken.md"
    # drop the report's Failures section and empty the appendix's single-agent table
    broken.write_text(head + rest)
    appendix = report.with_name(f"{report.stem}-appendix.md").read_text()
    results_start = appendix.index("\n## Single-agent tables\n") + 1
    spread_start = appendix.index("### Run-to-run spread")
    (tmp_path / "broken-appendix.md").write_text(appendix[:results_start] + "## Single-agent tables\n\n"
                                                 + appendix[spread_start:])
    result = validation.validate_tr(root, None, broken, context=gx_context)
    present = result.get("report", "report_sections_present")
    assert not present.success and "## Failures" in present.message
    assert [e["heading"] for e in present.unexpected_examples] == ["## Failures"]
    assert result.get("report", "report_result_tables_present").success
    tables = result.get("appendix", "report_result_tables_present")
    assert not tables.success and [e["heading"] for e in tables.unexpected_examples] == ["## Single-agent tables"]
    assert result.get("appendix", "report_sections_present").success
    assert result.get("report", "report_file_exists").success and result.get("appendix", "report_file_exists").success
    assert not any(r.table in ("run_counts", "ma_run_counts") for r in result.results)  # expected_runs=None

    missing = validation.validate_tr(root, None, tmp_path / "nope.md", context=gx_context)
    assert not missing.get("report", "report_file_exists").success
    assert "nope.md" in missing.get("report", "report_file_exists").message


def test_empty_tr_fails_only_for_having_no_runs(tmp_path, gx_context):
    result = validation.validate_tr(tmp_path / "empty", {"m|0|512|0.8": 3}, context=gx_context)
    failed = {(r.table, r.expectation) for r in result.failures}
    assert failed == {("tr", "tr_has_finished_runs"), ("run_counts", "expected_runs_per_config")}
    assert "m|0|512|0.8" in result.get("run_counts", "expected_runs_per_config").message


def test_oom_fallback_runs_count_for_the_cell_they_replace():
    import pandas as pd

    def run(num_gpu, run_index, valid, fallback_from=None):
        return {"model": "m", "num_gpu": num_gpu, "num_ctx": 2048, "temperature": 1.0, "run_index": run_index,
                "attempt": 1, "valid": valid, "fallback_from": fallback_from}

    # the cell gpu80 ran out of memory on every run; each run was retried at gpu40
    runs = pd.DataFrame([run(80, i, False) for i in range(3)] + [run(40, i, True, "gpu80_ctx2048_temp1") for i in range(3)])
    frame = validation.count_frame(runs, "single", {"m|80|2048|1": 3})
    assert frame.to_dict("records") == [{
        "config": "m|80|2048|1", "model": "m", "n_runs": 3.0, "n_valid": 3.0, "expected": 3.0,
        "run_indexes": [0, 1, 2], "missing_run_indexes": [], "measured_as": ["m|40|2048|1", "m|80|2048|1"]}]


def test_absent_kind_is_skipped_and_a_present_kind_still_fails(tmp_path, gx_context):
    """A TR without multi-agent runs: the multi-agent tables are not run but named as skipped; the
    single-agent tables, with their defects, are checked in full."""
    root = tmp_path / TR_ID
    single_runs(root, SPEC, defects=True)
    expected = {k: n for k, n in EXPECTED.items() if not validation.is_multi_key(k)}
    result = validation.validate_tr(root, expected, None, context=gx_context)
    assert {s.table for s in result.skipped} == {"ma_requests", "ma_runs", "ma_run_counts"}
    assert all("multi-agent" in s.reason for s in result.skipped)
    assert not any(r.table.startswith("ma_") for r in result.results)
    assert not result.success
    failed = {(r.table, r.expectation) for r in result.failures}
    assert failed == {(t, n) for t, n, _, _ in CAUGHT if not t.startswith("ma_")}
    skipped_rows = [r for r in validation.summary_rows(result) if r["result"] == "skipped"]
    assert {r["table"] for r in skipped_rows} == {"ma_requests", "ma_runs", "ma_run_counts"}
    data = json.loads(validation.write_validation_json(result, tmp_path / "v.json").read_text())
    assert {s["table"] for s in data["skipped"]} == {"ma_requests", "ma_runs", "ma_run_counts"}

    # expected multi-agent runs that never came: the count check still runs and fails
    missing = validation.validate_tr(root, EXPECTED, None, context=gx_context)
    assert {s.table for s in missing.skipped} == {"ma_requests", "ma_runs"}
    assert not missing.get("ma_run_counts", "expected_runs_per_config").success
