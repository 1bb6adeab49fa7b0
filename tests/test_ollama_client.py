"""trbench.backends.ollama.OllamaClient against the FAKE Ollama server of tests/fakes/fake_ollama.py.

The fake streams NDJSON with real delays and Ollama's error shapes; see its module docstring.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fakes.fake_ollama import MID_STREAM_MESSAGE, OOM_MESSAGES, SERVER_ERROR_MESSAGE, FakeModel, FakeOllama

from trbench.backends.base import ChatRequest, is_oom
from trbench.backends.ollama import OllamaClient
from trbench.engines import ollama_api
from trbench.engines.external import ExternalInstance
from trbench.measure.metrics import derive

CONTENT = ["Blue", " light", " scatters", " more", " than", " red", " light", "."]
THINKING = ["Hmm", ",", " Rayleigh", " scattering", "?"]
FIXED_NS = {
    "total_duration": 1_500_000_000,
    "load_duration": 250_000_000,
    "prompt_eval_duration": 120_000_000,
    "eval_duration": 2_000_000_000,
}

MODELS = {
    "fake-llama:1b": FakeModel(content_tokens=list(CONTENT)),
    "fake-fixed:1b": FakeModel(content_tokens=list(CONTENT), durations_ns=dict(FIXED_NS), prompt_eval_count=26),
    "fake-decode:1b": FakeModel(content_tokens=[f" t{i}" for i in range(20)], token_delay_s=0.01),
    "fake-thinker:1b": FakeModel(content_tokens=list(CONTENT), think_tokens=list(THINKING), token_delay_s=0.01,
                                 family="qwen3"),
    "fake-oom:1b": FakeModel(fail="oom"),
    "fake-broken:1b": FakeModel(fail="http_500"),
    "fake-midstream:1b": FakeModel(content_tokens=list(CONTENT), fail="mid_stream", fail_after_tokens=3),
    "fake-midstream-oom:1b": FakeModel(content_tokens=list(CONTENT), fail="mid_stream", fail_after_tokens=2,
                                       error_message="CUDA error: out of memory"),
    "fake-slow:1b": FakeModel(load_delay_s=5.0),
    "fake-stall:1b": FakeModel(content_tokens=list(CONTENT), stall_after_tokens=3),
    "fake-trickle:1b": FakeModel(content_tokens=[f" t{i}" for i in range(40)], token_delay_s=0.1),
    "fake-hung-load:1b": FakeModel(load_hangs=True),
    "fake-hung-unload:1b": FakeModel(unload_hangs=True),
}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(MODELS) as server:
        yield server


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[OllamaClient]:
    c = OllamaClient(fake.url, timeout_s=10.0)
    try:
        yield c
    finally:
        c.close()


def _req(model: str, **kw) -> ChatRequest:
    base = {"model": model, "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "temperature": 0.7, "max_tokens": 64}
    base.update(kw)
    return ChatRequest(**base)


def test_fake_ollama_options_reach_server(fake: FakeOllama, client: OllamaClient) -> None:
    req = _req("fake-llama:1b", temperature=0.25, max_tokens=5, num_ctx=4096, num_gpu=12, seed=7)
    ex = client.chat(req)
    assert ex.status == "ok", ex.error_message
    body = fake.bodies("/api/chat")[-1]
    assert body["model"] == "fake-llama:1b"
    assert body["messages"] == req.messages
    assert body["stream"] is True
    assert body["options"] == {"temperature": 0.25, "num_predict": 5, "num_ctx": 4096, "num_gpu": 12, "seed": 7}
    # the fake honoured num_predict, and the client took the server's count and reason
    assert ex.output_tokens == 5
    assert ex.finish_reason == "length"
    assert ex.text == "".join(CONTENT[:5])
    assert fake.final_chunks[-1]["eval_count"] == 5


def test_fake_ollama_unset_options_are_not_sent(fake: FakeOllama, client: OllamaClient) -> None:
    client.chat(_req("fake-llama:1b", temperature=0.0, max_tokens=3))
    options = fake.last_options("/api/chat")
    assert options == {"temperature": 0.0, "num_predict": 3}


def test_fake_ollama_tokens_and_durations_ns_to_ms(client: OllamaClient) -> None:
    ex = client.chat(_req("fake-fixed:1b"))
    assert ex.status == "ok", ex.error_message
    assert ex.http_status == 200
    assert ex.text == "".join(CONTENT)
    assert ex.reasoning_text == ""
    assert len(ex.token_times_ns) == len(CONTENT)
    assert ex.token_kinds == ["content"] * len(CONTENT)
    assert ex.finish_reason == "stop"
    assert ex.prompt_tokens == 26
    # eval_count: every streamed token and the end-of-sequence token the runner sampled, not streamed
    assert ex.output_tokens == len(CONTENT) + 1
    assert ex.server_decode_tokens == len(CONTENT) + 1
    assert ex.server_total_ms == pytest.approx(1500.0)
    assert ex.server_load_ms == pytest.approx(250.0)
    assert ex.server_prefill_ms == pytest.approx(120.0)
    assert ex.server_decode_ms == pytest.approx(2000.0)
    m = derive(ex)
    assert m.prefill_ms == pytest.approx(120.0)
    assert m.load_ms == pytest.approx(250.0)
    assert m.decode_tps == pytest.approx(len(CONTENT) / 2.0)  # (eval_count - 1) / eval_duration[s]
    assert m.output_tokens == len(CONTENT) + 1
    assert m.prompt_tokens == 26


def test_fake_ollama_decode_tps_from_eval_count_and_duration(fake: FakeOllama, client: OllamaClient) -> None:
    ex = client.chat(_req("fake-decode:1b"))
    assert ex.status == "ok", ex.error_message
    final = fake.final_chunks[-1]
    m = derive(ex)
    assert m.output_tokens == final["eval_count"] == 21  # 20 streamed + the end-of-sequence token
    assert m.decode_tps == pytest.approx((final["eval_count"] - 1) / final["eval_duration"] * 1e9, rel=1e-9)
    # the fake takes 10 ms per decode step, so the rate is at most 100/s and not far below it
    assert 40.0 < m.decode_tps <= 100.5
    # the client clock sees the same pace (19 gaps of ~10 ms)
    assert m.decode_tps_client is not None
    assert m.decode_tps_client == pytest.approx(m.decode_tps, rel=0.3)
    assert m.itl_p50_ms is not None and m.itl_p50_ms >= 9.0


def test_fake_ollama_thinking_first_makes_ttft_earlier_than_ttfat(fake: FakeOllama, client: OllamaClient) -> None:
    ex = client.chat(_req("fake-thinker:1b"))
    assert ex.status == "ok", ex.error_message
    assert ex.reasoning_text == "".join(THINKING)
    assert ex.text == "".join(CONTENT)
    assert ex.token_kinds == ["reasoning"] * len(THINKING) + ["content"] * len(CONTENT)
    assert ex.output_tokens == len(THINKING) + len(CONTENT) + 1  # eval_count: thinking tokens and EOS too
    m = derive(ex)
    assert m.ttft_ms is not None and m.ttfat_ms is not None
    assert m.ttft_ms < m.ttfat_ms
    # five thinking tokens 10 ms apart came before the first answer token
    assert m.ttfat_ms - m.ttft_ms >= 0.8 * len(THINKING) * 10.0
    assert m.ttfat_ms == pytest.approx((ex.token_times_ns[len(THINKING)] - ex.t_send_ns) / 1e6)


def test_fake_ollama_think_false_streams_no_thinking(fake: FakeOllama) -> None:
    # the fake follows Ollama: "think": false turns reasoning off (the client does not send it)
    with httpx.Client(trust_env=False, timeout=10) as http:
        r = http.post(f"{fake.url}/api/chat", json={"model": "fake-thinker:1b", "think": False, "stream": False,
                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert "thinking" not in r.json()["message"]
    assert r.json()["message"]["content"] == "".join(CONTENT)


def test_fake_ollama_unknown_model_is_http_4xx_with_server_text(fake: FakeOllama, client: OllamaClient) -> None:
    ex = client.chat(_req("nope:1b"))
    assert ex.status == "error"
    assert ex.error_kind == "http_4xx"
    assert ex.http_status == 404
    assert 'model "nope:1b" not found, try pulling it first' in ex.error_message
    assert ex.token_times_ns == []
    assert derive(ex).ttft_ms is None


@pytest.mark.parametrize("kind", sorted(OOM_MESSAGES))
def test_fake_ollama_out_of_memory_500_is_oom(kind: str) -> None:
    # each message Ollama gives when a model does not fit, as HTTP 500 before any stream
    with FakeOllama({"m:1b": FakeModel(fail="oom", oom_kind=kind)}) as fake:
        c = OllamaClient(fake.url, timeout_s=10.0)
        try:
            ex = c.chat(_req("m:1b", num_gpu=80))
        finally:
            c.close()
    assert ex.status == "error"
    assert ex.error_kind == "oom", ex.error_message
    assert ex.http_status == 500
    assert OOM_MESSAGES[kind].format(num_gpu=80) in ex.error_message
    assert ex.token_times_ns == []


def test_fake_ollama_layout_message_names_the_num_gpu_asked(client: OllamaClient) -> None:
    ex = client.chat(_req("fake-oom:1b", num_gpu=33))
    assert ex.error_kind == "oom" and "memory layout cannot be allocated with num_gpu = 33" in ex.error_message
    ex = client.chat(_req("fake-oom:1b"))  # num_gpu left to Ollama: the backoff gave up
    assert ex.error_kind == "oom" and ex.error_message.endswith("memory layout cannot be allocated")


@pytest.mark.parametrize("message", [
    "llama runner process has terminated: exit status 2",
    "model \"x\" not found, try pulling it first",
    "an error was encountered while running the model: unexpected EOF",
])
def test_other_server_errors_are_not_oom(message: str) -> None:
    assert not is_oom(message)


def test_fake_ollama_other_500_is_http_5xx(client: OllamaClient) -> None:
    ex = client.chat(_req("fake-broken:1b"))
    assert ex.status == "error"
    assert ex.error_kind == "http_5xx"
    assert ex.http_status == 500
    assert SERVER_ERROR_MESSAGE in ex.error_message


def test_fake_ollama_mid_stream_error_keeps_text_received(fake: FakeOllama, client: OllamaClient) -> None:
    ex = client.chat(_req("fake-midstream:1b"))
    assert ex.status == "error"
    assert ex.error_kind == "bad_response"
    assert MID_STREAM_MESSAGE in ex.error_message
    assert ex.http_status == 200  # the error came inside a stream that had started well
    assert ex.text == "".join(CONTENT[:3])
    assert len(ex.token_times_ns) == 3
    assert ex.output_tokens is None  # no final chunk, so no server count
    assert fake.final_chunks == []
    m = derive(ex)
    assert m.status == "error" and m.ttft_ms is not None and m.n_chunks == 3


def test_fake_ollama_mid_stream_out_of_memory_is_oom(client: OllamaClient) -> None:
    ex = client.chat(_req("fake-midstream-oom:1b"))
    assert ex.status == "error"
    assert ex.error_kind == "oom"
    assert "out of memory" in ex.error_message
    assert ex.text == "".join(CONTENT[:2])


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def test_fake_ollama_connection_refused_is_connect() -> None:
    c = OllamaClient(f"http://127.0.0.1:{_closed_port()}", timeout_s=5.0)
    try:
        ex = c.chat(_req("fake-llama:1b"))
    finally:
        c.close()
    assert ex.status == "error"
    assert ex.error_kind == "connect"
    assert ex.http_status is None
    assert ex.error_message


def test_fake_ollama_slow_server_is_timeout(fake: FakeOllama) -> None:
    c = OllamaClient(fake.url, timeout_s=0.3)  # the fake takes 5 s to "load" this model
    try:
        t0 = time.monotonic()
        ex = c.chat(_req("fake-slow:1b"))
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert ex.status == "error"
    assert ex.error_kind == "timeout"
    assert elapsed < 3.0
    assert derive(ex).e2e_ms >= 250.0


def test_fake_ollama_metadata_endpoints_feed_model_facts(fake: FakeOllama) -> None:
    facts = ExternalInstance("external-0", fake.url, "ollama").model_facts("fake-llama:1b")
    assert facts.digest == MODELS["fake-llama:1b"].digest("fake-llama:1b")
    assert facts.size_bytes == MODELS["fake-llama:1b"].size
    assert facts.details is not None and facts.details.quantization_level == "Q4_K_M"
    assert {r.path for r in fake.requests[-2:]} == {"/api/tags", "/api/show"}
    assert facts.context_length and facts.modelfile  # the `ollama show --modelfile` data
    assert ExternalInstance("external-0", fake.url, "ollama").model_facts("absent:1b").digest is None


def test_fake_ollama_answers_generate_show_ps_version_as_documented(fake: FakeOllama) -> None:
    with httpx.Client(trust_env=False, timeout=10) as http:
        with http.stream("POST", f"{fake.url}/api/generate",
                         json={"model": "fake-llama:1b", "prompt": "Why?", "options": {"num_predict": 4}}) as r:
            assert r.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert [c["response"] for c in lines[:-1]] == CONTENT[:4]
        assert all(c["done"] is False and c["model"] == "fake-llama:1b" and c["created_at"] for c in lines[:-1])
        final = lines[-1]
        # stopped by num_predict: nothing is sampled after the 4th token, so no EOS in eval_count
        assert final["done"] is True and final["done_reason"] == "length" and final["eval_count"] == 4
        for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"):
            assert isinstance(final[key], int), key
        show = http.post(f"{fake.url}/api/show", json={"model": "fake-thinker:1b"}).json()
        assert show["model_info"]["qwen3.context_length"] == MODELS["fake-thinker:1b"].context_length
        assert "thinking" in show["capabilities"]
        assert {"modelfile", "parameters", "template", "details"} <= show.keys()
        missing = http.post(f"{fake.url}/api/show", json={"model": "absent:1b"})
        assert missing.status_code == 404 and missing.json() == {"error": "model 'absent:1b' not found"}
        ps = http.get(f"{fake.url}/api/ps").json()["models"]
        assert [m["name"] for m in ps] == ["fake-llama:1b"]  # loaded by the generate above
        assert http.get(f"{fake.url}/api/version").json() == {"version": fake.version}
        assert http.get(f"{fake.url}/api/nothing").status_code == 404


def test_fake_ollama_serves_concurrent_requests(fake: FakeOllama) -> None:
    clients = [OllamaClient(fake.url, timeout_s=10.0) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda c: c.chat(_req("fake-decode:1b")), clients))
    finally:
        for c in clients:
            c.close()
    assert [r.status for r in results] == ["ok"] * 4
    # served side by side rather than in turn: every stream has begun before any has ended
    # (20 tokens x 10 ms each; in turn, a stream would begin only after the one before ended)
    assert max(r.token_times_ns[0] for r in results) < min(r.t_end_ns for r in results)


def test_fake_ollama_stream_that_goes_silent_is_cut_as_stall(fake: FakeOllama) -> None:
    c = OllamaClient(fake.url, timeout_s=60.0, stall_timeout_s=0.5)  # the fake sends 3 tokens, then nothing
    try:
        ex = c.chat(_req("fake-stall:1b"))
    finally:
        c.close()
    assert ex.status == "error" and ex.error_kind == "stall"
    assert "no byte for 0.5 s (stall_timeout_s)" in ex.error_message and "after 3 text chunks" in ex.error_message
    assert ex.text == "".join(CONTENT[:3]) and ex.http_status == 200
    assert derive(ex).e2e_ms < 60_000  # cut by the watchdog, long before the whole-request timeout


def test_fake_ollama_load_that_never_answers_is_cut_as_stall(fake: FakeOllama) -> None:
    c = OllamaClient(fake.url, timeout_s=60.0, stall_timeout_s=0.5)
    try:
        ex = c.chat(_req("fake-hung-load:1b", num_ctx=1024))
    finally:
        c.close()
    assert ex.status == "error" and ex.error_kind == "stall" and ex.http_status is None
    assert "after 0 text chunks" in ex.error_message
    assert fake.bodies("/api/chat")[-1]["model"] == "fake-hung-load:1b"  # accepted, never answered


def test_fake_ollama_whole_request_timeout_holds_for_a_stream_that_keeps_sending(fake: FakeOllama) -> None:
    """httpx's read timeout is per read: a server sending a token every 0.1 s never meets it. The
    whole request has a deadline of its own, and reaching it is a timeout, not a stall."""
    c = OllamaClient(fake.url, timeout_s=1.0, stall_timeout_s=0.5)  # 40 tokens x 0.1 s: ~4 s in all
    try:
        ex = c.chat(_req("fake-trickle:1b"))
    finally:
        c.close()
    assert ex.status == "error" and ex.error_kind == "timeout"
    assert "longer than timeout_s=1 s" in ex.error_message
    assert 0 < len(ex.token_times_ns) < 40


def test_fake_ollama_unload_answers_as_documented(fake: FakeOllama) -> None:
    with httpx.Client(trust_env=False, timeout=10) as http:
        loaded = http.post(f"{fake.url}/api/generate", json={"model": "fake-llama:1b"}).json()
        assert loaded["done"] is True and loaded["done_reason"] == "load" and loaded["response"] == ""
        assert [m["name"] for m in http.get(f"{fake.url}/api/ps").json()["models"]] == ["fake-llama:1b"]
    ollama_api.unload(fake.url, "fake-llama:1b", timeout_s=10)
    assert ollama_api.loaded(fake.url) == []
    assert fake.final_chunks == []  # nothing was generated for either


def test_fake_ollama_unload_that_never_answers_is_bounded(fake: FakeOllama) -> None:
    with pytest.raises(ollama_api.OllamaAPIError) as caught:
        ollama_api.unload(fake.url, "fake-hung-unload:1b", timeout_s=0.5)
    assert caught.value.kind == "timeout"
    assert str(caught.value).startswith(f"unload fake-hung-unload:1b at {fake.url}/api/generate: no answer within 0.5 s")
    assert fake.bodies("/api/generate")[-1] == {"model": "fake-hung-unload:1b", "keep_alive": 0}
