"""trbench.measure.metrics on hand-built raw records whose times are known, so each formula is checked by value.

The numbers are chosen so that the usual alternatives (n instead of n - 1, the answer instead of the
first chunk, population instead of sample deviation, nearest-rank percentiles) give other results.
"""

from __future__ import annotations

import math

import numpy as np

import pytest

from trbench.backends.base import RawExchange
from trbench.measure.metrics import (
    DEFINITIONS,
    RequestMetrics,
    answer_check,
    cache_state,
    clean,
    cv_pct,
    derive,
    mean,
    pct_of,
    percentile,
    summarize,
)

T_SEND = 50_000_000_000  # ns, an arbitrary perf_counter reading
MS = 1_000_000  # ns per ms


def raw(offsets_ms: list[float], kinds: list[str] | None = None, end_ms: float = 350.0, **kw) -> RawExchange:
    """A record whose chunks arrived offsets_ms after the request was sent."""
    times = [T_SEND + int(round(o * MS)) for o in offsets_ms]
    return RawExchange(
        backend="test", url="http://127.0.0.1:1/v1/chat/completions", model="m", sent_at_unix=1.7e9,
        t_send_ns=T_SEND, t_end_ns=T_SEND + int(round(end_ms * MS)), token_times_ns=times,
        token_kinds=kinds if kinds is not None else ["content"] * len(times), **kw,
    )


# chunk arrivals: gaps of 10, 20, 30, 40 and 100 ms after the first chunk at 100 ms
OFFSETS = [100.0, 110.0, 130.0, 160.0, 200.0, 300.0]
KINDS_REASONING_FIRST = ["reasoning", "reasoning", "content", "content", "content", "content"]


def test_ttft_is_first_chunk_of_any_kind_and_ttfat_first_answer_chunk() -> None:
    m = derive(raw(OFFSETS, KINDS_REASONING_FIRST))
    assert m.ttft_ms == pytest.approx(100.0)
    assert m.ttfat_ms == pytest.approx(130.0)


def test_ttfat_equals_ttft_without_reasoning() -> None:
    m = derive(raw(OFFSETS))
    assert m.ttft_ms == pytest.approx(100.0)
    assert m.ttfat_ms == pytest.approx(100.0)


def test_ttfat_is_none_when_only_reasoning_arrived() -> None:
    m = derive(raw([100.0, 120.0], ["reasoning", "reasoning"]))
    assert m.ttft_ms == pytest.approx(100.0)
    assert m.ttfat_ms is None


def test_reasoning_and_answer_tokens_split_the_servers_count() -> None:
    m = derive(raw(OFFSETS, KINDS_REASONING_FIRST, output_tokens=7))  # the server counts the EOS token too
    assert (m.reasoning_tokens, m.answer_tokens) == (2, 5)
    m = derive(raw(OFFSETS))
    assert (m.reasoning_tokens, m.answer_tokens) == (0, 6)


def test_decode_split_is_each_kinds_own_chunk_span() -> None:
    m = derive(raw(OFFSETS, KINDS_REASONING_FIRST))
    assert m.decode_tps_reasoning == pytest.approx(1 / 0.010)  # 100 -> 110 ms: one step
    assert m.decode_tps_answer == pytest.approx(3 / 0.170)  # 130 -> 300 ms: three steps
    m = derive(raw(OFFSETS))
    assert m.decode_tps_reasoning is None
    assert m.decode_tps_answer == pytest.approx(5 / 0.2)


def test_e2e_is_send_to_last_byte() -> None:
    assert derive(raw(OFFSETS, end_ms=350.0)).e2e_ms == pytest.approx(350.0)
    assert derive(raw(OFFSETS, end_ms=1234.5)).e2e_ms == pytest.approx(1234.5)


def test_tpot_is_e2e_minus_ttft_over_n_minus_one_counting_chunks_without_server_count() -> None:
    m = derive(raw(OFFSETS, end_ms=350.0))
    assert m.output_tokens == 6  # no server count: the chunks
    assert m.tpot_ms == pytest.approx((350.0 - 100.0) / (6 - 1))  # 50; /6 would be 41.7


def test_tpot_uses_the_servers_token_count() -> None:
    m = derive(raw(OFFSETS, end_ms=350.0, output_tokens=11))
    assert m.output_tokens == 11
    assert m.tpot_ms == pytest.approx((350.0 - 100.0) / (11 - 1))  # 25


def test_tpot_uses_ttft_not_ttfat() -> None:
    m = derive(raw(OFFSETS, KINDS_REASONING_FIRST, end_ms=350.0))
    assert m.tpot_ms == pytest.approx((350.0 - 100.0) / 5)  # with ttfat it would be 44


def test_decode_tps_client_is_n_minus_one_over_first_to_last_chunk() -> None:
    m = derive(raw(OFFSETS))
    # 5 tokens after the first in 200 ms (100 -> 300): 25/s; n/(span) would be 30, n/e2e 17
    assert m.decode_tps_client == pytest.approx(25.0)


def test_decode_tps_client_uses_the_servers_token_count() -> None:
    m = derive(raw(OFFSETS, output_tokens=21))
    assert m.decode_tps_client == pytest.approx(20 / 0.2)  # 100/s


def test_itl_percentiles_and_max_of_chunk_gaps() -> None:
    m = derive(raw(OFFSETS))
    # gaps [10, 20, 30, 40, 100]; numpy linear: p95 at rank 3.8 -> 40 + 0.8 * 60
    assert m.itl_p50_ms == pytest.approx(30.0)
    assert m.itl_p95_ms == pytest.approx(88.0)
    assert m.itl_max_ms == pytest.approx(100.0)
    assert m.n_chunks == 6


def test_itl_p50_interpolates_even_count() -> None:
    m = derive(raw([0.0, 10.0, 30.0, 60.0, 100.0]))  # gaps 10, 20, 30, 40
    assert m.itl_p50_ms == pytest.approx(25.0)
    assert m.itl_max_ms == pytest.approx(40.0)


def test_decode_tps_server_view_is_n_minus_one_steps_over_decode_time() -> None:
    # llama.cpp's convention (its timings.predicted_per_second): the first token comes out of prefill,
    # so predicted_ms spans 40 - 1 steps; n / ms would read 80, n/(n-1) = 2.6 % high
    m = derive(raw(OFFSETS, server_decode_tokens=40, server_decode_ms=500.0, output_tokens=41))
    assert m.decode_tps == pytest.approx(78.0)


def test_decode_tps_client_leaves_out_the_unstreamed_end_of_sequence_token() -> None:
    # 6 chunks streamed at OFFSETS, then the server stopped on EOS and counts it: 7 tokens.
    # The streamed span (100 -> 300 ms) holds 5 steps: 25/s; counting the EOS token would read 30/s
    m = derive(raw(OFFSETS, output_tokens=7, finish_reason="stop"))
    assert m.decode_tps_client == pytest.approx(25.0)
    # cut at max_tokens (finish 'length'): every counted token was streamed
    assert derive(raw(OFFSETS, output_tokens=6, finish_reason="length")).decode_tps_client == pytest.approx(25.0)


@pytest.mark.parametrize(("prompt", "cached", "state"), [
    (100, None, "unknown"), (None, 5, "unknown"), (0, 0, "unknown"),
    (100, 0, "cold"), (100, 4, "cold"), (100, 10, "cold"),  # a cold prompt shares the template's first tokens
    (100, 11, "partial"), (100, 60, "partial"), (100, 89, "partial"),
    (100, 90, "cached"), (100, 99, "cached"), (100, 100, "cached"),  # llama.cpp re-evaluates the last token
    (8, 7, "cached"), (8, 6, "partial"),
])
def test_cache_state_from_the_servers_counts(prompt, cached, state) -> None:
    assert cache_state(prompt, cached) == state
    assert derive(raw(OFFSETS, prompt_tokens=prompt, cached_tokens=cached)).cache_state == state


@pytest.mark.parametrize(("answer", "verdict"), [
    ("A KV cache keeps the keys and values of earlier tokens so they are not computed again.", "ok"),
    ("", "empty"), ("  \n ", "empty"),
    ("user\nExplain the cache<|im_end|>\n<|im_start|>assistant", "template_tokens"),
    ("<start_of_turn>model\nsure", "template_tokens"), ("It is fast.<|eot_id|>", "template_tokens"),
    ("Explain in a few sentences what a KV cache is and why it speeds up text generation.", "echo"),
])
def test_answer_check(answer, verdict) -> None:
    prompt = "You are concise.\nExplain in a few sentences what a KV cache is and why it speeds up text generation."
    assert answer_check(answer, prompt) == verdict


def test_decode_tps_server_view_absent_without_server_numbers() -> None:
    assert derive(raw(OFFSETS)).decode_tps is None
    assert derive(raw(OFFSETS, server_decode_tokens=40)).decode_tps is None
    assert derive(raw(OFFSETS, server_decode_tokens=40, server_decode_ms=0.0)).decode_tps is None
    assert derive(raw(OFFSETS, server_decode_ms=500.0)).decode_tps is None


def test_server_reported_fields_pass_through() -> None:
    m = derive(raw(OFFSETS, prompt_tokens=26, cached_tokens=17, server_prefill_ms=12.5, server_load_ms=700.25))
    assert m.prompt_tokens == 26
    assert m.cached_tokens == 17
    assert m.prefill_ms == pytest.approx(12.5)
    assert m.load_ms == pytest.approx(700.25)


def test_no_tokens() -> None:
    m = derive(raw([], end_ms=80.0))
    assert m.e2e_ms == pytest.approx(80.0)
    assert m.ttft_ms is None
    assert m.ttfat_ms is None
    assert m.output_tokens is None
    assert m.tpot_ms is None
    assert m.decode_tps_client is None
    assert m.itl_p50_ms is None and m.itl_p95_ms is None and m.itl_max_ms is None
    assert m.n_chunks == 0


def test_no_chunks_but_a_server_count_gives_no_client_rates() -> None:
    m = derive(raw([], end_ms=80.0, output_tokens=5))
    assert m.output_tokens == 5
    assert m.tpot_ms is None
    assert m.decode_tps_client is None


def test_one_token() -> None:
    m = derive(raw([40.0], end_ms=45.0))
    assert m.ttft_ms == pytest.approx(40.0)
    assert m.ttfat_ms == pytest.approx(40.0)
    assert m.e2e_ms == pytest.approx(45.0)
    assert m.output_tokens == 1
    assert m.tpot_ms is None  # (e2e - ttft) / 0 is undefined
    assert m.decode_tps_client is None
    assert m.itl_p50_ms is None and m.itl_max_ms is None
    assert m.n_chunks == 1


def test_one_chunk_carrying_many_server_tokens_has_tpot_but_no_client_rate() -> None:
    m = derive(raw([40.0], end_ms=60.0, output_tokens=5))
    assert m.tpot_ms == pytest.approx((60.0 - 40.0) / 4)
    assert m.decode_tps_client is None  # no span between two chunks


def test_error_record_keeps_status_kind_message_and_partial_timing() -> None:
    ex = raw([100.0, 120.0], end_ms=5000.0, status="error", error_kind="timeout",
             error_message="ReadTimeout: timed out")
    m = derive(ex)
    assert m.status == "error"
    assert m.error_kind == "timeout"
    assert m.error_message == "ReadTimeout: timed out"
    assert m.e2e_ms == pytest.approx(5000.0)
    assert m.ttft_ms == pytest.approx(100.0)
    assert m.n_chunks == 2


def test_ok_record_has_no_error() -> None:
    m = derive(raw(OFFSETS))
    assert m.status == "ok"
    assert m.error_kind is None and m.error_message is None


def test_every_per_request_metric_is_defined() -> None:
    for name in RequestMetrics.model_fields:
        if name in ("error_kind", "error_message"):
            key = "status"
        elif name.startswith("itl_"):
            key = "itl_ms"
        elif name == "n_chunks":
            continue
        else:
            key = name
        assert key in DEFINITIONS, f"{name} has no definition"


def test_definitions_state_the_formulas_derive_uses() -> None:
    assert "(e2e_ms - ttft_ms) / (output_tokens - 1)" in DEFINITIONS["tpot_ms"]
    assert "(streamed tokens - 1) / (t(last text chunk) - t(first text chunk))" in DEFINITIONS["decode_tps_client"]
    assert "(predicted_n - 1) / predicted_ms" in DEFINITIONS["decode_tps"]
    assert "reasoning included" in DEFINITIONS["ttft_ms"]
    assert "(eval_count - 1) / eval_duration" in DEFINITIONS["decode_tps"]
    assert "p50, p95 and max" in DEFINITIONS["itl_ms"]


# --- statistics over requests and runs ------------------------------------------------------


def test_clean_drops_none_and_nan() -> None:
    assert clean([1.0, None, float("nan"), 3.0]).tolist() == [1.0, 3.0]


def test_percentile_is_linear_interpolation_ignoring_missing() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)  # nearest-rank would give 2
    assert percentile([10, None, 20, float("nan"), 30, 40], 95) == pytest.approx(38.5)
    assert percentile([4, 1, 3, 2], 0) == pytest.approx(1.0)
    assert percentile([4, 1, 3, 2], 100) == pytest.approx(4.0)
    assert percentile([], 50) is None
    assert percentile([None, float("nan")], 50) is None


def test_mean_ignores_missing() -> None:
    assert mean([None, 1.0, 2.0, float("nan"), 6.0]) == pytest.approx(3.0)
    assert mean([None]) is None


def test_summarize() -> None:
    s = summarize([float(x) for x in range(1, 11)] + [None])
    assert s.n == 10
    assert s.mean == pytest.approx(5.5)
    assert s.p50 == pytest.approx(5.5)
    assert s.p95 == pytest.approx(9.55)  # rank 8.55
    assert s.p99 == pytest.approx(9.91)  # rank 8.91


def test_summarize_empty() -> None:
    s = summarize([None, None])
    assert s.n == 0
    assert s.mean is None and s.p50 is None and s.p95 is None and s.p99 is None


def test_cv_pct_is_sample_std_over_mean() -> None:
    assert cv_pct([10.0, 12.0, 14.0]) == pytest.approx(2.0 / 12.0 * 100.0)  # population std: 13.6
    assert cv_pct([None, 10.0, 14.0]) == pytest.approx(math.sqrt(8.0) / 12.0 * 100.0)


def test_cv_pct_needs_two_values_and_a_nonzero_mean() -> None:
    assert cv_pct([5.0]) is None
    assert cv_pct([5.0, None]) is None
    assert cv_pct([0.0, 0.0]) is None


def test_pct_of() -> None:
    assert pct_of(50.0, 200.0) == pytest.approx(25.0)
    assert pct_of(50.0, 0.0) is None
    assert pct_of(None, 10.0) is None
    assert pct_of(10.0, None) is None


def test_integrated_two_stage_bootstrap_matches_drawing_every_request() -> None:
    # large runs use the integrated form (requests not drawn one by one): it must give what drawing
    # every request gives, up to Monte Carlo noise; small runs are drawn request by request
    from trbench.measure import metrics as m

    rng = np.random.default_rng(11)
    runs = [rng.normal(100 + shift, 8, 80) for shift in (0.0, 3.0, -2.0, 5.0)]
    exact = np.percentile(m._bootstrap_two_stage(runs, 4000, np.random.default_rng(1)), [2.5, 97.5])
    integrated = m._two_stage_quantiles(runs, 4000, np.random.default_rng(1), (0.025, 0.975))
    width = exact[1] - exact[0]
    assert abs(integrated[0] - exact[0]) < 0.1 * width and abs(integrated[1] - exact[1]) < 0.1 * width
    small = [r[:10] for r in runs]
    assert m.bootstrap_median_ci(small) == m.bootstrap_median_ci(small)  # seeded: reproducible
    assert min(len(r) for r in small) < m.TWO_STAGE_EXACT_BELOW <= min(len(r) for r in runs)


# --- prefill rate ---------------------------------------------------------------------------------


def test_prefill_rate_is_processed_prompt_tokens_over_the_servers_prefill_time() -> None:
    from trbench.measure.metrics import prefill_rate, prefill_rate_client
    assert prefill_rate(512, None, 250.0) == pytest.approx(2048.0)
    assert prefill_rate(512, 256, 250.0) == pytest.approx(1024.0)  # the cached prefix is not processed again
    assert prefill_rate_client(512, 0, 400.0) == pytest.approx(1280.0)
    assert prefill_rate(512, 512, 1.0) is None  # nothing processed
    assert prefill_rate(512, None, 0.0) is None and prefill_rate(None, None, 10.0) is None
    assert prefill_rate(512, float("nan"), 250.0) == pytest.approx(2048.0)  # a stored null count is no cache


def test_prefill_rates_leave_out_cached_prefills() -> None:
    from trbench.measure.metrics import prefill_rates
    rows = [{"prompt_tokens": 100, "cached_tokens": 0, "prefill_ms": 50.0, "ttft_ms": 80.0, "cache_state": "cold"},
            {"prompt_tokens": 100, "cached_tokens": 99, "prefill_ms": 1.0, "ttft_ms": 5.0, "cache_state": "cached"},
            {"prompt_tokens": 100, "cached_tokens": None, "prefill_ms": 25.0, "ttft_ms": 40.0,
             "cache_state": "cold_asked"}]
    assert prefill_rates(rows) == pytest.approx([2000.0, 4000.0])
    assert prefill_rates(rows, "client") == pytest.approx([1250.0, 2500.0])
