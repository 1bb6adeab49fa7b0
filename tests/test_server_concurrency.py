"""Servers that batch: the spec's concurrency fields, the manifest, and a FAKE Ollama
that queues and refuses as Ollama documents (docs/faq.md "How does Ollama handle concurrent
requests?"; server/sched.go ErrMaxQueue answered as HTTP 503)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.fake_ollama import MAX_QUEUE_MESSAGE, FakeModel, FakeOllama, concurrency_from_env
from trbench.backends import ChatRequest, OllamaClient
from trbench.config.spec import SpecError, parse_spec
from trbench.engines.embedded import create as create_embedded
from trbench.measure.manifest import describe_instance

pytestmark = pytest.mark.integration

GOOD = {"tr_id": "TR-conc", "models": ["smollm2:135m"]}


def _error_of(data: dict) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return str(err.value)


@pytest.mark.parametrize(("provider", "server", "field"), [
    ("embedded", {"slots": 0}, "server.slots"),
    ("embedded", {"slots": "two"}, "server.slots"),
    ("ollama-docker", {"num_parallel": 0}, "server.num_parallel"),
    ("ollama-process", {"max_queue": -1}, "server.max_queue"),
    ("ollama-process", {"slots": 2}, "server.slots"),  # an embedded field on an Ollama provider
    ("embedded", {"num_parallel": 2}, "server.num_parallel"),  # and the other way round
])
def test_concurrency_fields_are_checked_in_one_line_naming_the_field(provider, server, field):
    backend = "openai" if provider == "embedded" else "ollama"
    msg = _error_of({**GOOD, "provider": provider, "backend": backend, "server": server})
    assert f"field '{field}'" in msg and "fix:" in msg and "\n" not in msg


def test_defaults_keep_todays_behaviour_and_values_reach_the_instances(tmp_path):
    spec = parse_spec(GOOD)
    assert spec.server.slots == 1
    docker = parse_spec({**GOOD, "provider": "ollama-docker", "backend": "ollama"})
    assert (docker.server.num_parallel, docker.server.max_queue) == (1, 512)
    spec = parse_spec({**GOOD, "server": {"slots": 3}})
    (inst,) = create_embedded(spec.server, 1, tmp_path, 10, "openai")
    assert inst.slots == 3
    described = describe_instance(inst, "openai")
    assert described.concurrency == {"slots": 3} and described.provider == "embedded"


def test_environment_of_the_ollama_sections():
    spec = parse_spec({**GOOD, "provider": "ollama-process", "backend": "ollama",
                       "server": {"num_parallel": 4, "max_queue": 7}})
    assert spec.server.concurrency_environment() == {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_QUEUE": "7"}
    # the fakes read them back as Ollama's envconfig does: unset or not a number is the default
    assert concurrency_from_env(spec.server.concurrency_environment()) == {"num_parallel": 4, "max_queue": 7}
    assert concurrency_from_env({}) == {"num_parallel": 1, "max_queue": 512}
    assert concurrency_from_env({"OLLAMA_NUM_PARALLEL": "x", "OLLAMA_MAX_QUEUE": ""}) == {"num_parallel": 1, "max_queue": 512}


def _req(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=64)


def test_fake_ollama_runs_num_parallel_queues_the_rest_and_refuses_beyond_the_queue():
    # 10 tokens x 30 ms: each request holds its place ~0.3 s, so all five arrive while the first runs
    slow = FakeModel(token_delay_s=0.03, content_tokens=[f" t{i}" for i in range(10)])
    with FakeOllama({"m:1b": slow}, num_parallel=2, max_queue=2) as fake:
        clients = [OllamaClient(fake.url, timeout_s=30) for _ in range(5)]
        gate = threading.Barrier(5)

        def one(c: OllamaClient):
            gate.wait()
            return c.chat(_req("m:1b"))

        try:
            with ThreadPoolExecutor(max_workers=5) as pool:
                results = list(pool.map(one, clients))
        finally:
            for c in clients:
                c.close()
    ok = [r for r in results if r.status == "ok"]
    busy = [r for r in results if r.status == "error"]
    assert len(ok) == 4 and len(busy) == 1  # 2 running + 2 queued; the fifth finds the queue full
    assert busy[0].http_status == 503 and busy[0].error_kind == "http_5xx"
    assert MAX_QUEUE_MESSAGE in busy[0].error_message and not busy[0].token_times_ns
    assert fake.max_running_seen["m:1b"] == 2
    # the queued two began streaming only after a running one had finished
    ok.sort(key=lambda r: r.token_times_ns[0])
    assert ok[2].token_times_ns[0] >= min(ok[0].t_end_ns, ok[1].t_end_ns) - 5_000_000
    assert ok[0].token_times_ns[0] < ok[1].t_end_ns and ok[1].token_times_ns[0] < ok[0].t_end_ns  # two at once


def test_fake_ollama_one_at_a_time_serialises_and_models_do_not_share_places():
    quick = FakeModel(token_delay_s=0.02, content_tokens=[f" t{i}" for i in range(6)])
    with FakeOllama({"a:1b": quick, "b:1b": quick}, num_parallel=1) as fake:
        clients = [OllamaClient(fake.url, timeout_s=30) for _ in range(3)]
        try:
            with ThreadPoolExecutor(max_workers=3) as pool:
                results = list(pool.map(lambda cm: cm[0].chat(_req(cm[1])), zip(clients, ["a:1b", "a:1b", "b:1b"])))
        finally:
            for c in clients:
                c.close()
    assert [r.status for r in results] == ["ok"] * 3
    a1, a2 = sorted(results[:2], key=lambda r: r.token_times_ns[0])
    assert a2.token_times_ns[0] >= a1.t_end_ns - 5_000_000  # one place per model: in turn
    assert fake.max_running_seen == {"a:1b": 1, "b:1b": 1}
    assert fake.waiting == 0 and fake.running == {"a:1b": 0, "b:1b": 0}


def test_fake_ollama_queue_wait_is_counted_by_the_client_not_the_server():
    # Ollama's durations start when the handler runs, so a queued request's wait shows only client-side
    m = FakeModel(token_delay_s=0.03, content_tokens=[f" t{i}" for i in range(8)])
    with FakeOllama({"m:1b": m}, num_parallel=1) as fake:
        clients = [OllamaClient(fake.url, timeout_s=30) for _ in range(2)]
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                first, second = sorted(pool.map(lambda c: c.chat(_req("m:1b")), clients), key=lambda r: r.t_end_ns)
        finally:
            for c in clients:
                c.close()
    ttft_second = (second.token_times_ns[0] - second.t_send_ns) / 1e6
    assert ttft_second > 150  # it waited for the whole first answer (8 x 30 ms)
    assert second.server_prefill_ms is None or second.server_prefill_ms < ttft_second / 2
    time.sleep(0)  # nothing else: the fake stopped cleanly with no request left waiting
