"""The embeddings workload against a REAL llama.cpp server (xllamacpp, bundled SmolLM2 in embedding mode,
mean pooling, one thread): /v1/embeddings answers a vector per text, the server counts the tokens,
and a step's rows and figures come out of what it answered."""

from __future__ import annotations

import httpx

from tests.conftest import free_port
from trbench.config.embeddings_section import EmbeddingsLoad, load_texts
from trbench.config.spec import Cell, parse_spec
from trbench.engines.embedded import EmbeddedInstance
from trbench.workloads.embedding_load import plan_steps
from trbench.run.embeddings_step import execute_step
import pytest

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"


def test_embedding_server_serves_a_step_per_batch_size_then_generation_again(tmp_path):
    spec = parse_spec({"tr_id": "TR-emb-real", "models": [MODEL]})
    load = EmbeddingsLoad(batch_sizes=[1, 4], requests=3, warmup=1, num_ctx=256)
    texts = load_texts("datasets/embeddings/passages_v1.yaml")
    inst = EmbeddedInstance("test-emb", "127.0.0.1", free_port(), threads=1, log_dir=tmp_path, load_timeout_s=120)
    try:
        assert inst.prepare_embeddings(MODEL, load.num_ctx) > 0
        assert inst.prepare_embeddings(MODEL, load.num_ctx) is None  # already in embedding mode: no restart
        with httpx.Client(trust_env=False, timeout=60) as http:
            props = http.get(f"{inst.url}/props").json()
        results = [execute_step(plan, load, texts, "dg") for plan in plan_steps(load, spec, [inst])]
        # a generation cell afterwards restarts the server out of embedding mode
        assert inst.prepare(Cell(model=MODEL, num_gpu=0, num_ctx=256, temperature=0.0)) > 0
    finally:
        inst.stop()
    assert props["default_generation_settings"]["n_ctx"] == load.num_ctx
    for result, batch in zip(results, [1, 4]):
        step, reqs = result.step_row, result.request_rows
        assert len(reqs) == 4 and [r["is_warmup"] for r in reqs] == [True, False, False, False]
        assert all(r["status"] == "ok" for r in reqs), [r["error_message"] for r in reqs]
        assert all(r["n_vectors"] == batch and r["dims"] == 576 for r in reqs)  # SmolLM2-135M: 576 hidden
        assert all(r["prompt_tokens"] >= batch for r in reqs)  # counted by the server, at least one per text
        measured = [r for r in reqs if not r["is_warmup"]]
        assert step["n_ok"] == 3 and step["texts_total"] == 3 * batch
        assert step["tokens_total"] == sum(r["prompt_tokens"] for r in measured)
        assert step["latency_p50_ms"] == sorted(r["latency_ms"] for r in measured)[1]
        assert step["texts_per_s"] > 0 and step["backend"] == "openai" and step["batch_size"] == batch
