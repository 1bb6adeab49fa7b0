"""Prefill rate on a real llama.cpp server (the embedded engine): trbench's server view, the processed
prompt tokens over the server's prefill time, must be llama.cpp's own timings.prompt_per_second, request
by request, within 0.5 %; the client view (over TTFT) can only be slower."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from conftest import free_port
from trbench.backends import OpenAIClient
from trbench.backends.base import ChatRequest
from trbench.config.spec import parse_spec
from trbench.engines.embedded import EmbeddedInstance
from trbench.measure import metrics

pytestmark = pytest.mark.integration


def test_prefill_rate_is_llamacpps_own_prompt_per_second() -> None:
    spec = parse_spec({"tr_id": "prefill", "models": ["smollm2:135m"], "max_tokens": 4, "grid": {"num_ctx": [1024]}})
    cell = spec.cells()[0]
    inst = EmbeddedInstance("prefill", "127.0.0.1", free_port(), None, Path(tempfile.mkdtemp()))
    client = OpenAIClient(inst.url)
    try:
        inst.prepare(cell)
        shared = " ".join(f"word{i}" for i in range(120))
        for i in range(4):  # a unique start each time: every prompt token is processed (nothing cached)
            ex = client.chat(ChatRequest(model=cell.model, messages=[], prompt=f"{i} nonce{i * 7919} {shared}", max_tokens=4))
            assert ex.status == "ok" and ex.server_prefill_tps_reported
            ours = metrics.prefill_rate(ex.prompt_tokens, ex.cached_tokens, ex.server_prefill_ms)
            assert ours == pytest.approx(ex.server_prefill_tps_reported, rel=0.005), ex
            ttft = metrics.derive(ex).ttft_ms
            client_view = metrics.prefill_rate_client(ex.prompt_tokens, ex.cached_tokens, ttft)
            assert client_view is not None and client_view < ours
    finally:
        client.close()
        inst.stop()
