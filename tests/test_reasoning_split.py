"""Reasoning streamed before the answer: time to first answer token, reasoning and answer tokens, and the
decode rate of each part (metrics.DEFINITIONS), read from FAKE servers that stream reasoning first as the
real ones document it: the fake Ollama (message.thinking, think on by default for a thinking model) on a
StepClock, so the figures are exact, and the paced fake in llama.cpp's OpenAI-compatible shape
(delta.reasoning_content before delta.content, --reasoning-format deepseek/auto) and Ollama's."""

from __future__ import annotations

import pytest

from tests.fakes.fake_ollama import FakeModel, FakeOllama, StepClock
from tests.fakes.fake_paced import FakePacedServer
from trbench.backends import streaming
from trbench.backends.base import ChatRequest
from trbench.backends.ollama import OllamaClient
from trbench.backends.openai import OpenAIClient
from trbench.measure.metrics import derive

STEP_S = 0.010
THINK = [f" r{i}" for i in range(6)]
ANSWER = [f" a{i}" for i in range(10)]


def _req(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": "Why is the sky blue?"}], max_tokens=64)


@pytest.fixture
def thinker(monkeypatch):
    clock = StepClock()
    monkeypatch.setattr(streaming, "time", clock)  # the client stamps chunks on the fake's clock
    model = FakeModel(content_tokens=list(ANSWER), think_tokens=list(THINK), token_delay_s=STEP_S,
                      load_delay_s=0.5, prefill_delay_s=0.2)
    with FakeOllama({"think:1b": model}, clock=clock) as fake:
        yield fake


def test_ollama_thinking_first_splits_tokens_and_rates_exactly(thinker: FakeOllama) -> None:
    client = OllamaClient(thinker.url, timeout_s=30.0)
    try:
        ex = client.chat(_req("think:1b"))
    finally:
        client.close()
    assert ex.status == "ok", ex.error_message
    m = derive(ex)
    # the first thinking token leaves prefill at 700 ms; the answer starts six decode steps later
    assert m.ttft_ms == pytest.approx(700.0)
    assert m.ttfat_ms == pytest.approx(700.0 + len(THINK) * STEP_S * 1000)
    # eval_count holds thinking, answer and the unstreamed end-of-sequence token
    assert m.output_tokens == len(THINK) + len(ANSWER) + 1
    assert (m.reasoning_tokens, m.answer_tokens) == (len(THINK), len(ANSWER) + 1)
    assert m.decode_tps_reasoning == pytest.approx(1 / STEP_S, rel=1e-6)
    assert m.decode_tps_answer == pytest.approx(1 / STEP_S, rel=1e-6)
    assert m.decode_tps == pytest.approx(1 / STEP_S, rel=0.005)  # the server's view spans both parts


@pytest.mark.parametrize(("client_type", "model"), [(OpenAIClient, "m"), (OllamaClient, "m:1b")])
def test_reasoning_first_in_each_wire_shape(client_type, model: str) -> None:
    pace = 0.02
    with FakePacedServer(pace_s=pace, first_s=0.02, n_tokens=12, reasoning=4) as fake:
        client = client_type(fake.url, timeout_s=10.0)
        try:
            ex = client.chat(_req(model))
        finally:
            client.close()
    assert ex.status == "ok", ex.error_message
    assert ex.token_kinds == ["reasoning"] * 4 + ["content"] * 8
    assert ex.reasoning_text == "t0 t1 t2 t3 " and ex.text.startswith("t4 ")
    m = derive(ex)
    assert (m.reasoning_tokens, m.answer_tokens) == (4, 8)  # no server count: the chunks
    assert m.ttft_ms is not None and m.ttfat_ms is not None
    # four tokens a pace apart came before the answer (the client may read late, never early)
    assert m.ttfat_ms - m.ttft_ms >= 0.8 * 4 * pace * 1000
    assert m.decode_tps_reasoning == pytest.approx(1 / pace, rel=0.35)
    assert m.decode_tps_answer == pytest.approx(1 / pace, rel=0.35)


def test_no_reasoning_leaves_every_token_to_the_answer() -> None:
    with FakePacedServer(pace_s=0.005, first_s=0.005, n_tokens=5) as fake:
        client = OpenAIClient(fake.url, timeout_s=10.0)
        try:
            m = derive(client.chat(_req("m")))
        finally:
            client.close()
    assert (m.reasoning_tokens, m.answer_tokens) == (0, 5)
    assert m.ttfat_ms == m.ttft_ms and m.decode_tps_reasoning is None
