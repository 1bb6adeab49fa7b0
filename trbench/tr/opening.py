"""The opening of a TR run, before anything is measured: the spec and its inputs, the servers made,
checked, started once and their models checked, the model facts, the VRAM budget and the manifest.
A bad input stops here with one line naming the field and the fix."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trbench.config.agents import AgentSuite, load_agents
from trbench.config.paths import output_root, resolve_path
from trbench.config.prompts import PromptSuite, load_prompts
from trbench.config.spec import MatrixSpec, load_spec, parse_spec
from trbench.data import store
from trbench.data.budget_record import BudgetRecord
from trbench.data.environment import Manifest
from trbench.data.model_facts import ModelFacts
from trbench.engines import Instance, InstanceError, tuning
from trbench.measure import manifest as env_manifest
from trbench.measure import vram
from trbench.run import preflight, progress
from trbench.run.spec_checks import check_spec
from trbench.workloads.session import TRSession
from trbench.workloads.steps import Steps


class NoServerStarted(InstanceError):
    """Every server of the TR failed to start: the message is the first start failure (what
    failed and the fix)."""


def load_tr_spec(steps: Steps, spec_path: str | None, spec: dict[str, Any] | None,
                 overrides: dict[str, Any]) -> tuple[MatrixSpec, PromptSuite, AgentSuite | None]:
    """The spec (from a file or given inline) with overrides applied, its prompts and agents."""

    def load() -> tuple[MatrixSpec, PromptSuite, AgentSuite | None]:
        source = "spec parameter" if spec is not None else f"spec {resolve_path(spec_path or '')}"
        base = parse_spec(spec, source) if spec is not None else load_spec(resolve_path(spec_path or ""))
        final = base.with_overrides(**overrides)
        # the checks `trbench validate` makes, for runs started from the UI or a schedule; the embedded
        # models are left to preflight, whose message names the instance and the check
        for line in check_spec(final, source, models=False):
            steps.log.warning(line)
        agents = load_agents(resolve_path(final.multi_agent.agents)) if final.multi_agent else None
        return final, load_prompts(resolve_path(final.prompts)), agents

    return steps.call("load-spec", "load-spec", load)


def check_instance(session: TRSession, inst: Instance) -> str:
    """A server trbench starts: what an earlier run left of it removed, then its port is free.
    An external one: it answers."""

    def check() -> str:
        if inst.starts_server:
            removed = preflight.remove_leftovers(inst)
            if removed:
                session.steps.log.warning("%s: removed what a crashed run left: %s", inst.name, ", ".join(removed))
            return preflight.check_port_free(inst)
        preflight.check_health(inst, session.spec.backend)
        return f"{inst.name}: {inst.url} answers"

    return session.steps.call("preflight-instance", f"preflight {inst.name}", check)


def _track_pulls(steps: Steps) -> Callable[[], None]:
    """A progress artifact per model an instance pulls, kept current as the layers download; returns
    the function that stops tracking."""
    lock = threading.Lock()
    bars: dict[str, Callable[[float, str | None], None]] = {}
    percent: dict[str, float] = {}  # of the layer downloading; the statuses after it carry no byte counts
    throttle = progress.PullThrottle(step_pct=5.0)  # an API call per progress line would be thousands

    def on_event(event: progress.ProgressEvent) -> None:
        if event.kind != "pull":
            return
        who, _, status = event.message.rpartition(": ")
        with lock:
            if who not in bars:
                bars[who] = steps.progress_artifact(f"pull-{who}", f"pull {who}")
            pct = 100.0 if status == "success" else event.pull_pct
            percent[who] = pct if pct is not None else percent.get(who, 0.0)
            if throttle.due(event):
                bars[who](percent[who], progress.describe_pull(event))

    return progress.subscribe(on_event)


def check_model(session: TRSession, inst: Instance, model: str) -> str:
    """The model is on the instance; an Ollama server pulls it first when the spec allows."""
    pull = bool(getattr(session.spec.server, "pull_models", False))

    def check() -> str:
        untrack = _track_pulls(session.steps) if pull else None
        try:
            return preflight.check_model(inst, session.spec.backend, model, pull)
        finally:
            if untrack:
                untrack()

    return session.steps.call("preflight-model", f"preflight {model} on {inst.name}", check)


def start_instances(session: TRSession) -> list[str]:
    """Start every server the provider starts (containers, `ollama serve`); embedded ones load per
    cell. A server that will not start is recorded and marked out, the others start."""

    def start() -> list[str]:
        started = []
        for inst in session.instances:
            try:
                inst.start()
            except Exception as err:  # noqa: BLE001 - recorded; the other servers start all the same
                session.steps.log.error(session.faults.record("start", inst.name, err, unusable="it did not start"))
                try:
                    inst.stop()  # whatever half of it was created
                except Exception as stop_err:  # noqa: BLE001 - recorded too
                    session.steps.log.error(session.faults.record("stop", inst.name, stop_err))
                continue
            started.append(f"{inst.name}: {inst.url}")
        return started

    return session.steps.call("start-instances", "start-instances", start)


def vram_budget(spec: MatrixSpec, facts: dict[str, ModelFacts]) -> list[BudgetRecord]:
    """Each server configuration's estimated GPU memory against what the GPU has free (weights
    plus a real KV cache term, trbench.measure.vram_estimate): run, downgrade or skip, with the reason recorded."""
    free = vram.gpu_free_mib()
    out: list[BudgetRecord] = []
    cells = {c.budget_key: c for c in spec.cells()}
    for (model, num_gpu, num_ctx, settings), cell in cells.items():
        k, v = tuning.kv_types(cell, spec.provider)
        try:
            estimate = vram.estimate_from_facts(facts.get(model) or ModelFacts(), num_ctx, num_gpu,
                                                sequences=cell.slots or spec.server.parallel_sequences, kv_type=k,
                                                kv_type_v=v, flash_attention=cell.flash_attention,
                                                ubatch=cell.ubatch_size)
        except (ValueError, TypeError, KeyError) as err:
            out.append(BudgetRecord(model=model, num_gpu=num_gpu, num_ctx=num_ctx, settings=settings, action="run",
                                    reason=f"no estimate ({err}); budget not checked", estimate_gib=None))
            continue
        d = vram.budget_decision(estimate, free)
        out.append(BudgetRecord(model=model, num_gpu=num_gpu, num_ctx=num_ctx, settings=settings, action=d.action,
                                reason=d.reason,
                                estimate_gib=round(estimate.total_gib, 3), formula=estimate.formula,
                                to_num_gpu=d.num_gpu, to_num_ctx=d.num_ctx, free_mib=d.free_mib))
    return out


def record_manifest(session: TRSession, budget: list[BudgetRecord]) -> Manifest:
    """Describe the environment once per TR run and keep it next to the data."""
    s = session

    def record() -> Manifest:
        described = [env_manifest.describe_instance(i, s.spec.backend) for i in s.instances]
        manifest = env_manifest.collect(described, s.facts, command=s.steps.command(s.spec.tr_id),
                                        spec=s.spec.model_dump(), vram_budget=budget)
        store.write_json_atomic(s.root / "manifest.json", manifest.recorded())
        return manifest

    return s.steps.call("record-manifest", "record-manifest", record)


def start_servers(session: TRSession) -> None:
    """Start the servers once, check every model on each, then record the model facts, the VRAM
    budget (in the manifest) and the manifest."""
    s = session
    spec = s.spec
    start_instances(s)
    if not s.live:
        raise NoServerStarted(s.faults.start_cause(len(s.instances)))
    for inst in s.live:
        for model in spec.models:
            check_model(s, inst, model)
    first = s.live[0]
    s.facts = s.steps.call("model-facts", "model-facts",
                           lambda: {m: preflight.model_facts(first, spec.backend, m) for m in spec.models})
    matrix = spec.single_agent or spec.multi_agent is not None
    # a TR of load steps alone has no matrix to budget
    budget = s.steps.call("vram-budget", "vram-budget", vram_budget, spec, s.facts) if matrix else []
    s.manifest = record_manifest(s, budget)
    s.digest = env_manifest.digest(s.manifest)


def output_dir(spec: MatrixSpec) -> Path:
    return output_root(spec.output_dir)
