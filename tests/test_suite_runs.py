"""One suite run (trbench/run/suite_runs.py), Prefect-free: the planned items, the request as sent
(JSON mode, completion prompts for a base model), and failed requests kept as rows with their
error while the run goes on. Against the mock provider (a fake LLM server for harness tests) and a
port where nothing listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import free_port

from trbench.data.model_facts import ModelFacts
from trbench.backends.openai import OpenAIClient
from trbench.config.servers import MockServer
from trbench.config.spec import parse_spec
from trbench.config.smoke import smoke_spec
from trbench.data.rows import SuiteRequestRow
from trbench.engines import create_instances
from trbench.run.suite_runs import execute_suite, load_suites, plan_suites, request, spread, _items

ROOT = Path(__file__).resolve().parent.parent


def spec(**suites):
    return parse_spec({"tr_id": "mock-r", "provider": "mock", "models": ["a", "b"], "grid": {"num_ctx": [1024]},
                       "suites": {"scenarios": ["router", "chat"], "qa": True, "messages": 3, "questions": 3,
                                  **suites}})


def test_spread_takes_first_and_last():
    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 5) == [1, 2] and spread(list("abc"), 1) == ["a"]


def test_plans_and_requests(tmp_path):
    s = spec(json_mode=False, max_tokens=40)
    insts = create_instances(s.server, tmp_path, 1)
    plans = plan_suites(s, insts, {"b": ModelFacts(prompt_style="completion")})
    assert [(p.model, p.suite) for p in plans] == [(m, n) for m in "ab" for n in ("router", "chat", "qa")]
    assert plans[0].cell.num_ctx == 1024 and plans[0].cell.temperature == 0.0
    suites = load_suites(s)
    qa_items = _items(suites, plans[2], s)
    assert [i.id for i in qa_items] == ["q01", "q21", "q41"]  # the last one unanswerable
    req = request(s, plans[5], suites, qa_items[0])
    assert req.json_mode is False and req.max_tokens == 40 and req.prompt and "Documents:" in req.prompt  # base model
    assert request(spec(), plans[0], load_suites(spec()), _items(load_suites(spec()), plans[0], spec())[0]).json_mode


def test_failed_requests_are_rows_and_the_run_goes_on(tmp_path):
    s = spec()
    (inst,) = create_instances(MockServer(ports=[free_port()], token_ms=0), tmp_path, 1)
    plan = plan_suites(s, [inst], {})[0]  # router on model a
    suites = load_suites(s)
    dead = OpenAIClient(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    rows = execute_suite(s, plan, dead, suites, "d")
    dead.close()
    assert len(rows) == 3 and all(r["status"] == "error" and r["error_kind"] == "connect" for r in rows)
    assert all(r["json_ok"] is None for r in rows) and list(rows[0]) == list(SuiteRequestRow.model_fields)
    inst.start()
    try:
        live = OpenAIClient(inst.url, timeout_s=5)
        rows = execute_suite(s, plan, live, suites, "d")
        live.close()
    finally:
        inst.stop()
    assert [r["status"] for r in rows] == ["ok"] * 3 and [r["item_id"] for r in rows] == ["r01", "r15", "r30"]
    failed = execute_suite(s, plan, None, suites, "d", failed="would not load")
    assert {r["error_message"] for r in failed} == {"would not load"}


@pytest.mark.parametrize("path", ["deployments/quickstart.yaml", "deployments/tr116.yaml"])
def test_smoke_spec_cuts_every_part_to_one_run_of_two(path):
    from trbench.config.spec import load_spec

    full = load_spec(ROOT / path)
    s = smoke_spec(full)
    assert s.tr_id == f"{full.tr_id}-smoke" and s.runs == 1 and s.requests_per_run == 2 and s.ttft == "cold"
    assert len(s.cells()) == len(full.models) and s.warmup_requests == 0 and s.baseline_tr_id is None
    assert s.suites.names == ["router", "orchestrator", "chat", "qa"]
    assert (s.suites.runs, s.suites.messages, s.suites.questions) == (1, 2, 2) and s.suites_num_ctx >= 1024
    assert s.suite_models == full.models[:1] and s.suites.top_k == 1
    assert s.multi_agent is None and s.instance_count == 1
