"""Slots of the embedded engine (llama.cpp n_parallel, continuous batching) against a REAL llama.cpp
server (xllamacpp, bundled SmolLM2, one thread): with 2 slots two streams are decoded at once, with 1
they are served in turn; num_ctx stays the context of one request (the server gets num_ctx x slots)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import free_port
from trbench.backends.base import ChatRequest, RawExchange
from trbench.backends.openai import OpenAIClient
from trbench.config.spec import Cell
from trbench.engines.embedded import EmbeddedInstance
import pytest

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
NUM_CTX = 512
CELL = Cell(model=MODEL, num_gpu=0, num_ctx=NUM_CTX, temperature=0.0)
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def _two_streams_at_once(url: str) -> list[RawExchange]:
    clients = [OpenAIClient(url, timeout_s=120.0) for _ in range(2)]
    gate = threading.Barrier(2)

    def one(c: OpenAIClient) -> RawExchange:
        gate.wait()
        return c.chat(ChatRequest(model=MODEL, messages=STORY, temperature=0.0, max_tokens=16, seed=1))

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return sorted(pool.map(one, clients), key=lambda ex: ex.token_times_ns[0] if ex.token_times_ns else 0)
    finally:
        for c in clients:
            c.close()


def _props(url: str) -> dict:
    with httpx.Client(trust_env=False, timeout=30) as http:
        return http.get(f"{url}/props").json()


def test_two_slots_decode_two_streams_at_once_one_slot_serves_them_in_turn(tmp_path):
    for slots in (2, 1):
        inst = EmbeddedInstance(f"test-slots-{slots}", "127.0.0.1", free_port(), threads=1, log_dir=tmp_path,
                                load_timeout_s=120, slots=slots)
        try:
            inst.prepare(CELL)
            props = _props(inst.url)
            first, second = _two_streams_at_once(inst.url)
        finally:
            inst.stop()
        assert first.status == second.status == "ok", (first.error_message, second.error_message)
        assert len(first.token_times_ns) > 4 and len(second.token_times_ns) > 4
        assert props["total_slots"] == slots
        assert props["default_generation_settings"]["n_ctx"] == NUM_CTX  # per slot: a whole num_ctx each
        if slots == 2:
            # interleaved: the second stream's tokens arrive while the first is still streaming
            assert second.token_times_ns[0] < first.token_times_ns[-1]
            assert sum(first.token_times_ns[0] < t < first.token_times_ns[-1] for t in second.token_times_ns) >= 2
        else:
            # in turn: the second's first token comes after the first stream's last
            assert second.token_times_ns[0] >= first.token_times_ns[-1]
