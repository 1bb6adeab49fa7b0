"""What trbench reads from Ollama's counts and durations, against a FAKE Ollama server
(tests/fakes/fake_ollama.py) that counts as Ollama's runner does (runner/ollamarunner/runner.go):
eval_count includes the first token and the unstreamed end-of-sequence token, eval_duration
starts once the first token is out of prefill, prompt_eval_count is the whole prompt even when
most of it is cached.

The known-pace test runs the fake on a StepClock: virtual time that only the fake moves, one
decode step per token, read by the client as its own clock (so the result is exact, with no
wall-clock tolerance on this shared machine)."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.fake_ollama import FakeModel, FakeOllama, StepClock
from trbench.backends import streaming
from trbench.backends.base import ChatRequest
from trbench.backends.ollama import OllamaClient
from trbench.measure.metrics import derive

STEP_S = 0.010  # the true pace: 100 tokens/s
STREAMED = 40


def _chat(url: str, model: str, text: str = "Why is the sky blue?", max_tokens: int = 256):
    client = OllamaClient(url, timeout_s=30.0)
    try:
        return client.chat(ChatRequest(model=model, messages=[{"role": "user", "content": text}],
                                       max_tokens=max_tokens))
    finally:
        client.close()


@pytest.fixture
def paced(monkeypatch):
    clock = StepClock()
    monkeypatch.setattr(streaming, "time", clock)  # the client stamps chunks on the fake's clock
    model = FakeModel(content_tokens=[f" t{i}" for i in range(STREAMED)], token_delay_s=STEP_S,
                      load_delay_s=0.5, prefill_delay_s=0.2)
    with FakeOllama({"pace:1b": model}, clock=clock) as fake:
        yield fake


def test_known_pace_decode_rates_match_the_true_pace(paced):
    ex = _chat(paced.url, "pace:1b")
    assert ex.status == "ok", ex.error_message
    final = paced.final_chunks[-1]
    # counted as Ollama's runner counts: 40 streamed + the end-of-sequence token
    assert len(ex.token_times_ns) == STREAMED and final["eval_count"] == STREAMED + 1
    assert final["done_reason"] == "stop"
    # the decode clock starts with the first token's logits: 39 steps to the last streamed token,
    # one more for the end-of-sequence token
    assert final["eval_duration"] == pytest.approx(STREAMED * STEP_S * 1e9)
    m = derive(ex)
    true_pace = 1.0 / STEP_S
    print(f"true pace {true_pace:.3f} tok/s; decode_tps {m.decode_tps:.3f} "
          f"({(m.decode_tps / true_pace - 1) * 100:+.3f} %); decode_tps_client {m.decode_tps_client:.3f} "
          f"({(m.decode_tps_client / true_pace - 1) * 100:+.3f} %); eval_count/eval_duration "
          f"{final['eval_count'] / final['eval_duration'] * 1e9:.3f}; (output_tokens-1)/span "
          f"{(ex.output_tokens - 1) / ((ex.token_times_ns[-1] - ex.token_times_ns[0]) / 1e9):.3f}")
    assert m.decode_tps == pytest.approx(true_pace, rel=0.005)
    assert m.decode_tps_client == pytest.approx(true_pace, rel=0.005)
    # the conventions they replace are off by one token in 40 (2.5 %), beyond the tolerance
    assert final["eval_count"] / final["eval_duration"] * 1e9 == pytest.approx(true_pace * 41 / 40)
    span_s = (ex.token_times_ns[-1] - ex.token_times_ns[0]) / 1e9
    assert (ex.output_tokens - 1) / span_s == pytest.approx(true_pace * 40 / 39)
    # prefill and load as Ollama splits them: the first token's time is prefill's
    assert m.ttft_ms == pytest.approx(700.0) and m.prefill_ms == pytest.approx(200.0) and m.load_ms == pytest.approx(500.0)


def test_a_length_stop_counts_no_end_of_sequence_token(paced):
    ex = _chat(paced.url, "pace:1b", max_tokens=10)
    final = paced.final_chunks[-1]
    assert final["done_reason"] == "length" and final["eval_count"] == 10 == len(ex.token_times_ns)
    m = derive(ex)
    assert m.decode_tps == pytest.approx(1.0 / STEP_S, rel=0.005)
    assert m.decode_tps_client == pytest.approx(1.0 / STEP_S, rel=0.005)


LONG_PROMPT = " ".join(f"w{i}" for i in range(200))


def test_prompt_eval_count_is_the_whole_prompt_when_cached_and_the_state_stays_unknown():
    with FakeOllama({"m:1b": FakeModel(prefill_delay_s=0.05)}) as fake:
        cold = _chat(fake.url, "m:1b", LONG_PROMPT)
        warm = _chat(fake.url, "m:1b", LONG_PROMPT)
    assert cold.prompt_tokens == warm.prompt_tokens == 200
    assert warm.server_prefill_ms < cold.server_prefill_ms / 5  # only the last token was evaluated
    # Ollama before prompt_eval_cached_count says nothing of the cache: no guess
    assert warm.cached_tokens is None and derive(warm).cache_state == derive(cold).cache_state == "unknown"


def test_newer_ollama_reports_cached_tokens_and_the_state_follows():
    with FakeOllama({"m:1b": FakeModel(prefill_delay_s=0.05)}, reports_cached=True) as fake:
        cold = _chat(fake.url, "m:1b", LONG_PROMPT)
        warm = _chat(fake.url, "m:1b", LONG_PROMPT)
        half = _chat(fake.url, "m:1b", " ".join(LONG_PROMPT.split()[:100] + [f"x{i}" for i in range(100)]))
    assert cold.cached_tokens == 0 and derive(cold).cache_state == "cold"
    assert warm.cached_tokens == 199 and warm.prompt_tokens == 200 and derive(warm).cache_state == "cached"
    assert half.cached_tokens == 100 and derive(half).cache_state == "partial"


def test_unload_answers_once_without_loading():
    with FakeOllama() as fake:
        with httpx.Client(trust_env=False, timeout=10) as http:
            _chat(fake.url, "fake-llama:1b")
            assert [m["name"] for m in http.get(f"{fake.url}/api/ps").json()["models"]] == ["fake-llama:1b"]
            r = http.post(f"{fake.url}/api/generate", json={"model": "fake-llama:1b", "keep_alive": 0})
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
            assert r.json()["done"] is True and r.json()["done_reason"] == "unload" and r.json()["response"] == ""
            assert http.get(f"{fake.url}/api/ps").json()["models"] == []
            # nothing was generated for it
            assert len(fake.final_chunks) == 1
            missing = http.post(f"{fake.url}/api/generate", json={"model": "absent", "keep_alive": 0})
            assert missing.status_code == 404


def test_names_without_a_tag_are_latest():
    with FakeOllama({"llama3.2": FakeModel()}) as fake:
        with httpx.Client(trust_env=False, timeout=10) as http:
            assert [m["name"] for m in http.get(f"{fake.url}/api/tags").json()["models"]] == ["llama3.2:latest"]
        for name in ("llama3.2", "llama3.2:latest", "library/llama3.2", "registry.ollama.ai/library/llama3.2:latest",
                     "Llama3.2"):
            assert _chat(fake.url, name).status == "ok", name
        assert _chat(fake.url, "llama3.2:1b").error_kind == "http_4xx"
