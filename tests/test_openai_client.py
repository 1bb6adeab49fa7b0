"""trbench.backends.openai.OpenAIClient against a REAL llama.cpp server (the embedded engine, bundled SmolLM2).

One server process for the module (EmbeddedInstance, always stopped); requests are kept short.
"""

from __future__ import annotations

import socket
import statistics
import uuid
from collections.abc import Iterator

import httpx
import pytest

from trbench.backends.base import ChatRequest
from trbench.backends.openai import OpenAIClient
from trbench.engines.embedded import EmbeddedInstance
from trbench.measure.metrics import derive
from trbench.config.spec import Cell

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
NUM_CTX = 1024
CELL = Cell(model=MODEL, num_gpu=0, num_ctx=NUM_CTX, temperature=0.0)
LONG_ANSWER = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedInstance]:
    # one thread: llama.cpp's spin-waiting worker threads crawl when a shared CPU is busy
    inst = EmbeddedInstance("test-openai", "127.0.0.1", free_port(), threads=1,
                            log_dir=tmp_path_factory.mktemp("llamacpp-logs"), load_timeout_s=120)
    try:
        inst.prepare(CELL)
        yield inst
    finally:
        inst.stop()


@pytest.fixture
def client(instance: EmbeddedInstance) -> Iterator[OpenAIClient]:
    instance.prepare(CELL)  # a no-op unless a test left another cell loaded
    c = OpenAIClient(instance.url, timeout_s=120.0)
    try:
        yield c
    finally:
        c.close()


def _req(messages: list[dict[str, str]], **kw) -> ChatRequest:
    base = {"model": MODEL, "messages": messages, "temperature": 0.0, "max_tokens": 24, "seed": 42}
    base.update(kw)
    return ChatRequest(**base)


def test_real_tokens_counted_by_the_server(instance: EmbeddedInstance, client: OpenAIClient) -> None:
    req = _req(LONG_ANSWER)
    ex = client.chat(req)
    assert ex.status == "ok", ex.error_message
    assert ex.http_status == 200
    assert ex.output_tokens is not None and 0 < ex.output_tokens <= req.max_tokens
    assert ex.output_tokens == ex.server_decode_tokens  # usage.completion_tokens == timings.predicted_n
    assert ex.prompt_tokens is not None and ex.prompt_tokens > 0
    assert ex.text.strip()
    assert ex.token_times_ns and ex.token_times_ns == sorted(ex.token_times_ns)
    assert ex.t_send_ns < ex.token_times_ns[0] <= ex.token_times_ns[-1] <= ex.t_end_ns
    assert derive(ex).output_tokens == ex.output_tokens
    # the same request, not streamed, reports the same usage and text (temperature 0, same seed)
    body = client.body(req) | {"stream": False}
    body.pop("stream_options")
    with httpx.Client(trust_env=False, timeout=120) as http:
        data = http.post(f"{instance.url}/v1/chat/completions", json=body).json()
    assert data["usage"]["completion_tokens"] == ex.output_tokens
    assert data["usage"]["prompt_tokens"] == ex.prompt_tokens
    assert data["choices"][0]["message"]["content"] == ex.text


def test_llamacpp_timings_parsed(client: OpenAIClient) -> None:
    ex = client.chat(_req(LONG_ANSWER))
    assert ex.status == "ok", ex.error_message
    assert ex.server_decode_ms is not None and ex.server_decode_ms > 0
    assert ex.server_prefill_ms is not None and ex.server_prefill_ms > 0
    assert ex.server_total_ms == pytest.approx(ex.server_prefill_ms + ex.server_decode_ms)
    assert ex.cached_tokens is not None
    m = derive(ex)
    assert m.prefill_ms == ex.server_prefill_ms
    # llama.cpp's own convention: the first token comes out of prefill, predicted_ms spans n - 1 steps
    assert m.decode_tps == pytest.approx((ex.server_decode_tokens - 1) / ex.server_decode_ms * 1000.0)
    # the server's times fit inside what the client saw
    assert ex.server_total_ms <= m.e2e_ms


def test_cached_tokens_with_and_without_prompt_cache(client: OpenAIClient) -> None:
    prompt = [{"role": "user", "content": f"{uuid.uuid4().hex} Name three colours of the rainbow."}]
    first = client.chat(_req(prompt, max_tokens=8, cache_prompt=True))
    again = client.chat(_req(prompt, max_tokens=8, cache_prompt=True))
    assert first.status == again.status == "ok"
    assert again.cached_tokens is not None and again.cached_tokens > 0
    assert again.cached_tokens <= again.prompt_tokens
    unique = [{"role": "user", "content": f"{uuid.uuid4().hex} Name three colours of the rainbow."}]
    fresh = client.chat(_req(unique, max_tokens=8, cache_prompt=False))
    assert fresh.status == "ok", fresh.error_message
    assert fresh.cached_tokens == 0


def test_client_decode_rate_agrees_with_server(client: OpenAIClient) -> None:
    client.chat(_req(LONG_ANSWER, max_tokens=8))  # warm-up
    ratios = []
    for seed in range(5):
        ex = client.chat(_req(LONG_ANSWER, max_tokens=32, temperature=0.8, seed=seed))
        assert ex.status == "ok", ex.error_message
        m = derive(ex)
        if m.decode_tps and m.decode_tps_client and (m.output_tokens or 0) >= 8:
            ratios.append(m.decode_tps_client / m.decode_tps)
    assert len(ratios) >= 3, f"too few requests with 8+ tokens to compare: {ratios}"
    # loose: the machines are shared, and the two clocks measure slightly different spans
    assert statistics.median(ratios) == pytest.approx(1.0, rel=0.20), ratios


def test_unknown_route_is_http_4xx(instance: EmbeddedInstance) -> None:
    c = OpenAIClient(f"{instance.url}/no-such-prefix", timeout_s=30.0)
    try:
        ex = c.chat(_req(LONG_ANSWER, max_tokens=4))
    finally:
        c.close()
    assert ex.status == "error"
    assert ex.error_kind == "http_4xx"
    assert ex.http_status == 404
    assert "HTTP 404" in ex.error_message
    assert ex.token_times_ns == []


def test_invalid_body_is_http_4xx_with_server_message(client: OpenAIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "body", lambda req: {"model": MODEL, "stream": True, "max_tokens": 4})
    ex = client.chat(_req(LONG_ANSWER))
    assert ex.status == "error"
    assert ex.error_kind == "http_4xx"
    assert ex.http_status == 400
    assert "messages" in ex.error_message  # llama.cpp's own words: 'messages' is required


def _props_n_ctx(url: str) -> int:
    with httpx.Client(trust_env=False, timeout=30) as http:
        props = http.get(f"{url}/props").json()
    return props.get("default_generation_settings", {}).get("n_ctx", props.get("n_ctx"))


def test_server_runs_with_requested_context(instance: EmbeddedInstance) -> None:
    instance.prepare(CELL)
    assert _props_n_ctx(instance.url) == NUM_CTX


def test_prepare_restarts_only_when_server_settings_change(instance: EmbeddedInstance) -> None:
    try:
        instance.prepare(CELL)
        pid = instance.pid
        assert pid is not None
        # same cell, and a cell differing only in temperature (a per-request setting): no restart
        assert instance.prepare(CELL) is None
        assert instance.prepare(CELL.model_copy(update={"temperature": 0.7})) is None
        assert instance.pid == pid
        # another context size: a new process, with that context
        load_ms = instance.prepare(CELL.model_copy(update={"num_ctx": 2 * NUM_CTX}))
        assert load_ms is not None and load_ms > 0
        assert instance.pid is not None and instance.pid != pid
        assert _props_n_ctx(instance.url) == 2 * NUM_CTX
    finally:
        instance.prepare(CELL)  # leave the module's server as the other tests expect it
    assert _props_n_ctx(instance.url) == NUM_CTX
