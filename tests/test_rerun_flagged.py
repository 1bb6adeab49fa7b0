"""A planted outlier run is flagged, rerun_flagged runs its config again as attempt 2 on a real
embedded server, old rows are kept, and the report shows both attempts."""

from __future__ import annotations

import pyarrow.parquet as pq

from flows.rerun_flagged import rerun_flagged
from flows.tr import tr
from trbench.measure import outliers
from trbench.data import store


def plant_slow_run(root, run_id: str) -> None:
    path = next((root / "runs").rglob(f"{run_id}.parquet"))
    table = pq.read_table(path)
    row = table.to_pylist()[0]
    row["decode_tps_mean"] = row["decode_tps_mean"] / 10  # a run ten times slower than its siblings
    store.write_table_atomic(path, table.from_pylist([row], schema=table.schema))


def test_planted_outlier_is_flagged_rerun_and_reported(prefect_api, tmp_path, free_ports):
    port = free_ports(1)[0]
    spec = {"tr_id": "rerun", "models": ["smollm2:135m"], "ports": [port], "grid": {"num_ctx": [512]}, "runs": 4,
            "requests_per_run": 2, "max_tokens": 12, "seed": 4}
    assert tr(spec=spec, output_dir=str(tmp_path), return_state=True).is_completed()
    root = tmp_path / "rerun"
    victim = store.read_frame(root, "runs").sort_values("run_index")["run_id"].iloc[1]
    plant_slow_run(root, victim)
    flags = outliers.flag_outliers(root)
    outliers.write_flags(root, flags)
    hit = flags[flags["flagged"]]
    assert victim in set(hit.loc[hit["metric"] == "decode_tps_mean", "run_id"])
    assert [c.num_ctx for c in outliers.flagged_configs(flags)] == [512]

    state = rerun_flagged(tr_id="rerun", output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    runs = store.read_frame(root, "runs")
    assert sorted(runs["attempt"].tolist()) == [1] * 4 + [2] * 4  # old rows kept, a full new attempt
    assert victim in set(runs["run_id"])
    report = (root / "report" / "rerun.md").read_text()
    assert "Re-run configs" in report and "| 1, 2 |" in report
    assert "| smollm2:135m gpu0_ctx512_temp0.8 | decode tok/s | 1, 2 |" in report  # which config, what changed
    # the new attempt is what counts now: the planted run no longer drags the config down
    latest = outliers.flag_outliers(root)
    assert victim not in set(latest["run_id"])

    # a kill -9 in the middle of that rerun would leave half of attempt 2 and the old flags:
    # the same rerun again finishes attempt 2 instead of starting attempt 3
    outliers.write_flags(root, flags)
    second = store.read_frame(root, "runs").query("attempt == 2").sort_values("run_index")["run_id"].tolist()
    for run_id in second[2:]:
        for table in ("runs", "requests"):
            next((root / table).rglob(f"{run_id}.parquet")).unlink()
    kept = {r: next((root / "runs").rglob(f"{r}.parquet")).stat().st_mtime_ns for r in second[:2]}
    state = rerun_flagged(tr_id="rerun", output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    runs = store.read_frame(root, "runs")
    assert sorted(runs["attempt"].tolist()) == [1] * 4 + [2] * 4 and set(second) <= set(runs["run_id"])
    assert {r: next((root / "runs").rglob(f"{r}.parquet")).stat().st_mtime_ns for r in second[:2]} == kept


def test_nothing_flagged_means_nothing_to_run(prefect_api, tmp_path, free_ports):
    port = free_ports(1)[0]
    spec = {"tr_id": "calm", "models": ["smollm2:135m"], "ports": [port], "grid": {"num_ctx": [512]}, "runs": 2,
            "requests_per_run": 1, "max_tokens": 8}
    assert tr(spec=spec, output_dir=str(tmp_path), return_state=True).is_completed()
    state = rerun_flagged(tr_id="calm", output_dir=str(tmp_path), return_state=True)
    assert state.is_completed() and "nothing to run again" in state.message
