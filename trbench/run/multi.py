"""One multi-agent run: collector and insight at once on two instances, then each alone.

Prefect-free: tasks/multi_agent.py calls execute_multi_run and writes what it returns.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel

from trbench.measure import metrics
from trbench.config.agents import ROLES, AgentCall, AgentSuite
from trbench.backends import ChatRequest, RawExchange, WireClient
from trbench.run.single import generation_request, harness_tag, prompt_text, request_row, unique_prefix, utc
from trbench.config.spec import MatrixSpec, MultiAgentSpec, OptionSet, harness_key
from trbench.data.cells import DEFAULT_HARNESS, Harness
from trbench.data.rows import AgentFigures, MaRequestRow, MaRunRow
from trbench.data.store import slug
from trbench.prose import count

N_AGENTS = len(ROLES)


class AgentSlot(BaseModel):
    role: str
    instance: str
    instance_url: str
    options: OptionSet  # as sent; null = the server's default


class MultiRunPlan(BaseModel):
    tr_id: str
    model: str
    scenario: str
    run_index: int
    attempt: int = 1
    slots: list[AgentSlot]  # collector first, then insight
    config_hash: str
    prompt_style: Literal["chat", "completion"] = "chat"  # completion: a base model without a chat template
    harness: Harness = DEFAULT_HARNESS

    @property
    def run_id(self) -> str:
        return f"{slug(self.model)}_{self.scenario}{harness_tag(self.harness)}_r{self.run_index:02d}_a{self.attempt}"

    def slot(self, role: str) -> AgentSlot:
        return next(s for s in self.slots if s.role == role)


def multi_agent_section(spec: MatrixSpec) -> MultiAgentSpec:
    """The spec's multi_agent section: multi-agent runs are planned only from a spec that has one."""
    assert spec.multi_agent is not None
    return spec.multi_agent


def config_hash(spec: MatrixSpec, model: str, scenario: str, slots: list[AgentSlot], agents_digest: str,
                harness: str = DEFAULT_HARNESS) -> str:
    payload = {"model": model, "scenario": scenario, "backend": spec.backend, "provider": spec.provider,
               "options": [s.options.model_dump() for s in slots], "agents": agents_digest,
               "max_tokens": multi_agent_section(spec).max_tokens, "ttft": spec.ttft, "seed": spec.seed,
               **harness_key(harness)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class AgentRun(BaseModel):
    role: str
    phase: str
    calls: list[tuple[str, RawExchange, str]]  # call name, what came back, the prompt text sent
    t_start_ns: int
    t_end_ns: int

    @property
    def wall_s(self) -> float:
        return (self.t_end_ns - self.t_start_ns) / 1e9


class MultiRunResult(BaseModel):
    run_row: dict
    request_rows: list[dict]


def agent_request(spec: MatrixSpec, plan: MultiRunPlan, suite: AgentSuite, role: str, call: AgentCall,
                  previous: str) -> ChatRequest:
    """One call of an agent's workflow, fed the previous answer."""
    agent, slot = suite.agent(role), plan.slot(role)
    # an agent's workflow repeats its prompts run after run: the warm-up rounds put them in the
    # cache; only ttft: cold makes every call new to it
    unique = unique_prefix() if spec.ttft == "cold" else None
    messages = agent.messages(call, suite.digest_text, previous, unique)
    return generation_request(plan.model, messages, plan.prompt_style, slot.options,
                              multi_agent_section(spec).max_tokens, spec.seed)


def run_agent(spec: MatrixSpec, plan: MultiRunPlan, suite: AgentSuite, role: str, client: WireClient,
              phase: str) -> AgentRun:
    """The agent's calls in order, each fed the previous answer."""
    previous, out = "", []
    t0 = time.perf_counter_ns()
    for call in suite.agent(role).calls:
        req = agent_request(spec, plan, suite, role, call, previous)
        ex = client.chat(req)
        out.append((call.name, ex, prompt_text(req)))
        previous = ex.text
        if ex.status != "ok":
            break  # the next call needs this answer
    return AgentRun(role=role, phase=phase, calls=out, t_start_ns=t0, t_end_ns=time.perf_counter_ns())


def run_concurrently(spec, plan, suite, clients: dict[str, WireClient]) -> dict[str, AgentRun]:
    """Both agents released at the same instant, one per instance."""
    barrier = threading.Barrier(N_AGENTS)

    def go(role: str) -> AgentRun:
        barrier.wait()
        return run_agent(spec, plan, suite, role, clients[role], "concurrent")

    with ThreadPoolExecutor(max_workers=N_AGENTS, thread_name_prefix="agent") as pool:
        futures = {role: pool.submit(go, role) for role in ROLES}
        return {role: f.result() for role, f in futures.items()}


def run_solo(spec, plan, suite, clients: dict[str, WireClient]) -> dict[str, AgentRun]:
    """The measured sequential baseline: the same agents, one after the other, same instances."""
    return {role: run_agent(spec, plan, suite, role, clients[role], "solo") for role in ROLES}


def _agent_figures(run: AgentRun) -> dict:
    ms = [metrics.derive(ex) for _, ex, _ in run.calls]
    ok = [m for m in ms if m.status == "ok"]
    return AgentFigures(
        decode_tps=metrics.mean([m.decode_tps for m in ok]),
        ttft_ms=metrics.mean([m.ttft_ms for m in ok]),
        wall_s=run.wall_s,
        output_tokens=sum(m.output_tokens or 0 for m in ok),
    ).model_dump()


def contended(conc: dict, solo: dict, spec: MatrixSpec) -> bool | None:
    rule = multi_agent_section(spec).contention
    if None in (conc["decode_tps"], solo["decode_tps"], conc["ttft_ms"], solo["ttft_ms"]):
        return None
    slower = conc["decode_tps"] < solo["decode_tps"] * (1 - rule.throughput_drop_pct / 100)
    later = conc["ttft_ms"] > solo["ttft_ms"] * rule.ttft_factor
    return bool(slower or later)


def _keys(spec: MatrixSpec, plan: MultiRunPlan, slot: AgentSlot) -> dict:
    o = slot.options
    return {
        "tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": plan.attempt, "cell_hash": plan.config_hash,
        "model": plan.model, "provider": spec.provider, "backend": spec.backend, "instance": slot.instance,
        "instance_url": slot.instance_url, "num_gpu": o.num_gpu, "num_ctx": o.num_ctx, "temperature": o.temperature,
        "ttft_mode": spec.ttft, "prompt_style": plan.prompt_style, "run_index": plan.run_index, "harness": plan.harness,
        "scenario": plan.scenario, "agent": slot.role,
    }


def _rows(spec: MatrixSpec, plan: MultiRunPlan, runs: list[AgentRun]) -> list[dict]:
    rows: list[dict] = []
    for run in runs:
        keys = _keys(spec, plan, plan.slot(run.role))
        for call, ex, prompt in run.calls:
            rows.append(request_row(keys, len(rows), run.phase == "warmup", call, ex, prompt, model=MaRequestRow,
                                    phase=run.phase, call=call))
    return rows


# runs a measured phase ('concurrent' or 'solo') another way (trbench.run.multi_external: an external
# runner's own tasks), or answers None to leave it to the threads here
PhaseRunner = Callable[[MatrixSpec, MultiRunPlan, AgentSuite, dict[str, WireClient], str], "dict[str, AgentRun] | None"]


def execute_multi_run(spec: MatrixSpec, plan: MultiRunPlan, suite: AgentSuite, clients: dict[str, WireClient],
                      warmups: int, manifest_digest: str, on_phase: Callable[[str], None] | None = None,
                      phase_runner: PhaseRunner | None = None) -> MultiRunResult:
    """Warm-ups, then the concurrent and the solo phase (order alternating by run_index). on_phase
    hears each phase as it starts: 'warmup' (only with warm-ups), 'concurrent' and 'solo' (the
    measured window, back to back), then 'idle' at the end (telemetry.Sampler.mark fits)."""
    phase = on_phase or (lambda _label: None)
    if warmups:
        phase("warmup")
    started = time.time()
    warm = [run_agent(spec, plan, suite, role, clients[role], "warmup") for _ in range(warmups) for role in ROLES]
    concurrent_first = plan.run_index % 2 == 0

    def concurrent() -> dict[str, AgentRun]:
        phase("concurrent")
        other = phase_runner(spec, plan, suite, clients, "concurrent") if phase_runner else None
        return other if other is not None else run_concurrently(spec, plan, suite, clients)

    def solo_phase() -> dict[str, AgentRun]:
        phase("solo")
        other = phase_runner(spec, plan, suite, clients, "solo") if phase_runner else None
        return other if other is not None else run_solo(spec, plan, suite, clients)

    if concurrent_first:
        conc, solo = concurrent(), solo_phase()
    else:
        solo, conc = solo_phase(), concurrent()
    phase("idle")
    rows = _rows(spec, plan, warm + list(conc.values()) + list(solo.values()))
    return MultiRunResult(run_row=multi_run_row(spec, plan, conc, solo, rows, started, concurrent_first, manifest_digest),
                          request_rows=rows)


def multi_run_row(spec: MatrixSpec, plan: MultiRunPlan, conc: dict[str, AgentRun], solo: dict[str, AgentRun],
                  rows: list[dict], started: float, concurrent_first: bool, manifest_digest: str) -> dict:
    measured = [r for r in rows if r["phase"] != "warmup"]
    errors = [r for r in measured if r["status"] != "ok"]
    concurrent_wall = (max(r.t_end_ns for r in conc.values()) - min(r.t_start_ns for r in conc.values())) / 1e9
    sequential_wall = sum(r.wall_s for r in solo.values())
    s = metrics.speedup(sequential_wall, concurrent_wall)
    row: dict[str, Any] = {
        "tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": plan.attempt, "cell_hash": plan.config_hash,
        "model": plan.model, "scenario": plan.scenario, "provider": spec.provider, "backend": spec.backend,
        "run_index": plan.run_index, "harness": plan.harness, "started_at": utc(started), "phase_order": "concurrent,solo" if concurrent_first else "solo,concurrent",
        "n_agents": N_AGENTS, "concurrent_wall_s": concurrent_wall, "sequential_wall_s": sequential_wall,
        "speedup": s, "efficiency_pct": metrics.efficiency_pct(s, N_AGENTS),
        "n_requests": len(measured), "n_errors": len(errors),
        "error_kinds": metrics.error_kinds(errors),
        "contention_rule": multi_agent_section(spec).contention.describe(), "manifest_digest": manifest_digest,
    }
    flags = []
    for role in ROLES:
        slot = plan.slot(role)
        c, so = _agent_figures(conc[role]), _agent_figures(solo[role])
        flag = contended(c, so, spec)
        flags.append(flag)
        row.update({f"{role}_instance": slot.instance, f"{role}_options": slot.options.model_dump_json(),
                    f"{role}_contended": flag})
        for phase, fig in (("concurrent", c), ("solo", so)):
            row.update({f"{role}_{phase}_{k}": v for k, v in fig.items()})
    row["contention"] = any(f for f in flags if f is not None) if any(f is not None for f in flags) else None
    for k in ("decode_tps", "ttft_ms"):
        a, b = row[f"insight_concurrent_{k}"], row[f"collector_concurrent_{k}"]
        row[f"delta_{k}"] = a - b if a is not None and b is not None else None
    row["valid"] = not errors and s is not None
    row["invalid_reason"] = None if row["valid"] else f"{count(len(errors), 'failed call')} of {len(measured)}"
    return MaRunRow(**row).model_dump()


def failed_multi_run(spec: MatrixSpec, plan: MultiRunPlan, reason: str, manifest_digest: str) -> dict:
    """The row of a multi-agent run whose instances would not load: kept, marked invalid."""
    row = {"tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": plan.attempt, "cell_hash": plan.config_hash,
           "model": plan.model, "scenario": plan.scenario, "provider": spec.provider, "backend": spec.backend,
           "run_index": plan.run_index, "harness": plan.harness, "started_at": utc(time.time()), "n_agents": N_AGENTS, "n_requests": 0,
           "n_errors": 0, "valid": False, "invalid_reason": f"instance failed: {reason}", "error_kinds": ["instance"],
           "contention_rule": multi_agent_section(spec).contention.describe(), "manifest_digest": manifest_digest}
    for role in ROLES:
        slot = plan.slot(role)
        row.update({f"{role}_instance": slot.instance, f"{role}_options": slot.options.model_dump_json()})
    return MaRunRow(**row).model_dump()
