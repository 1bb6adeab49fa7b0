"""Load step figures (trbench/measure/load_metrics.py) on hand-computed cases."""

import numpy as np
import pandas as pd
import pytest

from trbench.data.rows import ErrorCount
from trbench.measure import load_metrics as lm


def _req(sent, e2e, status="ok", ttft=None, prefill=None, tpot=None, out=None, chunks=(), warmup=False, kind=None):
    return {"is_warmup": warmup, "status": status, "error_kind": kind, "sent_offset_ms": sent, "e2e_ms": e2e,
            "ttft_ms": ttft, "prefill_ms": prefill, "queue_ms": lm.queue_ms(ttft, prefill), "tpot_ms": tpot,
            "output_tokens": out, "chunk_offsets_ms": list(chunks)}


STEP = [
    _req(0, 100, ttft=50, prefill=40, tpot=5, out=3, chunks=[50, 55, 60], warmup=True),  # left out of everything
    _req(100, 1000, ttft=200, prefill=150, tpot=10, out=10, chunks=[200, 210, 230]),
    _req(200, 2000, ttft=400, prefill=100, tpot=30, out=20, chunks=[400, 440]),
    _req(300, 500, status="error", kind="timeout"),
    _req(400, 1600, ttft=300, prefill=100, tpot=None, out=1, chunks=[300]),
]


def test_closed_loop_step_figures_by_hand():
    f = lm.step_figures(STEP, {"ttft_ms": 350, "tpot_ms": 20})
    # window: first measured send at 100 ms, last end at 200 + 2000 ms
    assert f.window_s == pytest.approx(2.1)
    assert (f.n_requests, f.n_warmup, f.n_ok, f.n_errors) == (4, 1, 3, 1)
    assert f.error_rate_pct == pytest.approx(25.0)
    assert f.error_kinds == [ErrorCount(kind="timeout", count=1)]
    assert f.offered_rps == pytest.approx(4 / 2.1)
    assert f.request_rps == pytest.approx(3 / 2.1)
    assert f.output_tps == pytest.approx(31 / 2.1)
    assert f.ttft_ms_p50 == pytest.approx(300)
    assert f.ttft_ms_p90 == pytest.approx(380)  # linear between 300 and 400 at 0.8
    assert f.queue_ms_p50 == pytest.approx(200)  # queues 50, 300, 200
    assert f.queue_ms_p99 == pytest.approx(200 + 0.98 * 100)
    assert f.prefill_ms_p50 == pytest.approx(100)
    assert f.itl_ms_p50 == pytest.approx(20)  # gaps 10, 20 and 40, pooled
    assert f.tpot_ms_p50 == pytest.approx(20)  # 10 and 30
    # r1 meets both; r2 misses TTFT; r4 has one token, so no TPOT, and meets TTFT
    assert (f.n_good, f.good_pct) == (2, pytest.approx(50.0))
    assert f.goodput_rps == pytest.approx(2 / 2.1)


def test_open_loop_offers_its_rate_and_no_slo_counts_every_ok_request():
    f = lm.step_figures(STEP, {}, rate=3.0)
    assert f.offered_rps == 3.0
    assert f.n_good == 3 and f.goodput_rps == pytest.approx(3 / 2.1)


def test_queueing_is_ttft_less_server_prefill():
    assert lm.queue_ms(900.0, 120.0) == 780.0
    assert lm.queue_ms(900.0, None) is None
    assert lm.queue_ms(None, 120.0) is None


def test_an_e2e_slo_and_a_failed_request():
    assert lm.meets_slo({"status": "ok", "e2e_ms": 99.0}, {"e2e_ms": 100})
    assert not lm.meets_slo({"status": "ok", "e2e_ms": 101.0}, {"e2e_ms": 100})
    assert not lm.meets_slo({"status": "error", "e2e_ms": 1.0}, {"e2e_ms": 100})
    assert not lm.meets_slo({"status": "ok", "ttft_ms": None}, {"ttft_ms": 100})  # no text at all: missed


def test_a_step_of_only_warmups_or_errors_has_no_rates():
    f = lm.step_figures([STEP[0]], {})
    assert f.n_requests == 0 and f.window_s is None and f.request_rps is None
    g = lm.step_figures([_req(0, 50, status="error", kind="connect")], {})
    assert (g.n_ok, g.error_rate_pct, g.error_kinds, g.ttft_ms_p50) == (0, 100.0, [ErrorCount(kind="connect", count=1)], None)


def test_saturation_point_is_the_highest_rate_with_goodput_at_90_percent():
    steps = [{"offered_rps": 1.0, "goodput_rps": 0.95}, {"offered_rps": 2.0, "goodput_rps": 1.7},
             {"offered_rps": 4.0, "goodput_rps": 2.0}]
    assert lm.saturation_point(steps) == 1.0
    assert lm.saturation_point(steps + [{"offered_rps": 3.0, "goodput_rps": 2.7}]) == 3.0  # exactly 90 %
    assert lm.saturation_point([{"offered_rps": 1.0, "goodput_rps": 0.5}, {"offered_rps": 2.0, "goodput_rps": None}]) is None


def test_requests_that_ended_before_max_tokens_are_counted_only_when_asked():
    assert lm.step_figures(STEP, {}, max_tokens=20).n_ended_early == 2  # 10 and 1 of 20 tokens; the error is not ok
    assert lm.step_figures(STEP, {}).n_ended_early is None


def test_how_far_out_of_step_the_streams_ran_is_the_share_of_max_tokens_they_produced():
    f = lm.step_figures(STEP, {}, max_tokens=20)  # 10, 20 and 1 of 20 tokens; the warm-up and the error left out
    assert (f.output_share_p50, f.output_share_min) == (pytest.approx(0.5), pytest.approx(0.05))
    assert lm.step_figures(STEP, {}, max_tokens=1).output_share_min == pytest.approx(1.0)  # each produced all
    g = lm.step_figures(STEP, {})
    assert g.output_share_p50 is None and g.output_share_min is None  # not counted without max_tokens


def test_prefill_rates_of_a_step_leave_out_cached_prefills():
    rows = [{**_req(0, 100, ttft=50, prefill=25, out=4), "prompt_tokens": 100, "cached_tokens": 0, "cache_state": "cold"},
            {**_req(10, 100, ttft=80, prefill=50, out=4), "prompt_tokens": 100, "cached_tokens": 0, "cache_state": "cold"},
            {**_req(20, 100, ttft=5, prefill=1, out=4), "prompt_tokens": 100, "cached_tokens": 99, "cache_state": "cached"}]
    f = lm.step_figures(rows, {})
    assert f.prefill_tps_p50 == pytest.approx(3000.0)  # 4000 and 2000 tok/s; the cached one is no rate
    assert f.prefill_tps_client_p50 == pytest.approx((2000.0 + 1250.0) / 2)


def test_outputs_are_forced_by_default_where_the_server_can_be_made_to():
    from trbench.config.spec import parse_spec
    from trbench.run.load_step import forces_output

    base = {"tr_id": "t", "models": ["m"], "load": {"concurrency": [1], "requests": 2}}
    assert forces_output(parse_spec(base))
    assert not forces_output(parse_spec({**base, "load": {**base["load"], "exact_output": False}}))
    ollama = {**base, "provider": "external", "backend": "ollama", "urls": ["http://127.0.0.1:11434"]}
    assert not forces_output(parse_spec(ollama))  # Ollama has no ignore_eos: its early ends are counted instead


def test_a_steps_p50_interval_resamples_blocks_of_requests_in_flight_together():
    """Four streams in lockstep: the four requests of a wave share a batch, so they vary together. The interval
    resamples whole waves (blocks of as many requests as were in flight: Little's law gives 4 here) and is wider
    than one that draws the requests one by one, which would claim 40 independent values."""
    from trbench.measure.metrics import bootstrap_median_ci

    rng = np.random.default_rng(7)
    rows = []
    for wave in range(10):
        shared = 1000.0 + rng.normal(0.0, 40.0)  # the wave's batch
        for k in range(4):
            rows.append({"is_warmup": False, "status": "ok", "error_kind": None, "sent_offset_ms": wave * 2000.0 + k,
                         "e2e_ms": 2000.0, "ttft_ms": shared + rng.normal(0.0, 2.0), "tpot_ms": 30.0 + k,
                         "queue_ms": 1.0, "prefill_ms": 900.0, "output_tokens": 64, "chunk_offsets_ms": None,
                         "prompt_tokens": 50, "cached_tokens": 0})
    figures = lm.step_figures(pd.DataFrame(rows), {})
    low, high = figures.ttft_ms_p50_ci_low, figures.ttft_ms_p50_ci_high
    assert low is not None and high is not None and low <= figures.ttft_ms_p50 <= high
    iid = bootstrap_median_ci([r["ttft_ms"] for r in rows])
    assert iid is not None and (high - low) > 1.5 * (iid[1] - iid[0])
    # the same values as waves of four, resampled as such, give the very same interval
    waves = [[r["ttft_ms"] for r in rows[i:i + 4]] for i in range(0, 40, 4)]
    assert bootstrap_median_ci(waves) == (low, high)
    # one block only (every request in flight at once): no interval
    together = [{**r, "sent_offset_ms": 0.0, "e2e_ms": 40000.0} for r in rows]
    assert lm.step_figures(pd.DataFrame(together), {}).ttft_ms_p50_ci_low is None
