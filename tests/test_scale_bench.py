"""bench/scale.py's synthetic TR is a TR trbench reads back in its real schema: the files carry
storage's schemas, the validation passes every error-severity expectation, and the report reads it.
(The timings themselves live in the bench's output, not here.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from trbench.data import store
from trbench.validation import validate as validation
from trbench.report import build_report

BENCH = Path(__file__).resolve().parent.parent / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic(scale, tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "TRscaletest"
    expected = scale.build(root, 3 * scale.ROWS_PER_RUN)
    return root, expected


def test_files_carry_the_storage_schemas(synthetic):
    root, _ = synthetic
    requests = sorted((root / "requests").glob("model_slug=*/*.parquet"))
    runs = sorted((root / "runs").glob("model_slug=*/*.parquet"))
    assert len(requests) == len(runs) == 3
    for path in requests:
        assert pq.read_schema(path).remove_metadata() == store.REQUEST_SCHEMA.remove_metadata()
        assert (store.read_manifest(path).spec or {})["ttft"] == "both"
    for path in runs:
        assert pq.read_schema(path).remove_metadata() == store.RUN_SCHEMA.remove_metadata()


def test_rows_read_back_as_a_ttft_both_tr(synthetic, scale):
    root, _ = synthetic
    req, runs = store.read_frame(root, "requests"), store.read_frame(root, "runs")
    assert len(req) == 3 * scale.ROWS_PER_RUN and len(runs) == 3
    measured = req[~req["is_warmup"].astype(bool) & (req["status"] == "ok")]
    targets = measured["cache_target"].value_counts()
    assert abs(targets["cold"] - targets["cached"]) <= 3  # half cold, half cached (bar the odd failure)
    cold = measured.loc[measured["cache_state"] == "cold", "ttft_ms"].median()
    cached = measured.loc[measured["cache_state"] == "cached", "ttft_ms"].median()
    assert 7 < cold / cached < 13  # tenfold apart
    # the run rows are the aggregates of their requests
    for run in runs.itertuples():
        mine = req[(req["run_id"] == run.run_id) & ~req["is_warmup"].astype(bool)]
        ok = mine[mine["status"] == "ok"]
        assert run.n_requests == len(mine) and run.n_ok == len(ok)
        assert run.decode_tps_p50 == pytest.approx(np.percentile(ok["decode_tps"], 50))
        assert run.n_cold == (ok["cache_state"] == "cold").sum()


def test_validation_passes_and_the_report_reads_it(synthetic):
    root, expected = synthetic
    result = validation.validate_tr(root, expected)
    assert [r.message for r in result.failures] == []
    assert result.get("requests", "column_dtypes").success and result.get("runs", "run_has_its_requests").success
    data = build_report(root)
    assert data.n_request_rows == 3 * 625
    assert all(c.ttft_cold_n and c.ttft_cached_n for c in data.cells)
    assert data.samples and data.samples[0].text


def test_plan_has_reruns_and_invalid_runs(scale):
    plan = scale.plan_runs(1600)
    assert len(plan) == 1600
    assert sum(attempt == 2 for *_, attempt, _ in plan) == 16
    assert sum(invalid for *_, invalid in plan) == 2
    reruns = {(m, c, ri) for m, c, ri, attempt, _ in plan if attempt == 2}
    assert reruns <= {(m, c, ri) for m, c, ri, attempt, _ in plan if attempt == 1}
