"""The quality suites end to end against a REAL llama.cpp server (embedded engine, bundled SmolLM2,
one thread): the QA prompt with its retrieved documents and the router scenario, with the server
asked for JSON as the suites say. The tiny model's scores are not asserted (they are low); what is
asserted is that the pipeline reads, checks and scores every answer, and that JSON mode reaches
llama.cpp (its grammar makes every answer that ends on its own parse as JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from trbench.backends.base import ChatRequest
from trbench.backends.openai import OpenAIClient
from trbench.config.spec import Cell
from trbench.engines.embedded import EmbeddedInstance
from trbench.suites.qa import Retriever, load_qa, messages, parse_answer
from trbench.suites.qa_score import score_answers
from trbench.suites.scenarios import answer_from_exchange, load_scenario, summarize_scenario

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    inst = EmbeddedInstance("test-suites", "127.0.0.1", free_port(), threads=1,
                            log_dir=tmp_path_factory.mktemp("llamacpp-logs"), load_timeout_s=120)
    try:
        inst.prepare(Cell(model=MODEL, num_gpu=0, num_ctx=2048, temperature=0.0))
        yield inst.url
    finally:
        inst.stop()


def test_router_with_json_mode(url):
    router = load_scenario(ROOT / "datasets/scenarios/router.yaml")
    picked = [router.messages[i] for i in (22, 29)]  # two that SmolLM2 finishes within max_tokens
    c = OpenAIClient(url, timeout_s=300.0)
    exchanges = [c.chat(ChatRequest(model=MODEL, messages=router.chat(m), temperature=0.0, max_tokens=64, seed=42,
                                    json_mode=router.json_mode))
                 for m in picked]
    c.close()
    assert all(ex.status == "ok" for ex in exchanges), [ex.error_message for ex in exchanges]
    answers = [answer_from_exchange(router, m, ex) for m, ex in zip(picked, exchanges)]
    finished = [a for a, ex in zip(answers, exchanges) if ex.finish_reason == "stop"]
    assert finished and all(a.check.json_ok for a in finished)  # the grammar held
    assert all(ex.text.lstrip().startswith("{") for ex in exchanges)
    s = summarize_scenario(router, answers)
    assert (s.requests, s.errors, s.json_mode) == (2, 0, True)
    assert s.json_parse_rate is not None and s.route_accuracy is not None and s.latency_ms.n == 2
    assert s.output_tokens_total == sum(ex.output_tokens for ex in exchanges)


def test_qa_prompt_answers_are_read_and_scored(url):
    qa = load_qa(ROOT / "datasets/qa/qa.yaml")
    retriever = Retriever(qa.documents)
    picked = [qa.questions[0], qa.questions[-1]]  # one answerable, one not
    c = OpenAIClient(url, timeout_s=300.0)
    texts = []
    for q in picked:
        ex = c.chat(ChatRequest(model=MODEL, messages=messages(qa, q, retriever), temperature=0.0,
                                max_tokens=qa.suite.max_tokens, seed=42, json_mode=qa.suite.json_mode))
        assert ex.status == "ok", ex.error_message
        assert ex.prompt_tokens > 400  # the two retrieved documents went with the question
        texts.append(ex.text)
    c.close()
    preds = [parse_answer(q.id, t) for q, t in zip(picked, texts)]
    score, rows = score_answers([q.truth for q in picked], preds)
    assert [r.id for r in rows] == [q.id for q in picked] and score.n == 2 and score.n_na == 1
    assert 0.0 <= score.overall <= 1.0
    for p, r in zip(preds, rows):  # an unreadable answer is a scored failure, not a crash
        assert (p.error is None) == (r.error is None)


def test_json_mode_reaches_a_completion_prompt_too(url):
    """A base model is prompted as plain text (/v1/completions), where llama.cpp has no
    response_format: json_mode sends its json_schema, and the grammar holds there too."""
    from trbench.run.single import completion_text

    router = load_scenario(ROOT / "datasets/scenarios/router.yaml")
    m = router.messages[0]
    c = OpenAIClient(url, timeout_s=300.0)
    ex = c.chat(ChatRequest(model=MODEL, messages=router.chat(m), prompt=completion_text(router.chat(m)),
                            temperature=0.0, max_tokens=48, seed=42, json_mode=True))
    plain = c.chat(ChatRequest(model=MODEL, messages=router.chat(m), prompt=completion_text(router.chat(m)),
                               temperature=0.0, max_tokens=8, seed=42))
    c.close()
    assert ex.status == "ok" and plain.status == "ok", (ex.error_message, plain.error_message)
    assert ex.text.lstrip().startswith("{")
    if ex.finish_reason == "stop":
        assert answer_from_exchange(router, m, ex).check.json_ok
