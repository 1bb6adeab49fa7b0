"""The embeddings workload against a FAKE Ollama (tests/fakes/fake_ollama.py: not Ollama, no model):
/api/embed as docs/api.md "Generate Embeddings" documents it, the async client's readings and error
kinds, and a step that records its errors and goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prefect import flow

from tests.fakes.fake_ollama import MAX_QUEUE_MESSAGE, FakeModel, FakeOllama
from trbench.data.environment import Manifest
from trbench.backends.embedding_clients import AsyncEmbeddingsClient
from trbench.config.embeddings_section import EmbeddingsLoad, load_texts
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.engines.ollama_process import OllamaProcessInstance
from trbench.workloads.embedding_load import measure_steps, plan_steps
from trbench.run.embeddings_step import execute_step
from trbench.workloads.session import TRSession
from trbench.config.prompts import load_prompts
from trbench.data.failures import InstanceFaults

EMBEDDER = "fake-embed:1b"


def test_fake_api_embed_follows_the_docs():
    with FakeOllama({EMBEDDER: FakeModel(embedding_length=8)}) as fake, httpx.Client(trust_env=False) as http:
        one = http.post(f"{fake.url}/api/embed", json={"model": EMBEDDER, "input": "why is the sky blue"}).json()
        assert set(one) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
        assert len(one["embeddings"]) == 1 and len(one["embeddings"][0]) == 8
        assert sum(v * v for v in one["embeddings"][0]) == pytest.approx(1.0)  # normalised, as Ollama does
        assert one["prompt_eval_count"] == 5 and one["total_duration"] >= one["load_duration"] > 0
        two = http.post(f"{fake.url}/api/embed", json={"model": EMBEDDER, "input": ["a b", "c"]}).json()
        assert len(two["embeddings"]) == 2 and two["prompt_eval_count"] == 3
        assert http.post(f"{fake.url}/api/embed", json={"model": EMBEDDER, "input": ""}).json() == {
            "model": EMBEDDER, "embeddings": []}
        bad = http.post(f"{fake.url}/api/embed", json={"model": EMBEDDER, "input": [1, 2]})
        assert (bad.status_code, bad.json()) == (400, {"error": "invalid input type"})
        missing = http.post(f"{fake.url}/api/embed", json={"model": "nope:1b", "input": "x"})
        assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope:1b' not found"})
        long = {"model": EMBEDDER, "input": "w " * 40, "options": {"num_ctx": 16}}
        assert http.post(f"{fake.url}/api/embed", json=long).json()["prompt_eval_count"] == 16  # truncated
        refused = http.post(f"{fake.url}/api/embed", json={**long, "truncate": False})
        assert (refused.status_code, refused.json()["error"]) == (400, "input length exceeds maximum context length")


def test_async_client_reads_counts_and_names_errors():
    async def go(url: str):
        c = AsyncEmbeddingsClient("ollama", url, timeout_s=10, connections=2)
        try:
            return await asyncio.gather(c.embed(EMBEDDER, ["a b c", "d"]), c.embed("nope:1b", ["x"]))
        finally:
            await c.aclose()

    with FakeOllama({EMBEDDER: FakeModel(embed_delay_s=0.01)}) as fake:
        ok, missing = asyncio.run(go(fake.url))
        inputs = {tuple(b["input"]) for b in fake.bodies("/api/embed")}
    assert inputs == {("a b c", "d"), ("x",)}  # always a list, also for one text
    assert (ok.status, ok.n_vectors, ok.dims, ok.prompt_tokens) == ("ok", 2, 16, 4)
    assert ok.latency_ms >= 20 and ok.server_total_ms >= 20  # two texts at 10 ms each, on both clocks
    assert (missing.status, missing.error_kind, missing.http_status) == ("error", "http_4xx", 404)
    assert "model 'nope:1b' not found" in missing.error_message

    async def nobody():
        c = AsyncEmbeddingsClient("openai", "http://127.0.0.1:9", timeout_s=2)
        try:
            return await c.embed("m", ["x"])
        finally:
            await c.aclose()

    down = asyncio.run(nobody())
    assert (down.status, down.error_kind) == ("error", "connect")


def _spec(**load):
    spec = parse_spec({"tr_id": "TR-emb", "provider": "ollama-process", "backend": "ollama", "models": [EMBEDDER]})
    return spec, EmbeddingsLoad(**{"batch_sizes": [1, 4], "requests": 6, "warmup": 2, **load})


def test_step_over_a_full_queue_records_503s_and_goes_on():
    # one place and a queue of one: of 4 requests in flight at once, some find the queue full
    spec, load = _spec(concurrency=4, batch_sizes=[4], requests=12, warmup=1)
    texts = load_texts("datasets/embeddings/passages_v1.yaml")
    with FakeOllama({EMBEDDER: FakeModel(embed_delay_s=0.01)}, num_parallel=1, max_queue=1) as fake:
        inst = OllamaProcessInstance("ollama-process-0", spec.server, fake.port, None, "/tmp")
        (plan,) = plan_steps(load, spec, [inst])
        result = execute_step(plan, load, texts, "digest", num_ctx=load.num_ctx)
        assert fake.max_running_seen[EMBEDDER] == 1
    step, reqs = result.step_row, result.request_rows
    assert len(reqs) == 13 and sum(r["is_warmup"] for r in reqs) == 1
    busy = [r for r in reqs if r["status"] == "error"]
    assert busy and all(r["http_status"] == 503 and MAX_QUEUE_MESSAGE in r["error_message"] for r in busy)
    assert step["n_requests"] == 12 and step["n_ok"] + step["n_errors"] == 12 and step["n_ok"] >= 2
    assert step["error_kinds"] == ["http_5xx"] and step["texts_total"] == 4 * step["n_ok"]
    assert step["tokens_total"] == sum(r["prompt_tokens"] for r in reqs if r["status"] == "ok" and not r["is_warmup"])


@flow(name="embeddings-test")
def _embeddings_flow(port: int, root: str) -> list[dict]:
    spec, load = _spec()
    inst = OllamaProcessInstance("ollama-process-0", spec.server, port, None, root)
    session = TRSession(spec=spec, prompts=load_prompts(spec.prompts), agents=None, root=Path(root), instances=[inst],
                        faults=InstanceFaults(Path(root), spec.tr_id), manifest=Manifest.lenient({"m": 1}), digest="dg")
    return measure_steps(session, load, [inst])


def test_workload_task_writes_every_step_and_resumes_only_what_is_missing(tmp_path, prefect_api):
    # as the tr flow calls it: a task of a flow on a real (test) Prefect server, one task per step
    with FakeOllama({EMBEDDER: FakeModel(embed_delay_s=0.002)}) as fake:
        first = _embeddings_flow(fake.port, str(tmp_path))
        again = _embeddings_flow(fake.port, str(tmp_path))
        sent = len(fake.bodies("/api/embed"))
    assert [s["batch_size"] for s in first] == [1, 4] and again == []
    assert sent == 2 * (6 + 2)  # the second run sent nothing
    steps = store.read_frame(tmp_path, "emb_steps")
    assert sorted(steps["batch_size"]) == [1, 4] and (steps["n_ok"] == 6).all() and (steps["n_warmup"] == 2).all()
    reqs = store.read_frame(tmp_path, "emb_requests")
    assert len(reqs) == 16 and set(reqs.loc[~reqs["is_warmup"], "request_index"]) == set(range(2, 8))
    b4 = steps[steps["batch_size"] == 4].iloc[0]
    assert b4["texts_total"] == 24 and b4["slo_ms"] == 100.0 and b4["tokens_total"] > 24
