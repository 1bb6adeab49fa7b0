"""Planning a TR's runs, without Prefect: which runs, on which instance, within the VRAM budget,
down the OOM ladder, what a resume or a rerun of flagged configs still has to measure.

flows/tr.py, flows/rerun_flagged.py and tasks/bench.py call these; they only orchestrate.
"""

from __future__ import annotations

from typing import TypeVar

import pandas as pd
from pydantic import BaseModel

from trbench.config.agents import ROLES, AgentSuite
from trbench.config.prompts import PromptSuite
from trbench.config.spec import MatrixSpec, OptionSet
from trbench.data.budget_record import BudgetRecord
from trbench.data.model_facts import ModelFacts
from trbench.engines import Instance
from trbench.engines.model_kind import prompt_style
from trbench.run.multi import AgentSlot, MultiRunPlan, config_hash
from trbench.run.single import RunPlan

P = TypeVar("P", RunPlan, MultiRunPlan)


def plan_runs(spec: MatrixSpec, prompts: PromptSuite, instances: list[Instance],
              facts: dict[str, ModelFacts] | None = None) -> list[RunPlan]:
    """Every run of the single-agent matrix; a base model (facts: no chat template) is prompted as
    plain-text completion. With several harnesses each run is measured once per harness, the twins
    one after the other (run 0 python, run 0 rust, run 1 python...) on the same server load, so that
    whatever drifts during a cell (warmth, cache, a neighbour's load) falls on both alike."""
    if not spec.single_agent:
        return []
    facts = facts or {}
    return [
        RunPlan(tr_id=spec.tr_id, cell=cell, cell_hash=spec.cell_hash(cell, prompts.digest, harness), run_index=i,
                instance=instances[0].name, instance_url=instances[0].url,
                prompt_style=prompt_style(facts.get(cell.model)), harness=harness)
        for cell in spec.cells()
        for i in range(spec.runs)
        for harness in spec.harness
    ]


def apply_budget(plans: list[RunPlan], decisions: list[BudgetRecord], spec: MatrixSpec,
                 prompts: PromptSuite) -> tuple[list[RunPlan], list[tuple[RunPlan, str]]]:
    """Downgraded cells run at the rung that fits; skipped cells are returned with their reason."""
    by_key = {d.server_key: d for d in decisions}
    kept, skipped = [], []
    for plan in plans:
        d = by_key.get(plan.cell.budget_key)
        if d is None or d.action == "run":
            kept.append(plan)
        elif d.action == "skip":
            skipped.append((plan, f"skipped by the VRAM budget: {d.reason}"))
        else:
            cell = plan.cell.model_copy(update={"num_gpu": d.to_num_gpu, "num_ctx": d.to_num_ctx})
            kept.append(plan.model_copy(update={"cell": cell, "cell_hash": spec.cell_hash(cell, prompts.digest,
                                                                                         plan.harness)}))
    return kept, skipped


def plan_multi_runs(spec: MatrixSpec, suite: AgentSuite | None, instances: list[Instance],
                    facts: dict[str, ModelFacts] | None = None) -> list[MultiRunPlan]:
    if spec.multi_agent is None or suite is None:
        return []
    facts = facts or {}
    plans = []
    for model in spec.multi_agent_models:
        for scenario in spec.multi_agent.scenarios:
            options = spec.multi_agent.options(scenario)
            slots = [AgentSlot(role=role, instance=inst.name, instance_url=inst.url, options=spec.resolve_options(o))
                     for role, inst, o in zip(ROLES, instances, options)]
            hashes = {h: config_hash(spec, model, scenario, slots, suite.content_digest, h) for h in spec.harness}
            # the harnesses' twin runs one after the other, as in plan_runs
            plans += [MultiRunPlan(tr_id=spec.tr_id, model=model, scenario=scenario, run_index=i, slots=slots,
                                   config_hash=hashes[h], prompt_style=prompt_style(facts.get(model)), harness=h)
                      for i in range(spec.multi_agent.runs) for h in spec.harness]
    return plans


class Lane(BaseModel):
    """Runs that share one instance, measured one after the other."""

    instance: int
    plans: list[RunPlan]


def plan_lanes(plans: list[RunPlan], spec: MatrixSpec, instances: list[Instance]) -> list[Lane]:
    """serial: every run on instance 0, one model loaded at a time. parallel: models spread over
    up to max_parallel instances, each lane measuring its own cells (never a batch average)."""
    width = 1 if spec.execution.mode == "serial" else min(spec.execution.max_parallel, len(instances), len(spec.models))
    lane_of = {m: i % width for i, m in enumerate(spec.models)}
    lanes = [
        Lane(instance=i, plans=[p.model_copy(update={"instance": instances[i].name, "instance_url": instances[i].url})
                                for p in plans if lane_of[p.cell.model] == i])
        for i in range(width)
    ]
    return [lane for lane in lanes if lane.plans]


def fallback_plan(plan: RunPlan, rung: OptionSet, spec: MatrixSpec, prompts: PromptSuite) -> RunPlan:
    """The same run one rung down the OOM ladder: fewer GPU layers and/or a smaller context."""
    cell = plan.cell.model_copy(update={k: v for k, v in (("num_gpu", rung.num_gpu), ("num_ctx", rung.num_ctx)) if v is not None})
    return plan.model_copy(update={"cell": cell, "cell_hash": spec.cell_hash(cell, prompts.digest, plan.harness),
                                   "fallback_from": plan.fallback_from or plan.cell.label})


def oom_decision(group: list[RunPlan], oom: list[str], rungs: list[OptionSet], spec: MatrixSpec,
                 prompts: PromptSuite) -> tuple[dict, list[RunPlan]]:
    """What an out-of-memory config does next: the same runs one rung down, or stay failed."""
    decision = {"model": group[0].cell.model, "from_config": group[0].cell.label, "oom_runs": oom}
    if not rungs:
        return {**decision, "to_config": None, "decision": "no fallback left: the config stays failed"}, []
    rung = rungs.pop(0)
    lower = [fallback_plan(p, rung, spec, prompts) for p in group]
    return {**decision, "to_config": lower[0].cell.label,
            "decision": f"retried at {lower[0].cell.label} (next rung of oom_fallback)"}, lower


def _top(runs: pd.DataFrame) -> int:
    return 0 if runs.empty else int(runs["attempt"].max())


def attempt_plans(plans: list[P], stored: pd.DataFrame) -> list[P]:
    """The plans of one config as the next attempt, or, when the latest attempt has fewer runs
    than planned (a crashed rerun_flagged), the runs that attempt is missing."""
    top = _top(stored)
    cut_short = top > 0 and int((stored["attempt"] == top).sum()) < len(plans)
    attempt = top if cut_short else top + 1
    done = set(stored["run_id"])
    return [q for q in (p.model_copy(update={"attempt": attempt}) for p in plans) if q.run_id not in done]
