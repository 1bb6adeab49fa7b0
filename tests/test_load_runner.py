"""The load runner's schedules and drivers (trbench/run/schedule.py, trbench/run/load_step.py) against a
fake asynchronous client: FakeAsyncClient answers each request after a short sleep with a
RawExchange built the way the real clients build one, and counts how many are in flight. The real
server is in tests/test_load_e2e.py."""

import asyncio
import time

import numpy as np
import pytest

from trbench.backends import ChatRequest, RawExchange
from trbench.config.load_section import Sweep, sweep_steps
from trbench.config.prompts import PromptSuite
from trbench.config.spec import parse_spec
from trbench.run import load_step as runner
from trbench.run.schedule import arrival_offsets, stream_starts

pytestmark = pytest.mark.integration


class FakeAsyncClient:
    """A fake (no server): answers after `delay_s`, fails every `fail_every`-th request with a 503,
    raises on request indices in `raise_on` (by prompt text), and records the most requests in flight."""

    def __init__(self, delay_s=0.005, fail_every=0, raise_every=0):
        self.delay_s, self.fail_every, self.raise_every = delay_s, fail_every, raise_every
        self.inflight = self.peak = self.calls = 0
        self.closed = False

    async def chat(self, req: ChatRequest) -> RawExchange:
        self.calls += 1
        n = self.calls
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            t_send = time.perf_counter_ns()
            await asyncio.sleep(self.delay_s)
            if self.raise_every and n % self.raise_every == 0:
                raise RuntimeError("connection reset mid-stream")
            t1 = time.perf_counter_ns()
            base = dict(backend="openai", url="http://fake", model=req.model, sent_at_unix=time.time(),
                        t_send_ns=t_send, t_end_ns=t1 + 1000)
            if self.fail_every and n % self.fail_every == 0:
                return RawExchange(**base, status="error", error_kind="http_5xx", http_status=503,
                                   error_message="server busy")
            return RawExchange(**base, token_times_ns=[t1 - 2000, t1 - 1000, t1], token_kinds=["content"] * 3,
                               text="a b c", finish_reason="length", http_status=200, prompt_tokens=20,
                               output_tokens=3, server_prefill_ms=0.001)
        finally:
            self.inflight -= 1

    async def aclose(self):
        self.closed = True


def test_arrivals_are_seeded_and_have_the_rate_and_shape_asked_for():
    a = list(zip(range(4000), arrival_offsets(2.0, 1.0, seed=7)))
    b = list(zip(range(4000), arrival_offsets(2.0, 1.0, seed=7)))
    assert a == b
    times = np.array([t for _, t in a])
    assert np.all(np.diff(times) > 0)
    gaps = np.diff(np.concatenate([[0.0], times]))
    assert gaps.mean() == pytest.approx(0.5, rel=0.05)  # 1 / rate
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)  # Poisson: exponential gaps, CV 1
    even = np.diff([t for _, t in zip(range(4000), arrival_offsets(2.0, 16.0, seed=7))])
    assert even.std() / even.mean() == pytest.approx(0.25, rel=0.1)  # gamma shape k: CV 1/sqrt(k)
    assert list(zip(range(3), arrival_offsets(2.0, 1.0, seed=8))) != a[:3]


def test_a_ramp_up_makes_the_rate_rise_linearly():
    times = np.array([t for _, t in zip(range(20000), arrival_offsets(10.0, 1.0, seed=1, ramp_up_s=100.0))])
    # Lambda(t) = 10 t^2 / 200 within the ramp: 125 arrivals expected by t=50, 500 by t=100, then 10/s
    assert np.sum(times < 50) == pytest.approx(125, rel=0.2)
    assert np.sum(times < 100) == pytest.approx(500, rel=0.1)
    assert np.sum((times >= 100) & (times < 200)) == pytest.approx(1000, rel=0.1)


def test_streams_start_spread_over_the_ramp_up():
    assert stream_starts(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert stream_starts(3) == [0.0, 0.0, 0.0]


def test_sweep_rates_are_spread_between_the_measured_ends():
    steps = sweep_steps(Sweep(rates=3), 1.0, 5.0)
    assert [s.rate for s in steps] == [2.0, 3.0, 4.0]
    assert all(s.mode == "rate" for s in steps)
    assert sweep_steps(Sweep(rates=3), None, 5.0) == []


def test_a_step_records_the_parallelism_trbench_gave_the_server():
    # each provider's instance.concurrency: embedded slots, Ollama's num_parallel (OLLAMA_NUM_PARALLEL)
    from trbench.config.servers import OllamaProcessServer

    assert runner.server_slots({"slots": 3}) == 3
    assert runner.server_slots(OllamaProcessServer(num_parallel=4, max_queue=9).concurrency()) == 4
    assert runner.server_slots(None) is None  # an external server: its own business


def _spec(**load):
    return parse_spec({"tr_id": "lt", "models": ["smollm2:135m"], "seed": 3, "max_tokens": 8,
                       "load": {"requests": 12, **load}})


PROMPTS = PromptSuite(name="t", prompts=[{"id": "p0", "user": "hello"}, {"id": "p1", "user": "bye"}])


def _run(spec, step, client):
    plan = runner.StepPlan(tr_id=spec.tr_id, cell=spec.cells()[0], step=step, step_index=0, instance="i0",
                           instance_url="http://fake", slots=2)
    row, rows = runner.execute_step(spec, plan, lambda _b, _u: client, PROMPTS, "digest")
    return row, rows


def test_closed_loop_keeps_n_streams_in_flight_and_excludes_warmups():
    spec = _spec(concurrency=[3], warmup_requests=2)
    client = FakeAsyncClient()
    row, rows = _run(spec, spec.load.fixed_steps()[0], client)
    assert client.peak == 3 and client.closed
    assert len(rows) == 14 and sum(r["is_warmup"] for r in rows) == 2
    assert [r["request_index"] for r in rows] == list(range(14))
    assert all(r["is_warmup"] == (r["request_index"] < 2) for r in rows)
    assert (row["n_requests"], row["n_warmup"], row["n_ok"], row["valid"]) == (12, 2, 12, True)
    assert row["concurrency"] == 3 and row["mode"] == "concurrency" and row["slots"] == 2
    assert len({r["prompt_id"] for r in rows}) == 2  # the suite, cycled
    assert all(r["queue_ms"] == pytest.approx(r["ttft_ms"] - 0.001) for r in rows)


def test_errors_and_raising_clients_are_recorded_and_the_step_goes_on():
    spec = _spec(concurrency=[2])
    client = FakeAsyncClient(fail_every=4, raise_every=5)
    row, rows = _run(spec, spec.load.fixed_steps()[0], client)
    kinds = sorted(r["error_kind"] for r in rows if r["status"] == "error")
    assert len(rows) == 12
    assert kinds == ["bad_response"] * 2 + ["http_5xx"] * 3  # calls 4, 8, 12 answer 503; 5, 10 raise
    assert any("connection reset" in (r["error_message"] or "") for r in rows)
    assert row["n_errors"] == 5 and row["error_kinds"] == [
        {"kind": "bad_response", "count": 2}, {"kind": "http_5xx", "count": 3}]


def test_open_loop_sends_at_the_arrivals_and_max_inflight_holds_the_rest_back():
    spec = _spec(rate=[2000.0], max_inflight=2)
    client = FakeAsyncClient(delay_s=0.01)
    row, rows = _run(spec, spec.load.fixed_steps()[0], client)
    assert client.peak == 2
    assert len(rows) == 12 and row["offered_rps"] == 2000.0 and row["mode"] == "rate"
    expected = [t * 1000 for _, t in zip(range(12), arrival_offsets(2000.0, 1.0, seed=3000))]
    assert [r["scheduled_offset_ms"] for r in rows] == pytest.approx(expected)
    # arrivals 0.5 ms apart, answers after 10 ms with two in flight: later ones were held back
    assert rows[-1]["sent_offset_ms"] > rows[-1]["scheduled_offset_ms"] + 10


def test_a_duration_step_stops_sending_after_it_and_keeps_what_was_in_flight():
    spec = parse_spec({"tr_id": "lt", "models": ["smollm2:135m"], "load": {"concurrency": [2], "duration_s": 0.2}})
    client = FakeAsyncClient(delay_s=0.01)
    row, rows = _run(spec, spec.load.fixed_steps()[0], client)
    assert len(rows) == client.calls >= 2
    # none admitted after the duration, which counts from the first measured request (on a busy machine
    # that one is sent some ms after the step's start)
    first = min(r["scheduled_offset_ms"] for r in rows)
    assert all(r["scheduled_offset_ms"] < first + 200 for r in rows)
    assert row["n_ok"] == len(rows)


def test_a_closed_gate_stops_the_step_with_run_cancelled_and_closes_the_client():
    from trbench.run.single import Gate, RunCancelled

    spec = _spec(concurrency=[2])
    gate = Gate()

    class ClosingClient(FakeAsyncClient):  # the flow is stopped after the third request
        async def chat(self, req):
            if self.calls == 3:
                gate.close()
            return await super().chat(req)

    client = ClosingClient()
    plan = runner.StepPlan(tr_id=spec.tr_id, cell=spec.cells()[0], step=spec.load.fixed_steps()[0], step_index=0,
                           instance="i0", instance_url="http://fake")
    with pytest.raises(RunCancelled):
        runner.execute_step(spec, plan, lambda _b, _u: client, PROMPTS, "digest", gate)
    assert client.closed and client.calls < 12
