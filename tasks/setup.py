"""Tasks that turn the flow's parameters into a validated spec, its prompts and the manifest."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from trbench.measure import manifest as env_manifest
from trbench.data import store
from trbench.engines import Instance
from trbench.run import preflight
from trbench.config.agents import AgentSuite, load_agents
from trbench.config.prompts import PromptSuite, load_prompts
from trbench.config.spec import MatrixSpec, load_spec, parse_spec
from trbench.config.paths import resolve_path
from trbench.run.spec_checks import check_spec


@task(name="load-spec", cache_policy=NO_CACHE)
def load_matrix_spec(spec_path: str | None, spec: dict | None, overrides: dict) -> tuple[MatrixSpec, PromptSuite, AgentSuite | None]:
    """The spec (from a file or given inline) with overrides applied, its prompts and agents."""
    source = "spec parameter" if spec is not None else f"spec {resolve_path(spec_path or '')}"
    base = parse_spec(spec, source) if spec is not None else load_spec(resolve_path(spec_path or ""))
    final = base.with_overrides(**overrides)
    # the checks `trbench validate` makes, for runs started from the UI or a schedule; the embedded
    # models are left to preflight, whose message names the instance and the check
    for line in check_spec(final, source, models=False):
        get_run_logger().warning(line)
    agents = load_agents(resolve_path(final.multi_agent.agents)) if final.multi_agent else None
    return final, load_prompts(resolve_path(final.prompts)), agents


def launch_command(tr_id: str) -> str:
    """How to start this TR run again: a deployment run (UI, schedule, worker, fan-out) as the
    `prefect deployment run` with its parameters, where the process's own argv would only name
    Prefect's engine; anything else as its argv. The tr_id is the expanded one ({date}), so the
    command resumes this TR run rather than starting today's."""
    from prefect.runtime import deployment, flow_run

    if not deployment.name:
        return " ".join(sys.argv)
    params = dict(flow_run.parameters)
    if "tr_id" in params:
        params["tr_id"] = tr_id
    return (f"prefect deployment run {shlex.quote(f'{flow_run.flow_name}/{deployment.name}')} "
            f"--params {shlex.quote(json.dumps(params, sort_keys=True, default=str))}")


@task(name="model-facts", cache_policy=NO_CACHE)
def collect_model_facts(spec: MatrixSpec, inst: Instance) -> dict[str, dict]:
    """Digest and metadata of every model (GGUF header; Ollama /api/tags and /api/show); a model
    whose facts cannot be read fails preflight (PreflightError names it and the fix)."""
    return {m: preflight.model_facts(inst, spec.backend, m) for m in spec.models}


@task(name="record-manifest", cache_policy=NO_CACHE)
def record_manifest(spec: MatrixSpec, instances: list[Instance], root: Path, models: dict[str, dict],
                    vram_budget: list[dict]) -> dict:
    """Describe the environment once per TR run and keep it next to the data."""
    described = [env_manifest.describe_instance(i) for i in instances]
    manifest = env_manifest.collect(described, models, command=launch_command(spec.tr_id))
    manifest["spec"] = spec.model_dump()
    manifest["vram_budget"] = vram_budget
    store.write_json_atomic(root / "manifest.json", manifest)
    return manifest
