"""Scenario suites (datasets/scenarios/): loading with one-line errors, the per-answer checks and
the per-scenario aggregates, against hand-computed cases."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from trbench.backends.base import RawExchange
from trbench.suites.scenarios import (
    ChatSuite, OrchestratorSuite, RouterSuite, ScenarioAnswer, ScenarioSuiteError, answer_from_exchange, check_answer,
    json_mode_fields, load_scenario, summarize_scenario,
)

DIR = Path(__file__).resolve().parent.parent / "datasets" / "scenarios"


@pytest.fixture(scope="module")
def router():
    return load_scenario(DIR / "router.yaml")


@pytest.fixture(scope="module")
def orchestrator():
    return load_scenario(DIR / "orchestrator.yaml")


@pytest.fixture(scope="module")
def chat():
    return load_scenario(DIR / "chat.yaml")


def test_the_suites(router, orchestrator, chat):
    assert isinstance(router, RouterSuite) and isinstance(orchestrator, OrchestratorSuite) and isinstance(chat, ChatSuite)
    assert len(router.messages) >= 30 and len(router.routes) >= 5
    assert min(Counter(m.route for m in router.messages).values()) >= 4  # every route labelled several times
    assert router.json_mode and orchestrator.json_mode and not chat.json_mode
    assert router.digest.startswith("sha256:") and router.digest != chat.digest
    assert router.chat(router.messages[0])[1] == {"role": "user", "content": router.messages[0].user}


def test_json_mode_fields(router, chat):
    assert json_mode_fields(router, "openai") == {"response_format": {"type": "json_object"}}
    assert json_mode_fields(router, "ollama") == {"format": "json"}
    assert json_mode_fields(chat, "openai") == {}


@pytest.mark.parametrize("prompt", [None, "Question: hi\nAnswer:"])
def test_json_mode_goes_into_both_wire_bodies(prompt):
    """ChatRequest.json_mode is what the clients put on the wire: OpenAI response_format (chat and
    completion), Ollama format: json (/api/chat and raw /api/generate); off, neither is sent."""
    from trbench.backends.base import ChatRequest
    from trbench.backends.ollama import OllamaClient
    from trbench.backends.openai import OpenAIClient

    on = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], prompt=prompt, max_tokens=8,
                     json_mode=True)
    off = on.model_copy(update={"json_mode": False})
    body = OpenAIClient.body(on)
    assert body["response_format"] == {"type": "json_object"}
    body["response_format"]["type"] = "text"  # each body has its own copy
    assert OpenAIClient.body(on)["response_format"] == {"type": "json_object"}
    assert OllamaClient.body(on)["format"] == "json"
    # a completion (base model) also carries llama.cpp's json_schema: /v1/completions ignores response_format
    assert ("json_schema" in OpenAIClient.body(on)) == (prompt is not None)
    assert "response_format" not in OpenAIClient.body(off) and "format" not in OllamaClient.body(off)


def msg(suite, id):
    return next(m for m in suite.messages if m.id == id)


@pytest.mark.parametrize("text, json_ok, schema_ok, route, route_ok", [
    ('{"route": "calendar"}', True, True, "calendar", True),
    ('```json\n{"route": "calendar", "reason": "a date"}\n```', True, True, "calendar", True),  # extra keys allowed
    ('{"route": "weather"}', True, True, "weather", False),  # valid, wrong route
    ('{"route": "agenda"}', True, False, "agenda", False),  # not one of the routes
    ('{"intent": "calendar"}', True, False, None, False),
    ('["calendar"]', True, False, None, False),
    ("calendar", False, False, None, False),
    ('Route: {"route": "calendar"}', False, False, None, False),
])
def test_router_checks(router, text, json_ok, schema_ok, route, route_ok):
    c = check_answer(router, msg(router, "r01"), text)  # labelled calendar
    assert (c.json_ok, c.schema_ok, c.route, c.route_ok) == (json_ok, schema_ok, route, route_ok)
    assert (c.problem is None) == route_ok


@pytest.mark.parametrize("text, json_ok, schema_ok, problem", [
    ('{"steps": [{"tool": "search_web", "args": {"query": "nvme price"}}, '
     '{"tool": "write_file", "args": {"path": "prices.txt", "content": "..."}}]}', True, True, None),
    ('{"steps": [{"tool": "browse", "args": {}}]}', True, False, "schema"),  # not a tool of the list
    ('{"steps": [{"tool": "read_file"}]}', True, False, "'args' is a required property"),
    ('{"steps": []}', True, False, "schema"),
    ('{"steps": [{"tool": "read_file", "args": {}, "why": "x"}]}', True, False, "schema"),
    ('{"plan": "read it"}', True, False, "'steps' is a required property"),
    ('{"steps": [{"tool": "read_file", "args": {}}', False, False, "not JSON"),
])
def test_orchestrator_checks(orchestrator, text, json_ok, schema_ok, problem):
    c = check_answer(orchestrator, orchestrator.messages[0], text)
    assert (c.json_ok, c.schema_ok, c.route_ok) == (json_ok, schema_ok, None)
    assert (c.problem is None) if problem is None else (problem in c.problem)


def test_the_fixed_tool_list_decides_even_under_an_open_schema(orchestrator):
    open_schema = orchestrator.model_copy(update={"plan_schema": {"type": "object"}})
    c = check_answer(open_schema, orchestrator.messages[0], '{"steps": [{"tool": "rm_rf", "args": {}}]}')
    assert c.schema_ok is False and "'rm_rf' is not one of the suite's tools" in c.problem


def test_chat_has_no_format_check_only_sanity(chat):
    m = chat.messages[0]
    assert check_answer(chat, m, "Because it has thousands of cores.").model_dump(include={"json_ok", "schema_ok", "sanity"}) \
        == {"json_ok": None, "schema_ok": None, "sanity": "ok"}
    assert check_answer(chat, m, "  ").sanity == "empty"
    assert check_answer(chat, m, "<|im_start|>assistant").sanity == "template_tokens"


def answer(router, id, text, e2e, tokens, ok=True):
    return ScenarioAnswer(id=id, ok=ok, check=check_answer(router, msg(router, id), text) if ok else None,
                          e2e_ms=e2e, ttft_ms=e2e / 10, output_tokens=tokens, error=None if ok else "timeout: x")


def test_summary_by_hand(router):
    answers = [
        answer(router, "r01", '{"route": "calendar"}', 100.0, 6),  # json, schema, route
        answer(router, "r06", '{"route": "calendar"}', 200.0, 6),  # json, schema, wrong route
        answer(router, "r11", 'music', 300.0, 2),  # not JSON
        answer(router, "r16", "", 5000.0, None, ok=False),  # the request failed
    ]
    s = summarize_scenario(router, answers)
    assert (s.requests, s.errors, s.json_mode) == (4, 1, True)
    assert s.json_parse_rate == pytest.approx(2 / 3) and s.schema_valid_rate == pytest.approx(2 / 3)
    assert s.route_accuracy == pytest.approx(1 / 3)
    assert (s.output_tokens_mean, s.output_tokens_total) == (pytest.approx(14 / 3), 14)
    # numpy 'linear' percentiles of 100, 200, 300 (the failed request is not a latency)
    assert (s.latency_ms.n, s.latency_ms.p50, s.latency_ms.p95, s.latency_ms.p99) == (3, 200.0, 290.0, 298.0)
    assert s.ttft_ms.p50 == 20.0


def test_chat_summary_has_no_json_rates(chat):
    m = chat.messages[0]
    s = summarize_scenario(chat, [ScenarioAnswer(id=m.id, ok=True, check=check_answer(chat, m, "Fine."), e2e_ms=50.0,
                                                 ttft_ms=5.0, output_tokens=3)])
    assert (s.json_parse_rate, s.schema_valid_rate, s.route_accuracy, s.sane_rate) == (None, None, None, 1.0)


def exchange(**kw) -> RawExchange:
    base = dict(backend="openai", url="http://x", model="m", sent_at_unix=0.0, t_send_ns=0, t_end_ns=250_000_000,
                token_times_ns=[50_000_000, 100_000_000], token_kinds=["content", "content"], output_tokens=2)
    return RawExchange(**{**base, **kw})


def test_answer_from_an_exchange(router):
    a = answer_from_exchange(router, msg(router, "r01"), exchange(text='{"route": "calendar"}'))
    assert a.ok and a.check.route_ok and (a.e2e_ms, a.ttft_ms, a.output_tokens) == (250.0, 50.0, 2)
    failed = answer_from_exchange(router, msg(router, "r01"), exchange(status="error", error_kind="timeout",
                                                                       error_message="no answer in 60 s"))
    assert not failed.ok and failed.check is None and failed.error == "timeout: no answer in 60 s"


@pytest.fixture()
def copy(tmp_path):
    shutil.copytree(DIR, tmp_path / "s")
    return tmp_path / "s"


@pytest.mark.parametrize("file, old, new, expected", [
    ("router.yaml", "kind: router", "kind: routing", "does not match any of the expected tags"),
    ("router.yaml", "route: music}", "route: musik}", "message 'r11': route 'musik' is not one of the routes"),
    ("router.yaml", "id: r02,", "id: r01,", "message id 'r01' repeats"),
    ("orchestrator.yaml", "minItems: 1", "minItems: -1", "schema is not a valid JSON Schema"),
    ("chat.yaml", "max_tokens: 64", "max_tokenz: 64", "max_tokenz"),
    ("chat.yaml", "messages:", "messages: []\nold_messages:", "messages"),
])
def test_bad_suite_files_give_one_line_errors(copy, file, old, new, expected):
    path = copy / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ScenarioSuiteError) as err:
        load_scenario(path)
    line = str(err.value)
    assert "\n" not in line and "spec field 'suites.scenarios'" in line and "fix:" in line and expected in line, line


def test_a_missing_suite_file(tmp_path):
    with pytest.raises(ScenarioSuiteError, match="not found; fix: point it at a suite in datasets/scenarios/"):
        load_scenario(tmp_path / "nope.yaml")
