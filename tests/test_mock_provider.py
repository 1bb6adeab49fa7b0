"""The mock provider (trbench/engines/mock.py, a vLLM-style mock server): canned valid and invalid
answers in each suite's format at a fixed pace, through the real wire clients; and the rules that
keep a mock TR apart from real ones. The mock is itself a fake LLM server: it is what these tests
exercise, for testing the harness."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import free_port

from trbench.backends.base import ChatRequest
from trbench.backends.ollama import OllamaClient
from trbench.backends.openai import OpenAIClient
from trbench.config.servers import MockServer
from trbench.config.spec import SpecError, parse_spec
from trbench.data.cells import Cell
from trbench.engines import create_instances
from trbench.engines.mock_server import CHAT_ANSWER, PROSE
from trbench.report import regression
from trbench.suites.qa import load_qa, messages as qa_messages, parse_answer, Retriever
from trbench.suites.scenarios import check_answer, load_scenario

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture
def mock(tmp_path):
    (inst,) = create_instances(MockServer(ports=[free_port()], first_token_ms=1, token_ms=0, invalid_every=3),
                               tmp_path, 1)
    inst.start()
    assert inst.prepare(Cell(model="any:model", num_gpu=0, num_ctx=512, temperature=0.0)) is None
    yield inst
    inst.stop()


@pytest.mark.parametrize("client_cls", [OpenAIClient, OllamaClient])
def test_router_answers_cycle_valid_valid_invalid(mock, client_cls):
    router = load_scenario(ROOT / "datasets/scenarios/router.yaml")
    picked = [m for m in router.messages if m.route in ("calendar", "weather")][:6]
    c = client_cls(mock.url, timeout_s=30)
    exchanges = [c.chat(ChatRequest(model="x", messages=router.chat(m), max_tokens=64, json_mode=True)) for m in picked]
    c.close()
    assert all(ex.status == "ok" and ex.output_tokens and ex.prompt_tokens for ex in exchanges)
    checks = [check_answer(router, m, ex.text) for m, ex in zip(picked, exchanges)]
    # every third JSON answer is invalid, in turn prose (not JSON) and JSON of the wrong shape
    assert [c.json_ok for c in checks] == [True, True, False, True, True, True]
    assert [c.schema_ok for c in checks] == [True, True, False, True, True, False]
    assert exchanges[2].text == PROSE
    valid = [c for c in checks if c.schema_ok]
    assert valid and all(c.route_ok for c in valid)  # these messages carry their route's keywords


def test_orchestrator_qa_and_chat_formats(mock):
    orch = load_scenario(ROOT / "datasets/scenarios/orchestrator.yaml")
    qa = load_qa(ROOT / "datasets/qa/qa.yaml")
    c = OpenAIClient(mock.url, timeout_s=30)
    plan = c.chat(ChatRequest(model="x", messages=orch.chat(orch.messages[0]), max_tokens=200))
    q = qa.questions[0]
    answer = c.chat(ChatRequest(model="x", messages=qa_messages(qa, q, Retriever(qa.documents)), max_tokens=200))
    chat = c.chat(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=5))
    c.close()
    assert check_answer(orch, orch.messages[0], plan.text).schema_ok
    pred = parse_answer(q.id, answer.text)
    assert pred.error is None and pred.blank  # the mock abstains: right on unanswerable questions only
    assert CHAT_ANSWER.startswith(chat.text) and chat.output_tokens == 5 and chat.finish_reason == "length"


def test_a_mock_tr_is_kept_apart_from_real_ones():
    ok = {"models": ["m"], "provider": "mock"}
    assert parse_spec({**ok, "tr_id": "mock-a"}).server.provider == "mock"
    with pytest.raises(SpecError, match=r"field 'tr_id': provider mock .* must start with 'mock'"):
        parse_spec({**ok, "tr_id": "a"})
    with pytest.raises(SpecError, match=r"field 'tr_id': tr_ids starting with 'mock' are kept for provider mock"):
        parse_spec({"models": ["smollm2:135m"], "tr_id": "mock-real"})
    with pytest.raises(SpecError, match=r"field 'baseline_tr_id': a mock TR is not compared"):
        parse_spec({**ok, "tr_id": "mock-a", "baseline_tr_id": "real-1"})


def test_a_mock_tr_is_never_a_baseline():
    def report(tr_id, provider):
        return SimpleNamespace(tr_id=tr_id, setup=SimpleNamespace(instances=[SimpleNamespace(provider=provider)]))

    with pytest.raises(ValueError, match="the baseline TR mock-a ran on the mock provider"):
        regression.compare(report("real", "embedded"), report("mock-a", "mock"))
    with pytest.raises(ValueError, match="the current TR mock-b ran on the mock provider"):
        regression.compare(report("mock-b", "mock"), report("real", "embedded"))
