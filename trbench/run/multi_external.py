"""A multi-agent phase run by an external runner (docs/runner-contract.md): the agents' workflows
go to the runner as one job, and it runs them itself (the Rust runner: tokio tasks, released at
once by a barrier, for the concurrent phase; one after the other for the solo phase), feeding
each call the previous answer where trbench's body holds PREVIOUS_PLACEHOLDER.

Prefect-free; tasks/multi_agent.py hands runner_phase to execute_multi_run (phase_runner).
"""

from __future__ import annotations

from trbench.backends import WireClient
from trbench.backends.external_runner import (PREVIOUS_PLACEHOLDER, ExternalRunnerClient, RunnerRecord, job,
                                              job_request, to_exchange)
from trbench.config.agents import ROLES, AgentSuite
from trbench.config.spec import MatrixSpec
from trbench.run.multi import AgentRun, MultiRunPlan, agent_request
from trbench.run.single import prompt_text

NO_ANSWER = "(no answer)"  # what an agent's prompt says where there is no previous answer (config/agents.py)


def runner_phase(spec: MatrixSpec, plan: MultiRunPlan, suite: AgentSuite, clients: dict[str, WireClient],
                 phase: str) -> dict[str, AgentRun] | None:
    """Both agents' workflows through the runner; None unless every client is an external runner."""
    runners = [c for c in (clients[role] for role in ROLES) if isinstance(c, ExternalRunnerClient)]
    if len(runners) < len(ROLES):  # not every agent's client is the runner's
        return None
    first = runners[0]  # one runner process drives both
    prompts: dict[str, list[tuple[str, str]]] = {}  # role -> (call name, prompt text with the placeholder)
    agents = []
    for role, client in zip(ROLES, runners):
        calls, prompts[role] = [], []
        for i, call in enumerate(suite.agent(role).calls):
            req = agent_request(spec, plan, suite, role, call, PREVIOUS_PLACEHOLDER if i else "")
            calls.append(job_request(client.backend, req, f"{role}:{i}"))
            prompts[role].append((call.name, prompt_text(req)))
        agents.append({"role": role, "url": client.base_url, "calls": calls})
    mode = "concurrent" if phase == "concurrent" else "sequential"
    records = list(first.runner.run_job(job(first.backend, first.base_url, plan.model, first.timeout_s,
                                            first.stall_timeout_s, agents=agents, agents_mode=mode)))
    return {role: _agent_run(role, phase, plan.model, first.backend, prompts[role],
                             [r for r in records if r.agent == role]) for role in ROLES}


def _agent_run(role: str, phase: str, model: str, backend: str, prompts: list[tuple[str, str]],
               records: list[RunnerRecord]) -> AgentRun:
    """The agent's calls as trbench's own agent would have kept them; its span from the first send to
    the end of the last call (the runner's clock readings)."""
    calls, previous = [], ""
    for (name, prompt), rec in zip(prompts, records):
        ex = to_exchange(backend, model, rec)
        calls.append((name, ex, prompt.replace(PREVIOUS_PLACEHOLDER, previous or NO_ANSWER)))
        previous = ex.text
    if not records:
        raise RuntimeError(f"the runner sent no call of agent {role}")
    return AgentRun(role=role, phase=phase, calls=calls, t_start_ns=records[0].t_send_ns,
                    t_end_ns=max(r.t_send_ns + r.end_offset_ns for r in records))
