"""Files written before a column changed read back as today's (store.read_arrow), mixed in one folder
with files written since: error_kinds was a comma-joined string and is a list (of kinds; of kind and
count on load steps), and the run tables had no not_run code (their not-run rows take it from their reason)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import tests.frozen_schemas as frozen
from trbench.data import rows, store

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _run(run_id: str, **kw) -> dict:
    keys = {"tr_id": "TR", "run_id": run_id, "attempt": 1, "cell_hash": "h", "model": "m", "provider": "p",
            "backend": "openai", "instance": "i0", "instance_url": "http://x", "ttft_mode": "cold",
            "prompt_style": "chat", "run_index": 0}
    return rows.RunRow(**{**keys, "started_at": T0, "wall_s": 1.0, "n_requests": 2, "n_warmup": 0, "n_ok": 2,
                          "n_errors": 0, "min_ok_requests": 1, "valid": True, "manifest_digest": "d", **kw}).model_dump()


def _ma_run(run_id: str, **kw) -> dict:
    return rows.MaRunRow(**{"tr_id": "TR", "run_id": run_id, "attempt": 1, "cell_hash": "h", "model": "m",
                            "scenario": "s", "provider": "p", "backend": "openai", "run_index": 0, "started_at": T0,
                            "n_agents": 2, "n_requests": 4, "n_errors": 0, "valid": True, "contention_rule": "r",
                            "manifest_digest": "d", **kw}).model_dump()


def _load_step(run_id: str, **kw) -> dict:
    return rows.LoadStepRow(tr_id="TR", run_id=run_id, attempt=1, model="m", provider="p", backend="openai",
                            instance="i0", instance_url="http://x", step_index=0, step_label="c1", mode="concurrency",
                            started_at=T0, wall_s=1.0, max_tokens=8, valid=True, manifest_digest="d",
                            **kw).model_dump()


def _emb_step(run_id: str, **kw) -> dict:
    return rows.EmbeddingStepRow(tr_id="TR", run_id=run_id, attempt=1, model="m", provider="p", backend="openai",
                                 instance="i0", instance_url="http://x", batch_size=1, concurrency=1, started_at=T0,
                                 n_warmup=0, texts_name="t", texts_digest="d", n_requests=2, n_ok=2, n_errors=0,
                                 slo_ms=100.0, manifest_digest="d", **kw).model_dump()


def _old(schema: pa.Schema) -> pa.Schema:
    """A step table's schema as files were written before error_kinds was a list."""
    return schema.set(schema.get_field_index("error_kinds"), pa.field("error_kinds", pa.string()))


def _write(root: Path, table: str, row: dict, schema: pa.Schema) -> None:
    """One run's file of `table` as a writer of `schema`'s time wrote it (only the columns it had)."""
    path = store.run_file(root, table, row["model"], row["run_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{n: row.get(n) for n in schema.names}], schema=schema), path)


def _by_id(root: Path, table: str, columns: list[str] | None = None) -> dict[str, dict]:
    return {r["run_id"]: r for r in store.read_arrow(root, table, columns).to_pylist()}


def test_old_run_files_read_back_as_lists_and_codes_beside_new_ones(tmp_path):
    old = frozen.OLD_RUN_SCHEMA
    assert old.field("error_kinds").type == pa.string() and "not_run" not in old.names
    _write(tmp_path, "runs", {**_run("old_ok"), "error_kinds": None}, old)
    _write(tmp_path, "runs", {**_run("old_bad", valid=False), "error_kinds": "connect,oom"}, old)
    _write(tmp_path, "runs", {**_run("old_down", valid=False), "error_kinds": None,
                              "invalid_reason": f"{store.NOT_RUN}i0 {store.SERVER_DOWN}: health failed"}, old)
    _write(tmp_path, "runs", {**_run("old_oom", valid=False), "error_kinds": None,
                              "invalid_reason": f"{store.NOT_RUN}gpu80 ran out of memory in run old_bad"}, old)
    _write(tmp_path, "runs", {**_run("old_load", valid=False), "error_kinds": None,
                              "invalid_reason": f"{store.NOT_RUN}i0 would not load gpu80 (see run x)"}, old)
    _write(tmp_path, "runs", _run("new_bad", valid=False, error_kinds=["http_5xx", "timeout"]), store.RUN_SCHEMA)
    _write(tmp_path, "runs", _run("new_down", valid=False, not_run="server_down",
                                  invalid_reason=f"{store.NOT_RUN}i0 {store.SERVER_DOWN}: gone"), store.RUN_SCHEMA)

    table = store.read_arrow(tmp_path, "runs")
    assert table.schema.field("error_kinds").type == pa.list_(pa.string())
    assert table.schema.field("not_run").type == pa.string()
    got = {r["run_id"]: (r["error_kinds"], r["not_run"]) for r in table.to_pylist()}
    assert got == {"old_ok": ([], None), "old_bad": (["connect", "oom"], None), "old_down": ([], "server_down"),
                   "old_oom": ([], "oom_rung"), "old_load": ([], "not_loaded"),
                   "new_bad": (["http_5xx", "timeout"], None), "new_down": ([], "server_down")}
    assert {c for _, c in got.values()} - {None} == set(rows.NOT_RUN_CODES)
    # a resume measures again only the runs whose server was down, old files and new alike
    assert store.runs_to_retry(tmp_path) == {"old_down", "new_down"}
    assert store.done_run_ids(tmp_path) == set(got) - {"old_down", "new_down"}
    # the same through pandas, a projection, a filter and a limit
    frame = store.read_frame(tmp_path, "runs", ["run_id", "error_kinds"]).set_index("run_id")
    assert list(frame.loc["old_bad", "error_kinds"]) == ["connect", "oom"]
    assert store.read_arrow(tmp_path, "runs", ["run_id", "not_run"]).column_names == ["run_id", "not_run"]
    some = store.read_arrow(tmp_path, "runs", ["run_id", "error_kinds"], ds.field("valid") == False)  # noqa: E712
    assert sorted(some.column("run_id").to_pylist()) == ["new_bad", "new_down", "old_bad", "old_down", "old_load",
                                                         "old_oom"]
    assert store.read_arrow(tmp_path, "runs", ["run_id", "error_kinds"], limit=3).num_rows == 3


def test_old_multi_agent_run_files_read_back_likewise(tmp_path):
    _write(tmp_path, "ma_runs", {**_ma_run("old", valid=False), "error_kinds": "instance",
                                 "invalid_reason": f"{store.NOT_RUN}i1 {store.SERVER_DOWN}: gone"},
           frozen.OLD_MA_RUN_SCHEMA)
    _write(tmp_path, "ma_runs", _ma_run("new", error_kinds=["timeout"]), store.MA_RUN_SCHEMA)
    got = _by_id(tmp_path, "ma_runs", ["run_id", "error_kinds", "not_run"])
    assert {k: (r["error_kinds"], r["not_run"]) for k, r in got.items()} == {
        "old": (["instance"], "server_down"), "new": (["timeout"], None)}
    assert store.runs_to_retry(tmp_path, "multi") == {"old"}


def test_old_step_files_read_back_as_counted_and_plain_lists(tmp_path):
    _write(tmp_path, "load_steps", {**_load_step("old"), "error_kinds": "http_5xx:3,timeout:1"},
           _old(store.LOAD_STEP_SCHEMA))
    _write(tmp_path, "load_steps", {**_load_step("old_clean"), "error_kinds": None}, _old(store.LOAD_STEP_SCHEMA))
    _write(tmp_path, "load_steps", _load_step("new", error_kinds=[rows.ErrorCount(kind="connect", count=2)]),
           store.LOAD_STEP_SCHEMA)
    table = store.read_arrow(tmp_path, "load_steps")
    assert table.schema.field("error_kinds").type == pa.list_(pa.struct([("kind", pa.string()), ("count", pa.int32())]))
    assert {r["run_id"]: r["error_kinds"] for r in table.to_pylist()} == {
        "old": [{"kind": "http_5xx", "count": 3}, {"kind": "timeout", "count": 1}], "old_clean": [],
        "new": [{"kind": "connect", "count": 2}]}

    _write(tmp_path, "emb_steps", {**_emb_step("old"), "error_kinds": "connect,http_5xx"}, _old(store.EMB_STEP_SCHEMA))
    _write(tmp_path, "emb_steps", _emb_step("new"), store.EMB_STEP_SCHEMA)
    assert {k: r["error_kinds"] for k, r in _by_id(tmp_path, "emb_steps").items()} == {
        "old": ["connect", "http_5xx"], "new": []}


def test_a_folder_of_todays_files_is_read_in_one_scan(tmp_path, monkeypatch):
    """Only a read that meets a file of an old type pays for the migration."""
    for i in range(3):
        _write(tmp_path, "runs", _run(f"r{i}", error_kinds=["oom"]), store.RUN_SCHEMA)

    def refuse(*_a, **_k):
        raise AssertionError("a folder without old files was split")

    monkeypatch.setattr(store, "_scan_mixed", refuse)
    assert [r["error_kinds"] for r in _by_id(tmp_path, "runs").values()] == [["oom"]] * 3


def test_a_failing_read_of_another_cause_is_not_hidden(tmp_path):
    _write(tmp_path, "runs", _run("new"), store.RUN_SCHEMA)
    with pytest.raises(pa.ArrowNotImplementedError, match="add_checked"):
        store.read_arrow(tmp_path, "runs", ["run_id"], ds.field("run_id") + 1 == 2)


def test_step_files_from_before_telemetry_and_stopping_read_those_columns_as_null(tmp_path):
    added = [*store.ENERGY_FIELDS, *(store.LOAD_STEP_SCHEMA.field(n) for n in
                                     ("stop_below_good_pct", "stop_queue_growth", "stop_reason", "n_ended_early",
                                      "output_share_p50", "output_share_min"))]
    before = pa.schema([f for f in store.LOAD_STEP_SCHEMA if f.name not in {a.name for a in added}])
    _write(tmp_path, "load_steps", _load_step("old"), before)
    _write(tmp_path, "load_steps", _load_step("new", energy_j=12.5, stop_reason="over-saturated: x",
                                              output_share_min=0.25), store.LOAD_STEP_SCHEMA)
    got = _by_id(tmp_path, "load_steps")
    assert all(got["old"][a.name] is None for a in added)
    assert (got["new"]["energy_j"], got["new"]["stop_reason"]) == (12.5, "over-saturated: x")
    assert got["new"]["output_share_min"] == 0.25

    emb_added = {"energy_j", "energy_method", "energy_window_s", "j_per_text", "j_per_input_token",
                 "gpu_power_w_mean", "gpu_mem_used_mib_max", "gpu_util_pct_mean", "cpu_pct_mean",
                 "server_rss_mib_max", "telemetry_note"}
    assert emb_added <= set(store.EMB_STEP_SCHEMA.names)
    _write(tmp_path, "emb_steps", _emb_step("old"),
           pa.schema([f for f in store.EMB_STEP_SCHEMA if f.name not in emb_added]))
    _write(tmp_path, "emb_steps", _emb_step("new", j_per_text=0.5), store.EMB_STEP_SCHEMA)
    got = _by_id(tmp_path, "emb_steps")
    assert all(got["old"][n] is None for n in emb_added) and got["new"]["j_per_text"] == 0.5
