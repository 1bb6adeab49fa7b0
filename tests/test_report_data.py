"""The report reads a projection of the tables (trbench.report.data): every run column its modules
name is in the projection, and the projected request columns give the same rows per run as a full read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from trbench.data import store
from trbench.report.data import REQUEST_COLUMNS, RUN_COLUMNS, RequestColumns

REPORT_MODULES = ["report/build.py", "report/models.py", "report/methodology.py", "report/cross_model.py", "report/reruns.py",
                  "report/findings.py", "report/tables.py", "report/plots.py", "report/regression.py"]
TRBENCH = Path(__file__).resolve().parent.parent / "trbench"


def test_every_run_column_the_report_names_is_read():
    src = "".join((TRBENCH / m).read_text() for m in REPORT_MODULES)
    named = {f.name for f in store.RUN_SCHEMA if re.search(rf"[\"']{re.escape(f.name)}[\"']", src)}
    assert named - set(RUN_COLUMNS) == set()
    assert set(RUN_COLUMNS) <= {f.name for f in store.RUN_SCHEMA}
    assert set(REQUEST_COLUMNS) <= {f.name for f in store.REQUEST_SCHEMA}


def test_rows_per_run_match_a_full_read(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).parent.parent / "bench" / "scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    root = tmp_path / "TRrows"
    scale.build(root, 3 * scale.ROWS_PER_RUN)  # the third run has a failed request
    full = store.read_frame(root, "requests")
    reqs = RequestColumns.read(root)
    assert reqs.n == len(full)
    for run_id, frame in full.groupby("run_id"):
        rows = reqs.rows([run_id])
        assert rows.tolist() == frame.index.tolist()
        np.testing.assert_array_equal(reqs.values["ttft_ms"][rows], frame["ttft_ms"].to_numpy(dtype=float))
    ok = (full["status"] == "ok").to_numpy()
    assert (reqs.ok == ok).all()
    failed = reqs.failed()
    assert len(failed) == (~ok).sum() == 1 and set(failed["error_kind"]) == {"timeout"}
