"""Scenario suites (datasets/scenarios/*.yaml): router, orchestrator and chat. Loading
(one-line errors), the per-answer checks (JSON parse, schema validity, route), and the
per-scenario aggregates (rates, output tokens, latency p50/p95/p99)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from trbench.backends.base import RawExchange
from trbench.backends import backend_kind
from trbench.config.suite_files import content_digest, read_suite
from trbench.measure.metrics import AnswerCheck, Summary, answer_check, derive, mean, summarize
from trbench.suites.answers import parse_json_answer

EXAMPLE = "the suites in datasets/scenarios/"

# what asks a server for JSON, per wire protocol (OpenAI-compatible incl. llama.cpp; Ollama /api/chat):
# the clients put these into the body of a ChatRequest with json_mode set


class ScenarioSuiteError(ValueError):
    """A scenario suite that cannot be used; str() is one line naming the field and the fix."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    user: str = Field(min_length=1)
    route: str | None = None  # the label (router suites)


class _Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    description: str = ""
    system: str = Field(min_length=1)
    json_mode: bool = Field(False, description="ask the server for JSON (OpenAI response_format, Ollama format: json)")
    max_tokens: int = Field(64, ge=1, le=4096)
    messages: list[Message] = Field(min_length=1)
    digest: str = ""

    @model_validator(mode="after")
    def _unique_ids(self):
        ids = [m.id for m in self.messages]
        dup = next((i for i in ids if ids.count(i) > 1), None)
        if dup is not None:
            raise ValueError(f"message id {dup!r} repeats; fix: give each message its own id")
        return self

    def chat(self, message: Message) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": message.user}]


class RouterSuite(_Suite):
    kind: Literal["router"]
    routes: list[str] = Field(min_length=2)

    @model_validator(mode="after")
    def _labelled(self):
        for m in self.messages:
            if m.route not in self.routes:
                raise ValueError(f"message {m.id!r}: route {m.route!r} is not one of the routes "
                                 f"({', '.join(self.routes)}); fix: label it with one of them, or add the route")
        return self

    @property
    def answer_schema(self) -> dict:
        return {"type": "object", "required": ["route"], "properties": {"route": {"enum": self.routes}}}


class OrchestratorSuite(_Suite):
    kind: Literal["orchestrator"]
    tools: list[str] = Field(min_length=1)
    plan_schema: dict = Field(alias="schema")

    @model_validator(mode="after")
    def _schema_is_valid(self):
        try:
            Draft202012Validator.check_schema(self.plan_schema)
        except SchemaError as err:
            raise ValueError(f"schema is not a valid JSON Schema ({err.message}); fix: correct the schema") from None
        return self

    @property
    def answer_schema(self) -> dict:
        return self.plan_schema


class ChatSuite(_Suite):
    kind: Literal["chat"]


Suite = Annotated[RouterSuite | OrchestratorSuite | ChatSuite, Field(discriminator="kind")]


class ScenarioSuite(RootModel[Suite]):
    pass


def load_scenario(path: str | Path) -> RouterSuite | OrchestratorSuite | ChatSuite:
    p = Path(path)
    wrapped, raw = read_suite(p, ScenarioSuite, ScenarioSuiteError, "suites.scenarios",
                              "point it at a suite in datasets/scenarios/", EXAMPLE, detail_lines=3)
    return wrapped.root.model_copy(update={"digest": content_digest(raw)})


def json_mode_fields(suite: _Suite, backend: str) -> dict:
    """The request body fields that ask `backend` for JSON when the suite says so (else none)."""
    return dict(backend_kind(backend).json_mode) if suite.json_mode else {}


# --- per answer -------------------------------------------------------------------------------


class ScenarioCheck(BaseModel):
    """One answer's checks; None where the check does not apply (chat: no JSON; route: router only)."""

    id: str
    json_ok: bool | None
    schema_ok: bool | None
    route: str | None = None
    route_ok: bool | None = None
    sanity: AnswerCheck
    problem: str | None = None  # why a check failed, first failure only


def check_answer(suite: RouterSuite | OrchestratorSuite | ChatSuite, message: Message, text: str) -> ScenarioCheck:
    sanity = answer_check(text, message.user)
    if isinstance(suite, ChatSuite):
        return ScenarioCheck(id=message.id, json_ok=None, schema_ok=None, sanity=sanity)
    value, problem = parse_json_answer(text)
    json_ok = problem is None
    schema_ok = False
    if json_ok:
        error = next(iter(Draft202012Validator(suite.answer_schema).iter_errors(value)), None)
        schema_ok = error is None
        problem = None if error is None else f"schema: {error.message}"
    if isinstance(suite, OrchestratorSuite) and schema_ok:
        # the fixed tool list decides even when the suite's schema leaves the tool open
        steps = value.get("steps") if isinstance(value, dict) else None
        bad = next((s.get("tool") for s in steps or [] if isinstance(s, dict) and s.get("tool") not in suite.tools),
                   None)
        if bad is not None:
            schema_ok, problem = False, f"tool {bad!r} is not one of the suite's tools"
    if not isinstance(suite, RouterSuite):
        return ScenarioCheck(id=message.id, json_ok=json_ok, schema_ok=schema_ok, sanity=sanity, problem=problem)
    route = value.get("route") if json_ok and isinstance(value, dict) and isinstance(value.get("route"), str) else None
    route_ok = route == message.route
    if problem is None and not route_ok:
        problem = f"route {route!r}, expected {message.route!r}"
    return ScenarioCheck(id=message.id, json_ok=json_ok, schema_ok=schema_ok, route=route, route_ok=route_ok,
                         sanity=sanity, problem=problem)


class ScenarioAnswer(BaseModel):
    """One request of a scenario: its checks (None when the request failed) and what was measured."""

    id: str
    ok: bool
    check: ScenarioCheck | None
    e2e_ms: float | None
    ttft_ms: float | None
    output_tokens: int | None
    error: str | None = None


def answer_from_exchange(suite: RouterSuite | OrchestratorSuite | ChatSuite, message: Message,
                         ex: RawExchange) -> ScenarioAnswer:
    m = derive(ex)
    if ex.status != "ok":
        return ScenarioAnswer(id=message.id, ok=False, check=None, e2e_ms=m.e2e_ms, ttft_ms=m.ttft_ms,
                              output_tokens=m.output_tokens, error=f"{ex.error_kind}: {ex.error_message}")
    return ScenarioAnswer(id=message.id, ok=True, check=check_answer(suite, message, ex.text), e2e_ms=m.e2e_ms,
                          ttft_ms=m.ttft_ms, output_tokens=m.output_tokens)


# --- per scenario -----------------------------------------------------------------------------


class ScenarioSummary(BaseModel):
    """Rates over the answered requests (a failed request is counted in `errors`, not as a bad
    answer); None where the check does not apply. Latency: e2e_ms of the answered requests."""

    scenario: str
    kind: str
    json_mode: bool
    requests: int
    errors: int
    json_parse_rate: float | None
    schema_valid_rate: float | None
    route_accuracy: float | None
    sane_rate: float  # answers that pass the sanity check (not empty, no template tokens, no echo)
    output_tokens_mean: float | None
    output_tokens_total: int
    latency_ms: Summary
    ttft_ms: Summary


def summarize_scenario(suite: RouterSuite | OrchestratorSuite | ChatSuite,
                       answers: Sequence[ScenarioAnswer]) -> ScenarioSummary:
    done = [a for a in answers if a.ok and a.check is not None]
    checks = [a.check for a in done if a.check is not None]  # all of done's: the filter narrows the type

    def rate(field: str) -> float | None:
        vals = [getattr(c, field) for c in checks if getattr(c, field) is not None]
        return sum(vals) / len(vals) if vals else None

    tokens = [a.output_tokens for a in done if a.output_tokens is not None]
    return ScenarioSummary(
        scenario=suite.name, kind=suite.kind, json_mode=suite.json_mode, requests=len(answers),
        errors=len(answers) - len(done), json_parse_rate=rate("json_ok"), schema_valid_rate=rate("schema_ok"),
        route_accuracy=rate("route_ok"), sane_rate=(sum(c.sanity == "ok" for c in checks) / len(checks)) if checks else 0.0,
        output_tokens_mean=mean(tokens), output_tokens_total=sum(tokens),
        latency_ms=summarize([a.e2e_ms for a in done]), ttft_ms=summarize([a.ttft_ms for a in done]),
    )
