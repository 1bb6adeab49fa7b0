"""The outlier rule's false-alarm and detection rates (trbench.measure.outlier_calibration): the resampling
against hand-computed cases, the bundled reference against the targets, and the report's statement."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from trbench.data.environment import Manifest
from trbench.config.spec import OutlierRule
from trbench.data import store
from trbench.measure import outlier_calibration as oc
from trbench.measure import outliers
from trbench.report import build_report, render_appendix_markdown, render_markdown

TR_ID = "TRcal"
STARTED = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def reference(rows: list[tuple[str, str, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"source": "planted", "kind": k, "config": c, "run_index": i, "metric": m, "value": v}
                         for k, c, i, m, v in rows], columns=oc.REFERENCE_COLUMNS)


def test_identical_runs_never_alarm_and_a_slow_run_is_always_caught():
    ref = reference([("single", "a", i, m, v) for i in range(3)
                     for m, v in (("decode_tps_mean", 100.0), ("ttft_cached_ms_p50", 40.0))])
    cal = oc.calibrate(ref, OutlierRule(), 3, draws=500)
    assert cal.false_alarm == {"single": 0.0, "all": 0.0}
    # 80 against 100, 100: 20 off a threshold of 2 x 5 % x 100 = 10; TTFT 60 against 40: 20 off 2 x 15 % x 40 = 12
    assert cal.detection == {"decode": 1.0, "ttft": 1.0} and cal.detection_min == {"decode": 1.0, "ttft": 1.0}


def test_two_run_values_12_percent_apart_alarm_when_a_draw_mixes_them():
    # 3 runs drawn from {100, 112}: a draw mixing them has MAD 0 and its odd run 12 off a median of 100
    # (or 112), past the 10 (11.2) threshold: flagged; P(mixed) = 1 - 2 x (1/2)^3 = 0.75
    ref = reference([("single", "a", 0, "decode_tps_mean", 100.0), ("single", "a", 1, "decode_tps_mean", 112.0)])
    cal = oc.calibrate(ref, OutlierRule(), 3, draws=4000)
    assert cal.false_alarm["single"] == pytest.approx(0.75, abs=0.03)
    assert cal.configs[0].runs_measured == 2
    # a floor of 7 % (threshold 14 and up) lets 12 % pass
    assert oc.calibrate(ref, OutlierRule(min_rel_mad=0.07), 3, draws=500).false_alarm["single"] == 0.0
    # fewer than 3 runs never flag
    assert oc.calibrate(ref, OutlierRule(), 2, draws=500).false_alarm["single"] == 0.0


def test_whole_runs_are_drawn_and_runs_missing_a_metric_are_left_out():
    # run 1 has no TTFT: it is not drawn at all, so the config is three identical runs
    ref = reference([("single", "a", 0, "decode_tps_mean", 100.0), ("single", "a", 0, "ttft_cold_ms_p50", 50.0),
                     ("single", "a", 1, "decode_tps_mean", 50.0),
                     ("single", "a", 2, "decode_tps_mean", 100.0), ("single", "a", 2, "ttft_cold_ms_p50", 50.0)])
    cal = oc.calibrate(ref, OutlierRule(), 5, draws=200)
    assert cal.configs[0].runs_measured == 2 and cal.false_alarm["single"] == 0.0


@pytest.mark.parametrize("n", [3, 5, 10])
def test_on_a_quiet_machine_at_most_1_config_in_10_alarms_and_slow_runs_are_caught(n):
    """Normal run-to-run noise of 3 % on decode and speedup, 8 % on TTFT (a quiet CPU: cached TTFT 38.6 against
    42.5 ms is such a spread): the default rule recommends a re-run for at most 1 healthy config in 10 and
    flags a run 20 % slower on decode or 50 % slower on TTFT in most TRs; one 5 % floor on every metric
    recommended a re-run for about half of the healthy configs."""
    ref = oc.synthetic(0.03, 0.08)
    cal = oc.calibrate(ref, OutlierRule(), n)
    assert cal.false_alarm["all"] <= 0.10 and max(c.false_alarm for c in cal.configs) <= 0.10, cal.false_alarm
    assert cal.detection["decode"] >= 0.9 and cal.detection["ttft"] >= 0.75, cal.detection
    assert oc.calibrate(ref, OutlierRule(min_rel_mad_ttft=0.05, min_rel_mad_concurrent=0.05), n).false_alarm["all"] >= 0.5


def test_bundled_reference_alarms_less_than_one_floor_did():
    ref = oc.load_reference()
    assert set(ref["kind"]) == {"single", "multi"} and ref["source"].nunique() >= 1
    now, before = (oc.calibrate(ref, rule, 3).false_alarm["single"]
                   for rule in (OutlierRule(), OutlierRule(min_rel_mad_ttft=0.05, min_rel_mad_concurrent=0.05)))
    assert now < before


def test_extract_takes_the_counted_runs_of_a_tr(tmp_path):
    root = tmp_path / TR_ID
    for i, (attempt, valid, tps) in enumerate([(1, True, 60.0), (1, False, 5.0), (1, True, 61.0)]):
        store.write_run(root, {"tr_id": TR_ID, "run_id": f"m_r{i}", "attempt": attempt, "cell_hash": "h", "model": "m",
                               "provider": "embedded", "backend": "openai", "num_gpu": 0, "num_ctx": 512,
                               "temperature": 0.8, "run_index": i, "started_at": STARTED, "n_requests": 2,
                               "n_ok": 2, "n_errors": 0, "min_ok_requests": 1, "valid": valid,
                               "invalid_reason": None, "decode_tps_mean": tps, "ttft_cold_ms_p50": 300.0 + i},
                        [], Manifest())
    ref = oc.extract([root])
    assert list(ref.columns) == oc.REFERENCE_COLUMNS
    assert sorted(zip(ref["run_index"], ref["metric"], ref["value"])) == [
        (0, "decode_tps_mean", 60.0), (0, "ttft_cold_ms_p50", 300.0), (2, "decode_tps_mean", 61.0),
        (2, "ttft_cold_ms_p50", 302.0)]
    assert set(ref["config"]) == {"m|0|512|0.8"} and set(ref["source"]) == {TR_ID}


def plant(root: Path, runs: int) -> None:
    for i in range(runs):
        store.write_run(root, {"tr_id": TR_ID, "run_id": f"m_r{i}", "attempt": 1, "cell_hash": "h", "model": "m",
                               "provider": "embedded", "backend": "openai", "num_gpu": 0, "num_ctx": 512,
                               "temperature": 0.8, "run_index": i, "started_at": STARTED, "n_requests": 2,
                               "n_ok": 2, "n_errors": 0, "min_ok_requests": 1, "valid": True,
                               "invalid_reason": None, "decode_tps_mean": 60.0 + i, "ttft_cold_ms_p50": 300.0},
                        [], Manifest())
    outliers.write_flags(root, outliers.flag_outliers(root))


def test_report_states_the_rule_and_its_false_alarm_rate_for_its_run_count(tmp_path):
    root = tmp_path / TR_ID
    plant(root, 4)
    data = build_report(root)
    rule = OutlierRule()
    expected = oc.expected(rule, 4)
    text = render_appendix_markdown(data)  # the whole rule is the appendix's; the report says it in one line
    first, rates = data.outlier_rule.sentences
    assert "k = 2" in first and "5 % of the median on throughput" in first and "15 % on TTFT" in first
    assert "10 % (throughput), 30 % (TTFT) or 80 % (agents at once) is never flagged" in first
    fa = expected.false_alarm["single"]
    share = "0 %" if fa == 0 else f"{100 * fa:.0f} %" if fa >= 0.01 else "under 1 %"
    assert f"with 4 runs per config, {share} of healthy single-agent configs are recommended for a re-run" in rates
    assert "bench/outlier_calibration.py" in rates and "multi-agent" not in rates  # the TR has no multi-agent runs
    assert first in text and rates in text
    assert first not in render_markdown(data, []) and "k = 2 MADs" in render_markdown(data, [])


def test_report_with_two_runs_says_nothing_can_be_flagged(tmp_path):
    root = tmp_path / TR_ID
    plant(root, 2)
    rates = build_report(root).outlier_rule.sentences[1]
    assert "with 2 runs per config no single-agent run can be flagged (the rule needs 3)" in rates
    assert "slower" not in rates and "bench" not in rates  # no measured figure below 3 runs
