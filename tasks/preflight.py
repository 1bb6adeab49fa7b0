"""Preflight tasks: nothing is loaded or measured until every check passes."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import track_pulls
from trbench.run import preflight
from trbench.measure import vram
from trbench.config.spec import MatrixSpec
from trbench.engines import Instance


@task(name="preflight-instance", cache_policy=NO_CACHE)
def check_instance(inst: Instance, backend: str) -> str:
    """A server trbench starts: what an earlier run left of it removed, then its port is free.
    An external one: it answers."""
    if inst.provider != "external":
        removed = preflight.remove_leftovers(inst)
        if removed:
            get_run_logger().warning("%s: removed what a crashed run left: %s", inst.name, ", ".join(removed))
        return preflight.check_port_free(inst)
    preflight.check_health(inst, backend)
    return f"{inst.name}: {inst.url} answers"


@task(name="preflight-model", cache_policy=NO_CACHE, task_run_name="preflight {model} on {inst.name}")
def check_model(inst: Instance, backend: str, model: str, pull: bool = False) -> str:
    """The model is on the instance; an Ollama server pulls it first when the spec allows (a
    progress artifact follows the pull)."""
    untrack = track_pulls() if pull else None
    try:
        return preflight.check_model(inst, backend, model, pull)
    finally:
        if untrack:
            untrack()


@task(name="vram-budget", cache_policy=NO_CACHE)
def vram_budget(spec: MatrixSpec, facts: dict[str, dict]) -> list[dict]:
    """Each server configuration's estimated GPU memory against what the GPU has free (weights
    plus a real KV cache term, trbench.measure.vram_estimate): run, downgrade or skip, with the reason recorded."""
    free = vram.gpu_free_mib()
    out = []
    for model, num_gpu, num_ctx in dict.fromkeys(c.server_key for c in spec.cells()):
        row = {"model": model, "num_gpu": num_gpu, "num_ctx": num_ctx}
        try:
            estimate = vram.estimate_from_facts(facts.get(model) or {}, num_ctx, num_gpu,
                                                sequences=spec.server.parallel_sequences)
        except (ValueError, TypeError, KeyError) as err:
            out.append({**row, "action": "run", "reason": f"no estimate ({err}); budget not checked", "estimate_gib": None})
            continue
        d = vram.budget_decision(estimate, free)
        out.append({**row, "action": d.action, "reason": d.reason, "estimate_gib": round(estimate.total_gib, 3),
                    "formula": estimate.formula, "to_num_gpu": d.num_gpu, "to_num_ctx": d.num_ctx, "free_mib": d.free_mib})
    return out
