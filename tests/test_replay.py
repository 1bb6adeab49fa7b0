"""trbench.backends.replay: an exchange built from stream lines received elsewhere (the asynchronous load
client, an external runner) reads exactly as the live client reads the same stream.

Against the FAKE Ollama server of tests/fakes/fake_ollama.py (no Ollama can run here), and on SSE lines
shaped as llama.cpp's server sends them.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fakes.fake_ollama import FakeModel, FakeOllama

from trbench.backends import OllamaClient, RawExchange, replay
from trbench.backends.base import ChatRequest

CONTENT = ["Blue", " light", " scatters", "."]
MODELS = {
    # fixed durations: the fake's measured ones differ between the live and the replayed request
    "fake-ok:1b": FakeModel(content_tokens=list(CONTENT), prompt_eval_count=12,
                            durations_ns={"total_duration": 9_000_000, "load_duration": 1_000_000,
                                          "prompt_eval_duration": 2_000_000, "eval_duration": 6_000_000}),
    "fake-midstream-oom:1b": FakeModel(content_tokens=list(CONTENT), fail="mid_stream", fail_after_tokens=2,
                                       error_message="CUDA error: out of memory"),
    "fake-midstream:1b": FakeModel(content_tokens=list(CONTENT), fail="mid_stream", fail_after_tokens=2),
}
# fields a replay must reproduce; times differ between two requests and are checked apart
OBSERVED = ("text", "reasoning_text", "finish_reason", "prompt_tokens", "output_tokens", "cached_tokens",
            "server_decode_tokens", "server_prefill_ms", "server_decode_ms", "status", "error_kind")


@pytest.fixture(scope="module")
def fake() -> FakeOllama:
    with FakeOllama(MODELS) as server:
        yield server


def _received(url: str, body: dict) -> tuple[RawExchange, list[tuple[int, str]]]:
    """What an outside client keeps: its send time and every line with its arrival time, unparsed."""
    ex = RawExchange(backend="ollama", url=url, model=body["model"], sent_at_unix=time.time(),
                     t_send_ns=time.perf_counter_ns(), t_end_ns=0)
    with httpx.stream("POST", url, json=body, timeout=30) as resp:
        lines = [(time.perf_counter_ns(), line) for line in resp.iter_lines()]
    ex.t_end_ns = time.perf_counter_ns()
    return ex, lines


@pytest.mark.parametrize("model", sorted(MODELS))
def test_replayed_lines_read_as_the_live_client_reads_them(fake: FakeOllama, model: str) -> None:
    req = ChatRequest(model=model, messages=[{"role": "user", "content": "Why is the sky blue?"}], max_tokens=8)
    client = OllamaClient(fake.url, timeout_s=30)
    try:
        live = client.chat(req)
    finally:
        client.close()
    ex, lines = _received(f"{fake.url}{OllamaClient.path(req)}", OllamaClient.body(req))
    replayed = replay(ex, lines)
    assert {f: getattr(replayed, f) for f in OBSERVED} == {f: getattr(live, f) for f in OBSERVED}
    assert len(replayed.token_times_ns) == len(live.token_times_ns)
    # each chunk keeps the arrival time it was received at, in order, inside the request
    stamped = [t for t, line in lines if json.loads(line).get("message", {}).get("content")]
    assert replayed.token_times_ns == stamped[:len(replayed.token_times_ns)]
    assert ex.t_send_ns < replayed.token_times_ns[0] <= replayed.token_times_ns[-1] < ex.t_end_ns


def test_sse_replay_reads_llamacpp_timings_and_stops_at_done() -> None:
    lines = [(5, ": keep-alive"), (10, 'data: {"choices":[{"delta":{"content":"Hi"}}]}'),
             (20, 'data: {"choices":[{"delta":{"content":" you"},"finish_reason":"stop"}],'
                  '"usage":{"prompt_tokens":7,"completion_tokens":3},'
                  '"timings":{"cache_n":6,"prompt_ms":1.5,"predicted_n":3,"predicted_ms":20.0,'
                  '"predicted_per_second":150.0}}'),
             (30, "data: [DONE]"), (40, 'data: {"choices":[{"delta":{"content":"after done"}}]}')]
    ex = replay(RawExchange(backend="openai", url="u", model="m", sent_at_unix=0, t_send_ns=0, t_end_ns=50), lines)
    assert (ex.text, ex.token_times_ns, ex.finish_reason) == ("Hi you", [10, 20], "stop")
    assert (ex.prompt_tokens, ex.cached_tokens, ex.output_tokens, ex.server_decode_tokens) == (7, 6, 3, 3)
    assert (ex.server_prefill_ms, ex.server_decode_ms, ex.server_total_ms) == (1.5, 20.0, 21.5)
    assert ex.server_decode_tps_reported == 150.0 and ex.status == "ok"


@pytest.mark.parametrize(("lines", "kind"), [
    ([(1, 'data: {"error":{"message":"CUDA error: out of memory"}}')], "oom"),
    ([(1, "data: {not json")], "bad_response"),
    ([(1, 'data: {"choices":[]}'), (2, "data: [DONE]")], "bad_response"),  # no text at all
    ([], "bad_response"),
])
def test_sse_replay_fails_as_the_live_client_fails(lines: list, kind: str) -> None:
    ex = replay(RawExchange(backend="openai", url="u", model="m", sent_at_unix=0, t_send_ns=0, t_end_ns=9), lines)
    assert (ex.status, ex.error_kind) == ("error", kind)
