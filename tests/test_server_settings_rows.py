"""The server_settings column of run rows: files from before it read back as '' (no setting), and
cells that differ only in a server setting are never pooled (outlier groups, run counts)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trbench.data import store
from trbench.measure import outliers
from trbench.validation.frames import count_frame

STARTED = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def _run(run_id: str, run_index: int, settings: str | None) -> dict:
    row = {"tr_id": "t", "run_id": run_id, "attempt": 1, "cell_hash": f"h{settings}", "model": "m",
           "provider": "embedded", "backend": "openai", "instance": "embedded-0", "instance_url": "http://x:1",
           "num_gpu": 0, "num_ctx": 512, "temperature": 0.8, "ttft_mode": "cold", "prompt_style": "chat",
           "run_index": run_index, "harness": "python", "started_at": STARTED, "wall_s": 1.0, "n_requests": 1,
           "n_warmup": 0, "n_ok": 1, "n_errors": 0, "min_ok_requests": 1, "valid": True, "manifest_digest": "d"}
    return row if settings is None else {**row, "server_settings": settings}


def test_run_files_from_before_the_column_read_back_with_no_server_setting(tmp_path):
    old_schema = pa.schema([f for f in store.RUN_SCHEMA if f.name != "server_settings"])
    row = _run("m_gpu0_ctx512_temp0.8_r00_a1", 0, None)
    path = store.run_file(tmp_path, "runs", "m", row["run_id"])
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), path)
    assert store.read_frame(tmp_path, "runs")["server_settings"].tolist() == [""]
    assert count_frame(store.read_frame(tmp_path, "runs"), "single", {})["config"].tolist() == ["m|0|512|0.8"]


def test_cells_that_differ_only_in_a_server_setting_are_grouped_apart():
    # four runs at 100 tok/s with flash attention on, three at 60 with it off: pooled, the slow ones
    # would be outliers; each setting against its own runs, none is
    rows = [{**_run(f"{s}{i}", i, s), "decode_tps_mean": v}
            for s, values in (("fa1", [100.0] * 4), ("fa0", [60.0] * 3)) for i, v in enumerate(values)]
    flags = outliers.flags_frame(outliers.compute_flags(pd.DataFrame(rows), "single"))
    assert not flags["flagged"].any()
    assert set(flags["config"]) == {"m|0|512|0.8|fa1", "m|0|512|0.8|fa0"}
    counts = count_frame(pd.DataFrame(rows), "single", {"m|0|512|0.8|fa1": 4, "m|0|512|0.8|fa0": 3})
    assert sorted(zip(counts["config"], counts["n_runs"])) == [("m|0|512|0.8|fa0", 3), ("m|0|512|0.8|fa1", 4)]
