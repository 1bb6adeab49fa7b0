"""The harness as an axis of one TR run: planning, keys, stored columns, outlier groups,
and the report's harness section (four-column winner matrix, overhead table), on planted Parquet rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trbench.data.environment import Manifest
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.data.cells import multi_key, single_key, split_harness
from trbench.measure import outliers
from trbench.validation.frames import count_frame, expected_runs_for
from trbench.report import build_report
from trbench.report.cross_model import Estimate
from trbench.report.harness import NONE, verdict
from trbench.report.render import render_appendix_markdown
from trbench.run.plan import plan_runs

TR_ID = "TRaxis"
STARTED = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
MODELS = ["a-model", "b-model"]
CFG = (0, 512, 0.8)
RUNS, REQUESTS = 3, 6
# per harness: the client CPU per request (s) it spends; TTFT and decode rates are drawn alike for both
CPU_S = {"python": 0.004, "rust": 0.0005}
DECODE = {"a-model": 50.0, "b-model": 80.0}


class _Inst:
    name, url = "embedded-0", "http://127.0.0.1:18850"


def _spec(**extra):
    return parse_spec({"tr_id": TR_ID, "models": MODELS, "runs": 2, "grid": {"num_ctx": [512]},
                       "harness": ["python", "rust"], **extra})


# --- planning, keys ---------------------------------------------------------------------------------


def test_both_harnesses_plan_twin_runs_interleaved():
    spec = _spec()
    plans = plan_runs(spec, type("P", (), {"digest": "d"})(), [_Inst()])
    a = [p for p in plans if p.cell.model == "a-model"]
    assert [(p.run_index, p.harness) for p in a] == [(0, "python"), (0, "rust"), (1, "python"), (1, "rust")]
    # python keeps the run ids and hashes of TR runs from before the axis; rust gets its own
    assert a[0].run_id == "a-model_gpu0_ctx512_temp0.8_r00_a1" and a[1].run_id == "a-model_gpu0_ctx512_temp0.8_rust_r00_a1"
    assert a[0].cell_hash == spec.cell_hash(a[0].cell, "d") != a[1].cell_hash
    assert len({p.run_id for p in plans}) == len(plans) == 8


def test_config_keys_carry_a_harness_other_than_python():
    assert single_key("m", 0, 512, 0.8) == single_key("m", 0, 512, 0.8, "python") == "m|0|512|0.8"
    assert single_key("m", 0, 512, 0.8, "rust") == "m|0|512|0.8|rust"
    assert multi_key("m", "chimera_homo", "rust") == "m|chimera_homo|rust"
    assert split_harness("m|chimera_homo|rust") == ("m|chimera_homo", "rust")
    assert split_harness("m|0|512|0.8") == ("m|0|512|0.8", "python")
    spec = _spec(multi_agent={"scenarios": ["chimera_homo"], "runs": 2})
    assert set(expected_runs_for(spec)) == {"a-model|0|512|0.8", "a-model|0|512|0.8|rust", "b-model|0|512|0.8",
                                            "b-model|0|512|0.8|rust", "a-model|chimera_homo",
                                            "a-model|chimera_homo|rust", "b-model|chimera_homo",
                                            "b-model|chimera_homo|rust"}


# --- planted TR: python and rust twins --------------------------------------------------------------


def _keys(model: str, harness: str, run_index: int) -> dict:
    tag = "" if harness == "python" else f"_{harness}"
    return {"tr_id": TR_ID, "run_id": f"{model}_gpu0_ctx512_temp0.8{tag}_r{run_index:02d}_a1", "attempt": 1,
            "cell_hash": f"h-{model}-{harness}", "model": model, "provider": "embedded", "backend": "openai",
            "instance": "embedded-0", "instance_url": "http://127.0.0.1:18850", "num_gpu": CFG[0], "num_ctx": CFG[1],
            "temperature": CFG[2], "ttft_mode": "cold", "prompt_style": "chat", "run_index": run_index,
            "harness": harness}


def _plant_single(root: Path, rng: np.random.Generator) -> None:
    for model in MODELS:
        for run_index in range(RUNS):
            for harness in ("python", "rust"):
                keys = _keys(model, harness, run_index)
                rows = [{**keys, "request_index": i, "is_warmup": False, "prompt_id": f"p{i}", "sent_at": STARTED,
                         "status": "ok", "cache_target": "cold", "cache_state": "cold",
                         "ttft_ms": float(rng.uniform(140, 160)), "e2e_ms": float(rng.uniform(900, 1100)),
                         "decode_tps": DECODE[model] + float(rng.normal(0, 0.5)),
                         "decode_tps_client": DECODE[model] + float(rng.normal(0, 0.5)),
                         "client_cpu_s": CPU_S[harness] * float(rng.uniform(0.9, 1.1)), "output_tokens": 32}
                        for i in range(REQUESTS)]
                run = {**keys, "started_at": STARTED, "wall_s": 1.0, "n_requests": REQUESTS, "n_warmup": 0,
                       "n_ok": REQUESTS, "n_errors": 0, "min_ok_requests": REQUESTS, "valid": True,
                       "decode_tps_mean": DECODE[model], "manifest_digest": "d"}
                store.write_run(root, run, rows, Manifest())


def _plant_multi(root: Path) -> None:
    # b-model wins the multi-agent efficiency with python, a-model with rust: the columns differ
    efficiency = {("a-model", "python"): 60.0, ("b-model", "python"): 90.0, ("a-model", "rust"): 95.0,
                  ("b-model", "rust"): 55.0}
    for (model, harness), eff in efficiency.items():
        for run_index in range(RUNS):
            tag = "" if harness == "python" else f"_{harness}"
            run = {"tr_id": TR_ID, "run_id": f"{model}_chimera_homo{tag}_r{run_index:02d}_a1", "attempt": 1,
                   "cell_hash": f"m-{model}-{harness}", "model": model, "scenario": "chimera_homo",
                   "provider": "embedded", "backend": "openai", "run_index": run_index, "harness": harness,
                   "started_at": STARTED, "n_agents": 2, "n_requests": 4, "n_errors": 0, "valid": True,
                   "contention_rule": "r", "manifest_digest": "d", "speedup": eff / 50 + run_index * 0.01,
                   "efficiency_pct": eff + run_index * 0.5, "concurrent_wall_s": 1.0, "sequential_wall_s": 1.8}
            store.write_run(root, run, [], Manifest(), kind="multi")


@pytest.fixture(scope="module")
def tr(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("axis") / TR_ID
    _plant_single(root, np.random.default_rng(3))
    _plant_multi(root)
    return root


@pytest.fixture(scope="module")
def report(tr):
    return build_report(tr)


def test_tables_carry_the_harness_column(tr):
    for frame in (store.read_frame(tr, "runs"), store.read_frame(tr, "requests"), store.read_frame(tr, "ma_runs")):
        assert set(frame["harness"]) == {"python", "rust"}
    assert store.read_frame(tr, "requests")["client_cpu_s"].notna().all()


def test_files_from_before_the_axis_read_as_python(tmp_path):
    """A run file written without the harness column (the schema before the harness axis) reads back as python."""
    old_schema = pa.schema([f for f in store.RUN_SCHEMA if f.name != "harness"])
    keys = {k: v for k, v in _keys("old", "python", 0).items() if k != "harness"}
    row = {**keys, "started_at": STARTED, "wall_s": 1.0, "n_requests": 1, "n_warmup": 0, "n_ok": 1, "n_errors": 0,
           "min_ok_requests": 1, "valid": True, "manifest_digest": "d"}
    path = store.run_file(tmp_path, "runs", "old", row["run_id"])
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), path)
    assert store.read_frame(tmp_path, "runs")["harness"].tolist() == ["python"]
    assert store.read_frame(tmp_path, "runs", ["run_id", "harness"])["harness"].tolist() == ["python"]


def test_run_counts_keep_harnesses_apart(tr):
    counts = count_frame(store.read_frame(tr, "runs"), "single", {})
    assert sorted(counts["config"]) == ["a-model|0|512|0.8", "a-model|0|512|0.8|rust", "b-model|0|512|0.8",
                                        "b-model|0|512|0.8|rust"]
    assert counts["n_runs"].tolist() == [RUNS] * 4


def test_outlier_groups_are_per_harness():
    """Four python runs at 100 tok/s and three rust runs at 60: pooled, the rust runs would be outliers;
    each harness against its own runs, none is."""
    rows = [{"model": "m", "num_gpu": 0, "num_ctx": 512, "temperature": 0.8, "harness": h, "tr_id": TR_ID,
             "run_id": f"{h}{i}", "attempt": 1, "run_index": i, "cell_hash": h, "valid": True, "decode_tps_mean": v}
            for h, values in (("python", [100.0] * 4), ("rust", [60.0] * 3)) for i, v in enumerate(values)]
    flags = outliers.flags_frame(outliers.compute_flags(pd.DataFrame(rows), "single"))
    assert not flags["flagged"].any()
    assert set(flags["config"]) == {"m|0|512|0.8", "m|0|512|0.8|rust"}
    pooled = outliers.flags_frame(outliers.compute_flags(pd.DataFrame(rows).assign(harness="python"), "single"))
    assert pooled["flagged"].sum() == 3  # what mixing the harnesses would have done


# --- the report -------------------------------------------------------------------------------------


def test_main_sections_show_one_harness(report):
    assert [c.model for c in report.cells] == ["a-model", "b-model"]
    assert all(c.runs == RUNS and c.n_requests == RUNS * REQUESTS for c in report.cells)
    assert all(r.valid_runs == RUNS for r in report.multi_agent.results)


def test_winner_matrix_has_seed_003s_four_columns(report):
    h = report.harness
    assert h.columns == ["single-agent python", "single-agent rust", "multi-agent python", "multi-agent rust"]
    by = {(r.scenario, r.config): r.winners for r in h.matrix}
    decode = by[("decode tok/s", "gpu0_ctx512_temp0.8")]
    assert decode == {"single-agent python": "b-model", "single-agent rust": "b-model"}
    eff = by[("efficiency chimera_homo", "")]
    assert eff == {"multi-agent python": "b-model", "multi-agent rust": "a-model"}


def test_overhead_table_says_none_inside_the_intervals(report):
    rows = {(r.model, r.metric): r for r in report.harness.overhead}
    assert {m for _, m in rows} == {"TTFT cold", "client decode rate", "client CPU per request"}  # no cached state
    for model in MODELS:
        assert rows[(model, "TTFT cold")].verdict == NONE  # both drawn from 140-160 ms
        assert rows[(model, "client decode rate")].verdict == NONE
        cpu = rows[(model, "client CPU per request")]
        assert cpu.estimates["python"].value == pytest.approx(4.0, rel=0.1)
        assert cpu.estimates["rust"].value == pytest.approx(0.5, rel=0.1)
        diff = cpu.estimates["rust"].value - cpu.estimates["python"].value
        assert cpu.difference == pytest.approx(diff) and diff < -3
        assert cpu.verdict == f"{diff:+.2f} ms ({diff / cpu.estimates['python'].value * 100:+.0f} %)"
        assert cpu.estimates["python"].n == RUNS * REQUESTS


def test_report_text_shows_the_matrix_and_the_overhead(report):
    assert report.harness.run_counts == {h: "12 valid of 12 runs" for h in ("python", "rust")}  # 6 single + 6 multi each
    assert report.harness.other_invalid == []
    text = render_appendix_markdown(report)  # the winner tables are the appendix's
    assert "### Winner by scenario and harness" in text and "### Harness overhead" in text
    assert "| single-agent Python | single-agent Rust | multi-agent Python | multi-agent Rust |" in text
    assert "| a-model | gpu0_ctx512_temp0.8 | TTFT cold | ms |" in text


def test_verdict_rule():
    inside = verdict(Estimate(value=10.0, ci=(9.0, 11.0)), Estimate(value=10.8, ci=(10.5, 12.0)), "ms", 1)
    assert inside == (pytest.approx(0.8), NONE)
    apart = verdict(Estimate(value=10.0, ci=(9.0, 11.0)), Estimate(value=15.0, ci=(14.0, 16.0)), "ms", 1)
    assert apart == (pytest.approx(5.0), "+5.0 ms (+50 %)")
    assert verdict(Estimate(value=None), Estimate(value=1.0, ci=(0.5, 1.5)), "ms", 1) == (None, "n/a")
