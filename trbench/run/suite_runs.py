"""The quality suites of a TR run: plans (model x suite x run, on the TR's instances),
the suites loaded as the spec sets them, and one suite run: its requests one after the other,
each answer checked and kept as a row, a failed request kept with its error.

Prefect-free: tasks/suites.py calls plan_suites and execute_suite and writes what they return.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from trbench.backends import ChatRequest, RawExchange, WireClient
from trbench.config.spec import Cell, MatrixSpec
from trbench.config.paths import resolve_path
from trbench.data.model_facts import ModelFacts
from trbench.data.rows import SuiteRequestRow
from trbench.data.store import slug
from trbench.engines.instance import Instance
from trbench.engines.model_kind import prompt_style
from trbench.measure import metrics
from trbench.run.single import Gate, generation_request, utc
from trbench.suites.qa import QASet, Question, Retriever, load_qa, messages as qa_messages, parse_answer
from trbench.suites.qa_score import QAAnswer
from trbench.suites.scenarios import (
    ChatSuite, Message, OrchestratorSuite, RouterSuite, answer_from_exchange, load_scenario,
)

Scenario = RouterSuite | OrchestratorSuite | ChatSuite
T = TypeVar("T")


def spread(items: Sequence[T], k: int) -> list[T]:
    """k items evenly spaced from the first to the last (all of them when k covers them): a QA
    sample keeps the unanswerable questions at the end of the file, a router sample every route."""
    if k >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(1, k - 1))] for i in range(k)]


class Suites(BaseModel):
    """The TR's suites, loaded once, with the spec's knobs applied (max_tokens, json_mode)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    scenarios: dict[str, Scenario]
    qa: QASet | None = None

    def digest(self, name: str) -> str:
        return self.qa.digest if name == "qa" and self.qa else self.scenarios[name].digest

    def json_mode(self, name: str) -> bool:
        return self.qa.suite.json_mode if name == "qa" and self.qa else self.scenarios[name].json_mode

    def max_tokens(self, name: str) -> int:
        return self.qa.suite.max_tokens if name == "qa" and self.qa else self.scenarios[name].max_tokens


def load_suites(spec: MatrixSpec) -> Suites:
    su = spec.suites
    if su is None:
        return Suites(scenarios={})
    knobs = {k: v for k, v in (("max_tokens", su.max_tokens), ("json_mode", su.json_mode)) if v is not None}
    scenarios = {n: load_scenario(resolve_path(su.scenario_path(n))).model_copy(update=knobs) for n in su.scenarios}
    qa = None
    if su.qa:
        qa = load_qa(resolve_path(su.qa_suite))
        qa_knobs = knobs | ({"top_k": su.top_k} if su.top_k is not None else {})
        qa = qa.model_copy(update={"suite": qa.suite.model_copy(update=qa_knobs)})
    return Suites(scenarios=scenarios, qa=qa)


class SuitePlan(BaseModel):
    """One suite run: every selected item of one suite, for one model, on one instance."""

    tr_id: str
    model: str
    suite: str
    run_index: int
    cell: Cell
    instance: int
    instance_name: str
    instance_url: str
    prompt_style: Literal["chat", "completion"] = "chat"

    @property
    def run_id(self) -> str:
        return f"{slug(self.model)}_{self.suite}_r{self.run_index:02d}"


def plan_suites(spec: MatrixSpec, instances: list[Instance], facts: dict[str, ModelFacts]) -> list[SuitePlan]:
    """Per model (spread over the single-agent lanes' instances, as the matrix is), each suite,
    each run; the model's first GPU setting, the suites' context and temperature."""
    su = spec.suites
    if su is None or not su.names:
        return []
    plans = []
    for m, model in enumerate(spec.suite_models):
        i = m % spec.lanes
        cell = Cell(model=model, num_gpu=spec.grid.num_gpu[0], num_ctx=spec.suites_num_ctx, temperature=su.temperature)
        for name in su.names:
            for r in range(su.runs):
                plans.append(SuitePlan(tr_id=spec.tr_id, model=model, suite=name, run_index=r, cell=cell, instance=i,
                                       instance_name=instances[i].name, instance_url=instances[i].url,
                                       prompt_style=prompt_style(facts.get(model))))
    return plans


def suite_lanes(plans: list[SuitePlan]) -> list[list[SuitePlan]]:
    """The plans per instance, in order: one instance answers one suite request at a time."""
    lanes: dict[int, list[SuitePlan]] = {}
    for p in plans:
        lanes.setdefault(p.instance, []).append(p)
    return [lanes[i] for i in sorted(lanes)]


class _Item(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    id: str
    messages: list[dict[str, str]]
    expected: str | None
    message: Message | None = None
    question: Question | None = None


def _items(suites: Suites, plan: SuitePlan, spec: MatrixSpec) -> list[_Item]:
    su = spec.suites
    assert su is not None  # suite runs are planned only from a spec that has suites
    if plan.suite == "qa":
        qa = suites.qa
        assert qa is not None  # loaded for a spec whose suites hold qa
        retriever = Retriever(qa.documents)
        return [_Item(id=q.id, messages=qa_messages(qa, q, retriever), expected=q.truth.answer_value, question=q)
                for q in spread(qa.questions, su.questions)]
    suite = suites.scenarios[plan.suite]
    return [_Item(id=m.id, messages=suite.chat(m), expected=m.route, message=m)
            for m in spread(suite.messages, su.messages)]


def request(spec: MatrixSpec, plan: SuitePlan, suites: Suites, item: _Item) -> ChatRequest:
    return generation_request(plan.model, item.messages, plan.prompt_style, plan.cell, suites.max_tokens(plan.suite),
                              spec.seed, suites.json_mode(plan.suite))


def _checks(suites: Suites, plan: SuitePlan, item: _Item, ex: RawExchange) -> dict:
    """The answer's check columns of its row."""
    if plan.suite == "qa":
        if ex.status != "ok":
            return {}
        pred: QAAnswer = parse_answer(item.id, ex.text)
        return {"json_ok": pred.error is None, "problem": pred.error, "answer_value": pred.answer_value,
                "answer_unit": pred.answer_unit, "ref_id": sorted(pred.refs),
                "answer_check": metrics.answer_check(ex.text, item.messages[-1]["content"])}
    assert item.message is not None  # a scenario's item carries its message
    a = answer_from_exchange(suites.scenarios[plan.suite], item.message, ex)
    c = a.check
    if c is None:
        return {}
    return {"json_ok": c.json_ok, "schema_ok": c.schema_ok, "route": c.route, "route_ok": c.route_ok,
            "problem": c.problem, "answer_check": c.sanity}


def suite_row(spec: MatrixSpec, plan: SuitePlan, suites: Suites, index: int, item: _Item, ex: RawExchange,
              manifest_digest: str) -> dict:
    m = metrics.derive(ex)
    return SuiteRequestRow(
        tr_id=plan.tr_id, run_id=plan.run_id, model=plan.model, provider=spec.provider, backend=spec.backend,
        instance=plan.instance_name, instance_url=plan.instance_url, num_gpu=plan.cell.num_gpu,
        num_ctx=plan.cell.num_ctx, temperature=plan.cell.temperature, prompt_style=plan.prompt_style,
        suite=plan.suite, kind="qa" if plan.suite == "qa" else suites.scenarios[plan.suite].kind,
        suite_digest=suites.digest(plan.suite), json_mode=suites.json_mode(plan.suite),
        max_tokens=suites.max_tokens(plan.suite), run_index=plan.run_index, request_index=index, item_id=item.id,
        expected=item.expected, sent_at=utc(ex.sent_at_unix), status=ex.status, error_kind=ex.error_kind,
        error_message=ex.error_message, http_status=ex.http_status, finish_reason=ex.finish_reason,
        ttft_ms=m.ttft_ms, e2e_ms=m.e2e_ms, prompt_tokens=m.prompt_tokens, output_tokens=m.output_tokens,
        decode_tps=m.decode_tps, output_text=ex.text, manifest_digest=manifest_digest,
        **_checks(suites, plan, item, ex),
    ).model_dump()


def failed_request(plan: SuitePlan, backend: str, reason: str) -> RawExchange:
    """The record of a request that could not be sent (its server would not load the model)."""
    now = time.perf_counter_ns()
    return RawExchange(backend=backend, url=plan.instance_url, model=plan.model, sent_at_unix=time.time(), t_send_ns=now, t_end_ns=now,
                       status="error", error_kind="connect", error_message=reason)


def execute_suite(spec: MatrixSpec, plan: SuitePlan, client: WireClient | None, suites: Suites,
                  manifest_digest: str, gate: Gate | None = None, failed: str | None = None) -> list[dict]:
    """Every item of the suite run, one request after the other; a failed request is a row with its
    error and the run goes on. `failed`: the server could not be prepared, each item is a row
    with that error (no request is sent)."""
    rows = []
    for index, item in enumerate(_items(suites, plan, spec)):
        if gate:
            gate.check()
        if failed is not None or client is None:
            ex = failed_request(plan, spec.backend, failed or "no client")
        else:
            ex = client.chat(request(spec, plan, suites, item))
        rows.append(suite_row(spec, plan, suites, index, item, ex, manifest_digest))
    if gate:
        gate.check()  # a run cut short by an interrupt is not written: a resume runs it again
    return rows
