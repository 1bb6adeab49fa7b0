"""Matrix runs bounded by time (spec duration_s): a run sends whole prompts until the time is up, records
how many it sent, and is valid only with min_ok_requests ok per cache state. Against a fake client (no
server): FakeClient answers after a fixed sleep with a RawExchange built as the real clients build one."""

from __future__ import annotations

import time

import pytest

from trbench.backends import ChatRequest, RawExchange
from trbench.config.prompts import PromptSuite
from trbench.config.spec import SpecError, parse_spec
from trbench.run.settings import RunSettings
from trbench.run.single import RunPlan, TimeBound, execute_run, planned_requests, request_slots

PROMPTS = PromptSuite(name="t", prompts=[{"id": "p0", "user": "hello"}, {"id": "p1", "user": "bye"}])
BASE = {"tr_id": "t", "models": ["m"], "ttft": "cold", "max_tokens": 4}


class FakeClient:
    """A fake (no server): answers each request after `delay_s`; every `fail_every`-th with a 503."""

    def __init__(self, delay_s: float = 0.01, fail_every: int = 0) -> None:
        self.delay_s, self.fail_every, self.calls = delay_s, fail_every, 0

    def chat(self, req: ChatRequest) -> RawExchange:
        self.calls += 1
        t_send = time.perf_counter_ns()
        time.sleep(self.delay_s)
        t1 = time.perf_counter_ns()
        base = dict(backend="openai", url="http://fake", model=req.model, sent_at_unix=time.time(),
                    t_send_ns=t_send, t_end_ns=t1 + 1000)
        if self.fail_every and self.calls % self.fail_every == 0:
            return RawExchange(**base, status="error", error_kind="http_5xx", http_status=503, error_message="busy")
        return RawExchange(**base, token_times_ns=[t1 - 2000, t1 - 1000, t1], token_kinds=["content"] * 3,
                           text="a b c", finish_reason="length", http_status=200, prompt_tokens=20, output_tokens=3)

    def close(self) -> None:
        pass


def _plan(spec) -> RunPlan:
    return RunPlan(tr_id=spec.tr_id, cell=spec.cells()[0], cell_hash="h", run_index=0, instance="i0",
                   instance_url="http://fake")


def _run(spec, client: FakeClient, warmups: int = 0):
    return execute_run(RunSettings.of(spec), _plan(spec), client, PROMPTS, None, "d", warmups)


def error_of(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_duration_s_is_validated_in_one_line():
    assert parse_spec({**BASE, "duration_s": 2}).duration_s == 2.0
    assert "field 'duration_s'" in error_of({**BASE, "duration_s": 0})
    both = error_of({**BASE, "duration_s": 2, "requests_per_run": 5})
    assert "field 'duration_s'" in both and "fix: give one of them" in both
    # min_ok_requests is not held to requests_per_run when time bounds the run; its default is 1
    assert parse_spec({**BASE, "duration_s": 2, "min_ok_requests": 10}).min_ok == 10
    assert parse_spec({**BASE, "duration_s": 2}).min_ok == 1
    assert parse_spec(BASE).min_ok == 3
    # overriding another field keeps the bound (the default requests_per_run is not taken as given)
    assert parse_spec({**BASE, "duration_s": 2}).with_overrides(runs=2).duration_s == 2.0


def test_a_run_bounded_by_time_sends_until_the_time_is_up_and_counts_what_it_sent():
    spec = parse_spec({**BASE, "duration_s": 0.3})
    client = FakeClient(delay_s=0.02)
    t0 = time.perf_counter()
    result = _run(spec, client, warmups=2)
    took = time.perf_counter() - t0
    row = result.run_row
    measured = [r for r in result.request_rows if not r["is_warmup"]]
    # about 0.3 s / 0.02 s per request, whatever the 3 requests_per_run default says
    assert 5 <= row["n_requests"] == len(measured) <= 16
    assert row["n_warmup"] == 2 and client.calls == row["n_requests"] + 2
    assert 0.3 <= took < 0.3 + 0.2  # the last prompt started before the time was up, none after
    assert row["valid"] and row["min_ok_requests"] == 1
    assert [r["prompt_id"] for r in measured[:3]] == ["p0", "p1", "p0"]  # the suite cycles


def test_a_run_bounded_by_time_keeps_every_prompt_whole_in_each_cache_state():
    spec = parse_spec({**BASE, "ttft": "both", "duration_s": 0.15})
    result = _run(spec, FakeClient(delay_s=0.02))
    targets = [r["cache_target"] for r in result.request_rows if not r["is_warmup"]]
    assert targets and targets.count("cold") == targets.count("cached")
    assert targets == ["cold", "cached"] * (len(targets) // 2)


def test_a_run_bounded_by_time_still_needs_min_ok_requests():
    spec = parse_spec({**BASE, "duration_s": 0.2, "min_ok_requests": 1000})
    row = _run(spec, FakeClient(delay_s=0.02)).run_row
    assert not row["valid"] and "fewer than min_ok_requests=1000" in row["invalid_reason"]
    failing = parse_spec({**BASE, "duration_s": 0.2})
    row = _run(failing, FakeClient(delay_s=0.02, fail_every=1)).run_row
    assert row["n_requests"] > 0 and row["n_ok"] == 0 and not row["valid"]


def test_a_run_of_requests_is_unchanged_and_its_count_is_known_before():
    spec = parse_spec({**BASE, "ttft": "cached", "requests_per_run": 2})
    settings = RunSettings.of(spec)
    slots = list(request_slots(settings, _plan(spec), 1))
    assert len(slots) == planned_requests(settings, 1) == 1 + 2 * 2  # a warm-up, then per prompt a 1-token warm-up
    assert [s.index for s in slots] == list(range(5)) and [s.max_tokens for s in slots] == [4, 1, 4, 1, 4]
    assert planned_requests(RunSettings.of(parse_spec({**BASE, "duration_s": 1})), 1) == 0
    assert TimeBound(None).more()
    bound = TimeBound(0.05)
    assert bound.more()
    time.sleep(0.06)
    assert not bound.more()
