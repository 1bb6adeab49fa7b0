"""MAD outlier flags (trbench.measure.outliers) on planted run rows with hand-computed medians and MADs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from trbench.data.environment import Manifest
from trbench.config.spec import OutlierRule
from trbench.measure import metrics
from trbench.measure import outliers
from trbench.data import store

TR_ID = "TRout"
STARTED = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def single(root: Path, model: str, ctx: int, run_index: int, tps: float, ttft: float, attempt: int = 1,
           valid: bool = True) -> str:
    run_id = f"{model}_ctx{ctx}_r{run_index:02d}_a{attempt}"
    row = {"tr_id": TR_ID, "run_id": run_id, "attempt": attempt, "cell_hash": f"h-{model}-{ctx}", "model": model,
           "provider": "embedded", "backend": "openai", "num_gpu": 0, "num_ctx": ctx, "temperature": 0.8,
           "run_index": run_index, "started_at": STARTED, "n_requests": 3, "n_ok": 3 if valid else 0,
           "n_errors": 0 if valid else 3, "min_ok_requests": 3, "valid": valid,
           "invalid_reason": None if valid else "planted", "decode_tps_mean": tps, "ttft_cold_ms_p50": ttft}
    store.write_run(root, row, [], Manifest())
    return run_id


def multi(root: Path, model: str, scenario: str, run_index: int, speedup: float, c_tps: float, i_tps: float,
          c_ttft: float = 100.0, i_ttft: float = 110.0) -> str:
    run_id = f"{model}_{scenario}_r{run_index:02d}_a1"
    row = {"tr_id": TR_ID, "run_id": run_id, "attempt": 1, "cell_hash": f"h-{model}-{scenario}", "model": model,
           "scenario": scenario, "provider": "embedded", "backend": "openai", "run_index": run_index,
           "started_at": STARTED, "n_agents": 2, "speedup": speedup, "efficiency_pct": speedup / 2 * 100,
           "valid": True, "collector_concurrent_decode_tps": c_tps, "insight_concurrent_decode_tps": i_tps,
           "collector_concurrent_ttft_ms": c_ttft, "insight_concurrent_ttft_ms": i_ttft}
    store.write_run(root, row, [], Manifest(), kind="multi")
    return run_id


# config A: a planted slow run (60 tok/s) among four at ~100; TTFT spread exactly at the threshold
A_TPS = [100.0, 101.0, 99.0, 100.5, 60.0]
A_TTFT = [50.0, 51.0, 49.0, 50.5, 50.0]
# config B: MAD == 0 (three identical runs); one run 0.5 % off, one 12.5 % off
B_TPS = [80.0, 80.0, 80.0, 80.4, 70.0]
# config C: a superseded attempt and an invalid run, both with wild values, are left out
# multi: one run's speedup collapses
M_SPEEDUP = [1.80, 1.82, 1.79, 1.20]


@pytest.fixture(scope="module")
def tr(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("out") / TR_ID
    for i, (tps, ttft) in enumerate(zip(A_TPS, A_TTFT)):
        single(root, "a", 512, i, tps, ttft)
    for i, tps in enumerate(B_TPS):
        single(root, "b", 512, i, tps, 40.0)
    single(root, "c", 1024, 0, 10.0, 5000.0, attempt=1)  # superseded by attempt 2
    single(root, "c", 1024, 0, 100.0, 40.0, attempt=2)
    single(root, "c", 1024, 1, 5.0, 9000.0, valid=False)  # latest attempt, invalid
    single(root, "c", 1024, 2, 101.0, 41.0)
    single(root, "c", 1024, 3, 99.0, 39.0)
    single(root, "d", 512, 0, 100.0, 40.0)  # two runs only: never flagged
    single(root, "d", 512, 1, 50.0, 400.0)
    for i, s in enumerate(M_SPEEDUP):
        multi(root, "a", "chimera_homo", i, s, 60.0 + i * 0.1, 58.0 + i * 0.1)
    return root


@pytest.fixture(scope="module")
def flags(tr):
    # a 1 % floor on every metric, so that the hand-computed MADs below decide (the default floors are larger)
    return outliers.flag_outliers(tr, OutlierRule(min_rel_mad=0.01, min_rel_mad_ttft=0.01, min_rel_mad_concurrent=0.01))


def rows(flags, config: str, metric: str):
    sel = flags[(flags["config"] == config) & (flags["metric"] == metric)].sort_values("run_index")
    assert len(sel) > 0
    return sel


def test_planted_slow_run_is_flagged_with_its_median_mad_threshold(flags):
    r = rows(flags, "a|0|512|0.8", "decode_tps_mean")
    # sorted 60, 99, 100, 100.5, 101 -> median 100; |dev| 0, 1, 1, 0.5, 40 -> MAD 1; floor 1 % x 100 = 1
    assert set(r["median"]) == {100.0} and set(r["mad"]) == {1.0} and set(r["threshold"]) == {2.0}
    assert set(r["k"]) == {2.0} and set(r["n_runs"]) == {5}
    assert r["flagged"].tolist() == [False, False, False, False, True]
    flagged = r[r["flagged"]].iloc[0]
    assert flagged["run_id"] == "a_ctx512_r04_a1" and flagged["value"] == 60.0 and flagged["deviation"] == -40.0


def test_value_exactly_at_the_threshold_is_not_flagged(flags):
    r = rows(flags, "a|0|512|0.8", "ttft_cold_ms_p50")
    # median 50; |dev| 0, 1, 1, 0.5, 0 -> MAD 0.5, floor 0.5 -> threshold 1.0; 49 and 51 are exactly at it
    assert set(r["median"]) == {50.0} and set(r["mad"]) == {0.5} and set(r["threshold"]) == {1.0}
    assert not r["flagged"].any()


def test_mad_zero_uses_the_relative_floor(flags, tr):
    r = rows(flags, "b|0|512|0.8", "decode_tps_mean")
    assert set(r["mad"]) == {0.0} and r["scale"].tolist() == pytest.approx([0.8] * 5)
    assert r["threshold"].tolist() == pytest.approx([1.6] * 5)
    assert r["flagged"].tolist() == [False, False, False, False, True]  # 80.4 is 0.5 % off: noise; 70 is not
    # the plain rule (no floor): threshold 0, every value off the median is flagged
    plain = outliers.flag_outliers(tr, OutlierRule(min_rel_mad=0.0, min_rel_mad_ttft=0.0, min_rel_mad_concurrent=0.0))
    p = rows(plain, "b|0|512|0.8", "decode_tps_mean")
    assert set(p["threshold"]) == {0.0}
    assert p["flagged"].tolist() == [False, False, False, True, True]
    # identical values everywhere (TTFT 40 in every run of b): nothing to flag either way
    assert not rows(plain, "b|0|512|0.8", "ttft_cold_ms_p50")["flagged"].any()


def test_default_floor_flags_only_runs_more_than_10_percent_off(tr):
    rule = OutlierRule()
    assert (rule.k, rule.min_rel_mad) == (2.0, 0.05) and outliers.DEFAULT_RULE == rule  # the spec's defaults
    default = outliers.flag_outliers(tr)
    b = rows(default, "b|0|512|0.8", "decode_tps_mean")
    assert b["threshold"].tolist() == pytest.approx([8.0] * 5)  # 2 x 5 % of 80
    assert set(b["floor"]) == {0.05}
    assert b["flagged"].tolist() == [False, False, False, False, True]  # 70 is 12.5 % off
    a = rows(default, "a|0|512|0.8", "ttft_cold_ms_p50")
    assert not a["flagged"].any()  # 2 % off: noise


def single_ttft(root: Path, model: str, run_index: int, tps: float, cold: float, cached: float) -> None:
    store.write_run(root, {"tr_id": TR_ID, "run_id": f"{model}_r{run_index:02d}", "attempt": 1, "cell_hash": model,
                           "model": model, "provider": "embedded", "backend": "openai", "num_gpu": 0, "num_ctx": 512,
                           "temperature": 0.8, "run_index": run_index, "started_at": STARTED, "n_requests": 8,
                           "n_ok": 8, "n_errors": 0, "min_ok_requests": 3, "valid": True, "invalid_reason": None,
                           "decode_tps_mean": tps, "ttft_cold_ms_p50": cold, "ttft_cached_ms_p50": cached}, [], Manifest())


def test_ttft_has_its_own_floor(tmp_path):
    """TTFT of a cached prefill varies by tens of per cent between healthy runs on a busy CPU: a run 10-25 %
    off its TTFT median is not an outlier, while one 50 % slower is; decode keeps the tighter floor."""
    root = tmp_path / TR_ID
    # healthy: cached TTFT 38.6, 35.9, 42.5 ms (42.5 is 10.1 % over the median, past a 10 % threshold);
    # cold TTFT 25 % over its median
    for i, (tps, cold, cached) in enumerate([(60.0, 400.0, 38.6), (61.0, 420.0, 35.9), (59.5, 525.0, 42.5)]):
        single_ttft(root, "calm", i, tps, cold, cached)
    # one run 50 % slower on cached TTFT, another model's run 20 % slower on decode
    for i, (tps, cold, cached) in enumerate([(60.0, 400.0, 38.6), (61.0, 410.0, 38.0), (59.5, 405.0, 57.9)]):
        single_ttft(root, "slow-ttft", i, tps, cold, cached)
    for i, (tps, cold, cached) in enumerate([(60.0, 400.0, 38.6), (61.0, 410.0, 38.0), (48.0, 405.0, 39.0)]):
        single_ttft(root, "slow-decode", i, tps, cold, cached)
    flags = outliers.flag_outliers(root)
    assert not flags.loc[flags["model"] == "calm", "flagged"].any()
    ttft = rows(flags, "slow-ttft|0|512|0.8", "ttft_cached_ms_p50")
    assert set(ttft["floor"]) == {OutlierRule().min_rel_mad_ttft}
    assert ttft["flagged"].tolist() == [False, False, True]
    assert rows(flags, "slow-decode|0|512|0.8", "decode_tps_mean")["flagged"].tolist() == [False, False, True]
    assert [c.model for c in outliers.flagged_configs(flags)] == ["slow-decode", "slow-ttft"]
    # the floor is the spec's: one floor for every metric flags the healthy config's 10 % TTFT jitter
    one_floor = outliers.flag_outliers(root, OutlierRule(min_rel_mad_ttft=0.05, min_rel_mad_concurrent=0.05))
    assert one_floor.loc[one_floor["model"] == "calm", "flagged"].any()


def test_every_cache_state_is_flagged_on_its_own():
    assert outliers.SINGLE_METRICS == ["decode_tps_mean", *[f"ttft_{s}_ms_p50" for s in metrics.CACHE_STATES]]
    assert all(outliers.is_ttft(m) for m in [*outliers.SINGLE_METRICS[1:], *outliers.MULTI_METRICS[3:]])
    assert not any(outliers.is_ttft(m) for m in ["decode_tps_mean", *outliers.MULTI_METRICS[:3]])


def test_unmeasured_cache_states_get_no_rows(flags):
    assert set(flags.loc[flags["kind"] == "single", "metric"]) == {"decode_tps_mean", "ttft_cold_ms_p50"}


def test_only_latest_valid_attempts_count(flags):
    r = rows(flags, "c|0|1024|0.8", "decode_tps_mean")
    assert r["run_id"].tolist() == ["c_ctx1024_r00_a2", "c_ctx1024_r02_a1", "c_ctx1024_r03_a1"]
    assert set(r["n_runs"]) == {3} and set(r["median"]) == {100.0}
    assert not r["flagged"].any()


def test_two_run_groups_never_flag(flags):
    for metric in ("decode_tps_mean", "ttft_cold_ms_p50"):  # the planted runs measure cold TTFT only
        assert not rows(flags, "d|0|512|0.8", metric)["flagged"].any()


def test_multi_agent_speedup_outlier(flags):
    r = rows(flags, "a|chimera_homo", "speedup")
    # sorted 1.2, 1.79, 1.8, 1.82 -> median 1.795; |dev| 0.005, 0.025, 0.005, 0.595 -> MAD 0.015
    assert r["median"].iloc[0] == pytest.approx(1.795) and r["mad"].iloc[0] == pytest.approx(0.015)
    assert r["scale"].iloc[0] == pytest.approx(0.01795)  # the 1 % floor is above the MAD here
    assert r["flagged"].tolist() == [False, False, False, True]
    assert set(r["kind"]) == {"multi"} and set(r["scenario"]) == {"chimera_homo"} and r["num_gpu"].isna().all()
    for metric in outliers.MULTI_METRICS[1:]:
        assert not rows(flags, "a|chimera_homo", metric)["flagged"].any()


def test_flagged_configs_for_rerunning(flags):
    configs = outliers.flagged_configs(flags)
    assert [(c.kind, c.config) for c in configs] == [
        ("multi", "a|chimera_homo"), ("single", "a|0|512|0.8"), ("single", "b|0|512|0.8")]
    a = configs[1]
    assert a.model_dump() == {"kind": "single", "config": "a|0|512|0.8", "model": "a", "harness": "python",
                              "scenario": None, "num_gpu": 0, "num_ctx": 512, "temperature": 0.8,
                              "server_settings": "", "cell_hash": "h-a-512", "metrics": ["decode_tps_mean"], "run_ids": ["a_ctx512_r04_a1"],
                              "run_indexes": [4]}
    assert configs[0].scenario == "chimera_homo" and configs[0].metrics == ["speedup"]
    assert configs[0].num_gpu is None and configs[0].temperature is None


def test_flags_round_trip_atomically(flags, tr):
    path = outliers.write_flags(tr, flags)
    assert path == tr / "flags" / "flags.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["flags.parquet"]  # no temp file left
    back = outliers.read_flags(tr)
    assert back.equals(flags)
    assert list(back.columns) == [f.name for f in outliers.FLAGS_SCHEMA]
    assert list(outliers.FlagRow.model_fields) == list(back.columns)  # a flag row is a row of the table
    assert store.read_frame(tr, "runs")["run_id"].nunique() == 17  # the flags file is not read as a run


def test_empty_tr(tmp_path):
    frame = outliers.flag_outliers(tmp_path)
    assert frame.empty and list(frame.columns) == [f.name for f in outliers.FLAGS_SCHEMA]
    assert outliers.flagged_configs(frame) == []
    assert outliers.read_flags(tmp_path).empty
