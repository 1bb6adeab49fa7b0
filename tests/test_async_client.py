"""trbench.backends.AsyncWireClient, the load mode's client: the same exchange as the synchronous clients.

Against the FAKE Ollama server of tests/fakes/fake_ollama.py (no Ollama can run here: its error, OOM,
mid-stream and stall models) and against a REAL llama.cpp server (the embedded engine, bundled SmolLM2,
one process for the module, from tests/test_openai_client.py).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.fake_ollama import MID_STREAM_MESSAGE, FakeModel, FakeOllama
import test_openai_client
from test_openai_client import LONG_ANSWER, MODEL

from trbench.backends import AsyncWireClient, OllamaClient, OpenAIClient, RawExchange
from trbench.backends.async_client import arrived_lines
from trbench.backends.base import ChatRequest
from trbench.engines.embedded import EmbeddedInstance

pytestmark = pytest.mark.integration

CONTENT = ["Blue", " light", " scatters", " more", " than", " red", "."]
FIXED_NS = {"total_duration": 9_000_000, "load_duration": 1_000_000, "prompt_eval_duration": 2_000_000,
            "eval_duration": 6_000_000}
MODELS = {
    # fixed durations: measured ones differ between the sync and the async request
    "fake-ok:1b": FakeModel(content_tokens=list(CONTENT), prompt_eval_count=12, durations_ns=dict(FIXED_NS)),
    "fake-thinker:1b": FakeModel(content_tokens=list(CONTENT), think_tokens=["Hmm", ",", " why"],
                                 durations_ns=dict(FIXED_NS), family="qwen3"),
    "fake-oom:1b": FakeModel(fail="oom"),
    "fake-broken:1b": FakeModel(fail="http_500"),
    "fake-midstream:1b": FakeModel(content_tokens=list(CONTENT), fail="mid_stream", fail_after_tokens=3),
    "fake-midstream-oom:1b": FakeModel(content_tokens=list(CONTENT), fail="mid_stream", fail_after_tokens=2,
                                       error_message="CUDA error: out of memory"),
    "fake-stall:1b": FakeModel(content_tokens=list(CONTENT), stall_after_tokens=3),
    "fake-decode:1b": FakeModel(content_tokens=[f" t{i}" for i in range(20)], token_delay_s=0.01),
    # more lines than the client reads in one slice between returns to the event loop
    "fake-long:1b": FakeModel(content_tokens=[f" w{i}" for i in range(150)], token_delay_s=0.0,
                              durations_ns=dict(FIXED_NS)),
    "fake-trickle:1b": FakeModel(content_tokens=[f" t{i}" for i in range(40)], token_delay_s=0.1),
}
SYNTHETIC_SERVER = Path(__file__).resolve().parent.parent / "bench" / "synthetic_server.py"
instance = test_openai_client.instance  # its module-scoped fixture: one real llama.cpp server for this module
# what both clients must agree on; times differ between two requests and are checked apart
OBSERVED = ("status", "error_kind", "error_message", "http_status", "text", "reasoning_text", "token_kinds",
            "finish_reason", "prompt_tokens", "output_tokens", "cached_tokens", "server_decode_tokens",
            "server_prefill_ms", "server_decode_ms", "server_load_ms", "server_total_ms")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(MODELS) as server:
        yield server


def _req(model: str, **kw) -> ChatRequest:
    base = {"model": model, "messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 64}
    return ChatRequest(**(base | kw))


async def _chat(backend: str, url: str, req: ChatRequest, **kw) -> RawExchange:
    async with AsyncWireClient(backend, url, **kw) as client:
        return await client.chat(req)


def _sync_chat(client_type: type[OllamaClient] | type[OpenAIClient], url: str, req: ChatRequest) -> RawExchange:
    client = client_type(url, timeout_s=60.0)
    try:
        return client.chat(req)
    finally:
        client.close()


def _observed(ex: RawExchange) -> dict:
    return {f: getattr(ex, f) for f in OBSERVED} | {"n_chunks": len(ex.token_times_ns)}


def _in_order(ex: RawExchange) -> bool:
    times = ex.token_times_ns
    return ex.t_send_ns < times[0] and times == sorted(times) and times[-1] <= ex.t_end_ns


# --- the FAKE Ollama ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["fake-ok:1b", "fake-thinker:1b", "fake-long:1b", "fake-oom:1b", "fake-broken:1b",
                                   "fake-midstream:1b", "fake-midstream-oom:1b", "no-such-model:1b"])
def test_fake_ollama_async_exchange_equals_the_sync_one(fake: FakeOllama, model: str) -> None:
    req = _req(model, temperature=0.0, seed=1)
    sync = _sync_chat(OllamaClient, fake.url, req)
    ex = asyncio.run(_chat("ollama", fake.url, req))
    assert _observed(ex) == _observed(sync)
    assert (ex.backend, ex.url, ex.model) == (sync.backend, sync.url, sync.model)
    if ex.token_times_ns:
        assert _in_order(ex)


def test_fake_ollama_error_kinds(fake: FakeOllama) -> None:
    kinds = {m: asyncio.run(_chat("ollama", fake.url, _req(m))).error_kind
             for m in ("fake-oom:1b", "fake-broken:1b", "fake-midstream:1b", "fake-midstream-oom:1b")}
    assert kinds == {"fake-oom:1b": "oom", "fake-broken:1b": "http_5xx", "fake-midstream:1b": "bad_response",
                     "fake-midstream-oom:1b": "oom"}
    midstream = asyncio.run(_chat("ollama", fake.url, _req("fake-midstream:1b")))
    assert MID_STREAM_MESSAGE in midstream.error_message and midstream.text == "".join(CONTENT[:3])
    assert asyncio.run(_chat("ollama", fake.url, _req("no-such-model:1b"))).error_kind == "http_4xx"


def test_fake_ollama_stream_gone_silent_is_stall(fake: FakeOllama) -> None:
    ex = asyncio.run(_chat("ollama", fake.url, _req("fake-stall:1b"), timeout_s=60.0, stall_timeout_s=0.5))
    assert (ex.status, ex.error_kind, ex.http_status) == ("error", "stall", 200)
    assert "no byte for 0.5 s (stall_timeout_s)" in ex.error_message and "after 3 text chunks" in ex.error_message
    assert ex.text == "".join(CONTENT[:3])


def test_fake_ollama_whole_request_deadline_is_timeout(fake: FakeOllama) -> None:
    # 40 tokens x 0.1 s: every read comes well within the stall timeout, the whole takes ~4 s
    ex = asyncio.run(_chat("ollama", fake.url, _req("fake-trickle:1b"), timeout_s=1.0, stall_timeout_s=0.5))
    assert (ex.status, ex.error_kind) == ("error", "timeout")
    assert "longer than timeout_s=1 s" in ex.error_message
    assert 0 < len(ex.token_times_ns) < 40


def test_connection_refused_is_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed on exit: nothing listens there
    ex = asyncio.run(_chat("ollama", f"http://127.0.0.1:{port}", _req("fake-ok:1b"), timeout_s=5.0))
    assert (ex.status, ex.error_kind, ex.http_status) == ("error", "connect", None)


def test_fake_ollama_cancelled_request_is_recorded_and_the_cancellation_goes_on(fake: FakeOllama) -> None:
    async def cancel_midway() -> AsyncWireClient:
        async with AsyncWireClient("ollama", fake.url, timeout_s=30.0) as client:
            task = asyncio.create_task(client.chat(_req("fake-trickle:1b")))
            await asyncio.sleep(0.5)  # a few of the 40 tokens (one per 0.1 s) have come
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return client

    client = asyncio.run(cancel_midway())
    [ex] = client.cancelled
    assert (ex.status, ex.error_kind, ex.http_status) == ("error", "cancelled", 200)
    assert 0 < len(ex.token_times_ns) < 40 and ex.text.startswith(" t0 t1")  # what came before is kept
    assert _in_order(ex)


def test_fake_ollama_requests_in_flight_overlap(fake: FakeOllama) -> None:
    n = 5  # the fake's listen backlog is http.server's 5: more connections at once wait for a SYN retry

    async def all_at_once() -> list[RawExchange]:
        async with AsyncWireClient("ollama", fake.url, timeout_s=60.0) as client:
            return await asyncio.gather(*(client.chat(_req("fake-decode:1b")) for _ in range(n)))

    results = asyncio.run(all_at_once())
    assert [r.status for r in results] == ["ok"] * n
    assert all(len(r.token_times_ns) == 20 and _in_order(r) for r in results)
    # side by side, not in turn: every stream had its first token before any stream ended (20 x 10 ms each)
    assert max(r.token_times_ns[0] for r in results) < min(r.t_end_ns for r in results)


def test_lines_of_one_read_share_its_arrival_time() -> None:
    reads = [b'{"a":1}\n{"b"', b':2}\r\n{"c":3}\n', b"\n", b'{"d":"\xc3', b'\xa9"}']
    assert list(arrived_lines([1, 2, 3, 4, 5], reads)) == [(1, '{"a":1}'), (2, '{"b":2}'), (2, '{"c":3}'),
                                          (5, '{"d":"\u00e9"}')]


@pytest.fixture(scope="module")
def burst_server() -> Iterator[str]:
    """bench/synthetic_server.py at a rate so high that each stream's tokens are all due at once: one
    write of every SSE chunk, each in an HTTP chunk of its own (as llama.cpp frames them)."""
    proc = subprocess.Popen([sys.executable, str(SYNTHETIC_SERVER), "--port", "0", "--rate", "1e9"],
                            stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://{proc.stdout.readline().split()[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pieces_of_one_network_read_share_its_arrival_time(burst_server: str) -> None:
    req = ChatRequest(model="synthetic", messages=[{"role": "user", "content": "go"}], max_tokens=8)
    ex = asyncio.run(_chat("openai", burst_server, req))
    assert (ex.status, ex.output_tokens, len(ex.token_times_ns)) == ("ok", 8, 8)
    # eight HTTP chunks in one socket read: all stamped with that read
    assert len(set(ex.token_times_ns)) == 1
    sent = [int(t) for t in ex.text.split()]  # the server's send times, on the same clock
    assert max(sent) < ex.token_times_ns[0] <= ex.t_end_ns


def test_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown backend 'grpc'; use one of 'openai', 'ollama'"):
        AsyncWireClient("grpc", "http://127.0.0.1:1")


# --- a REAL llama.cpp server ---------------------------------------------------------------------

def _llama_req(**kw) -> ChatRequest:
    return ChatRequest(**({"model": MODEL, "messages": LONG_ANSWER, "temperature": 0.0, "seed": 42,
                           "max_tokens": 24} | kw))


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_real_llamacpp_async_exchange_equals_the_sync_one(instance: EmbeddedInstance, kind: str) -> None:
    req = _llama_req(prompt="Once upon a time" if kind == "completion" else None)
    sync = _sync_chat(OpenAIClient, instance.url, req)
    ex = asyncio.run(_chat("openai", instance.url, req, timeout_s=120.0))
    assert ex.status == sync.status == "ok", (ex.error_message, sync.error_message)
    # temperature 0 and one seed: the same tokens; the server's own durations differ between two requests
    same = ("text", "finish_reason", "prompt_tokens", "output_tokens", "server_decode_tokens", "token_kinds")
    assert {f: getattr(ex, f) for f in same} == {f: getattr(sync, f) for f in same}
    assert len(ex.token_times_ns) == len(sync.token_times_ns) > 0 and _in_order(ex)
    assert ex.server_prefill_ms and ex.server_decode_ms and ex.cached_tokens is not None


def test_real_llamacpp_errors_as_the_sync_client(instance: EmbeddedInstance) -> None:
    url = f"{instance.url}/no-such-prefix"
    sync = _sync_chat(OpenAIClient, url, _llama_req(max_tokens=4))
    ex = asyncio.run(_chat("openai", url, _llama_req(max_tokens=4), timeout_s=30.0))
    assert (ex.error_kind, ex.http_status, ex.error_message) == ("http_4xx", 404, sync.error_message)


def test_real_llamacpp_concurrent_requests_all_answered(instance: EmbeddedInstance) -> None:
    reqs = [_llama_req(max_tokens=8, messages=[{"role": "user", "content": f"Count to {i + 3}."}]) for i in range(3)]

    async def all_at_once() -> list[RawExchange]:
        async with AsyncWireClient("openai", instance.url, timeout_s=120.0) as client:
            return await asyncio.gather(*(client.chat(r) for r in reqs))

    results = asyncio.run(all_at_once())
    singles = [_sync_chat(OpenAIClient, instance.url, r) for r in reqs]
    assert [r.status for r in results] == ["ok"] * 3
    assert [r.text for r in results] == [s.text for s in singles]  # each stream kept to its own request
    # all sent before any answer came back: in flight together (the server may still serve them in turn)
    assert max(r.t_send_ns for r in results) < min(r.token_times_ns[0] for r in results)


def test_fake_ollama_pool_keeps_to_max_connections_and_reuses_them(fake: FakeOllama) -> None:
    async def two_rounds() -> tuple[list[RawExchange], list[list]]:
        async with AsyncWireClient("ollama", fake.url, timeout_s=60.0, max_connections=2) as client:
            results, open_after = [], []
            for _ in range(2):
                results += await asyncio.gather(*(client.chat(_req("fake-decode:1b")) for _ in range(4)))
                open_after.append(set(client._pool.open))
            return results, open_after

    results, open_after = asyncio.run(two_rounds())
    assert [r.status for r in results] == ["ok"] * 8
    assert len(open_after[0]) == 2 and open_after[1] == open_after[0]  # kept alive: the second round opened none
    for rnd in (results[:4], results[4:]):
        # four requests on two connections: two waited for the first two to end (20 x 10 ms each)
        ends = sorted(r.t_end_ns for r in rnd)
        assert sorted(r.token_times_ns[0] for r in rnd)[2] > ends[0]
