"""Plain progress lines (stdout not a terminal): the figures of a finished run, from its run row."""

from __future__ import annotations

import io

from trbench.run import progress


def event(row: dict, multi: bool = False) -> progress.ProgressEvent:
    figures = progress.multi_run_figures(row) if multi else progress.run_figures(row)
    return progress.ProgressEvent(kind="run_finished", **figures)


def test_single_run_line_takes_the_median_ttft_column_there_is():
    row = {"run_id": "r0", "valid": True, "invalid_reason": None, "decode_tps_p50": 151.26, "ttft_ms_p50": 12.94}
    assert progress.describe_run(event(row)) == "run r0: valid, decode p50 151.3 tok/s, TTFT p50 12.9 ms"
    # per cache state where the run row has them; a state the run did not measure (NaN) is left out
    row = {"run_id": "r1", "valid": True, "decode_tps_p50": 150.0, "ttft_cold_ms_p50": 290.0,
           "ttft_cached_ms_p50": 10.04}
    assert progress.describe_run(event(row)).endswith("TTFT cold p50 290.0 ms, TTFT cached p50 10.0 ms")
    row = {"run_id": "r2", "valid": True, "decode_tps_p50": 150.0, "ttft_cold_ms_p50": float("nan"),
           "ttft_cached_ms_p50": 10.0}
    assert progress.describe_run(event(row)).endswith("tok/s, TTFT cached p50 10.0 ms")


def test_invalid_run_line_says_why_in_one_line():
    row = {"run_id": "r3", "valid": False, "invalid_reason": "instance failed: out of memory\nat load",
           "decode_tps_p50": None}
    assert progress.describe_run(event(row)) == \
        "run r3: invalid, decode p50 - tok/s, TTFT - (instance failed: out of memory at load)"


def test_multi_agent_run_line_is_the_agents_mean():
    row = {"run_id": "m0", "valid": True, "collector_concurrent_decode_tps": 100.0,
           "insight_concurrent_decode_tps": 120.0, "collector_concurrent_ttft_ms": 20.0, "insight_concurrent_ttft_ms": 40.0}
    assert progress.describe_run(event(row, multi=True)) == \
        "run m0: valid, decode agents' mean 110.0 tok/s, TTFT agents' mean 30.0 ms"


def test_plain_lines_count_and_summarise():
    out = io.StringIO()
    lines = progress.PlainLines(out)
    lines(progress.ProgressEvent(kind="planned", total_runs=3, message="1 already finished"))
    lines(progress.ProgressEvent(kind="run_skipped"))
    lines(event({"run_id": "a", "valid": True, "decode_tps_p50": 1.0, "ttft_ms_p50": 2.0}))
    lines(progress.ProgressEvent(kind="request_done", run_id="b", request=1, requests=2))  # no line
    lines(event({"run_id": "b", "valid": False, "invalid_reason": "0 ok of 2"}))
    lines.write_summary("Completed")
    assert out.getvalue().splitlines() == [
        "planned: 3 runs, 1 already finished",
        "[2/3] run a: valid, decode p50 1.0 tok/s, TTFT p50 2.0 ms",
        "[3/3] run b: invalid, decode p50 - tok/s, TTFT - (0 ok of 2)",
        "summary: 2 runs finished, 1 valid, 1 invalid, 1 already finished before; Completed",
    ]


def test_load_step_line_is_its_output_rate_ttft_p95_and_queueing():
    row = {"run_id": "smollm2_135m_gpu0_ctx1024_temp0.8_c4", "valid": True, "output_tps": 62.24,
           "ttft_ms_p95": 1741.8, "queue_ms_p50": 1331.7}
    e = progress.ProgressEvent(kind="run_finished", **progress.load_step_figures(row))
    assert progress.describe_run(e) == ("run smollm2_135m_gpu0_ctx1024_temp0.8_c4: valid, output 62.2 tok/s, "
                                        "TTFT p95 1741.8 ms, queue p50 1331.7 ms")


def test_plans_add_up_when_load_steps_follow_the_matrix():
    out = io.StringIO()
    lines = progress.PlainLines(out)
    lines(progress.ProgressEvent(kind="planned", total_runs=2))
    lines(event({"run_id": "a", "valid": True, "decode_tps_p50": 1.0, "ttft_ms_p50": 2.0}))
    lines(progress.ProgressEvent(kind="planned", total_runs=1, message="load steps"))
    lines(progress.ProgressEvent(kind="run_finished", **progress.load_step_figures(
        {"run_id": "c2", "valid": True, "output_tps": 5.0, "ttft_ms_p95": 3.0, "queue_ms_p50": 1.0})))
    assert out.getvalue().splitlines()[1:] == [
        "[1/2] run a: valid, decode p50 1.0 tok/s, TTFT p50 2.0 ms",
        "planned: 1 run, load steps",
        "[2/3] run c2: valid, output 5.0 tok/s, TTFT p95 3.0 ms, queue p50 1.0 ms",
    ]
