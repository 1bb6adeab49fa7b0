"""The embeddings workload of load mode as tasks: one step per batch size and instance, persisted
at once (the tr_load flow calls embeddings_workload with the spec's `load.embeddings`)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from trbench.config.embeddings_section import EmbeddingsLoad, EmbeddingTexts, load_texts
from trbench.config.spec import MatrixSpec
from trbench.config.paths import resolve_path
from trbench.data import store
from trbench.engines import Instance
from trbench.run.session import TRSession
from trbench.run.embeddings_step import EmbeddingStepPlan, execute_step, failed_step, step_id

KIND = "embeddings"  # store.TABLES: emb_requests/, emb_steps/


def plan_steps(load: EmbeddingsLoad, spec: MatrixSpec, instances: list[Instance], attempt: int = 1) -> list[EmbeddingStepPlan]:
    """Every batch size on every instance, in the spec's order."""
    model = load.model or spec.models[0]
    return [EmbeddingStepPlan(tr_id=spec.tr_id, run_id=step_id(model, b, load.concurrency, inst.name), attempt=attempt,
                              model=model, provider=inst.provider, backend=spec.backend, instance=inst.name,
                              instance_url=inst.url, batch_size=b, concurrency=load.concurrency)
            for inst in instances for b in load.batch_sizes]


def _prepare(inst: Instance, model: str, num_ctx: int) -> float | None:
    """The embedded engine restarts llama.cpp in embedding mode (mean pooling); an Ollama server loads the
    model at the first request (its load_duration says so) and an external one is what it is."""
    prepare = getattr(inst, "prepare_embeddings", None)
    return prepare(model, num_ctx) if prepare is not None else None


@task(name="embeddings-step", cache_policy=NO_CACHE, task_run_name="embeddings {plan.run_id}")
def embeddings_step(plan: EmbeddingStepPlan, load: EmbeddingsLoad, texts: EmbeddingTexts, inst: Instance,
                    manifest: dict, manifest_digest: str, root: Path) -> dict:
    """One step, written before the task returns; a server that cannot serve it leaves the step with its error."""
    try:
        load_ms = _prepare(inst, plan.model, load.num_ctx)
    except Exception as err:  # noqa: BLE001 - whatever the server did, the step is recorded and the rest goes on
        result = failed_step(plan, load, texts, str(err), manifest_digest)
    else:
        num_ctx = load.num_ctx if plan.backend == "ollama" else None
        result = execute_step(plan, load, texts, manifest_digest, load_ms, num_ctx)
    store.write_run(root, result.step_row, result.request_rows, manifest, kind=KIND)
    return result.step_row


@task(name="embeddings-workload", cache_policy=NO_CACHE)
def embeddings_workload(load: EmbeddingsLoad, session: TRSession, instances: list[Instance]) -> list[dict]:
    """Every step not yet written on `instances` (a resumed TR run measures only what is missing); the
    step rows written now."""
    spec, manifest, manifest_digest, root = session.spec, session.manifest, session.digest, session.root
    texts = load_texts(resolve_path(load.texts))
    done = store.finished_run_ids(root, KIND)
    by_name = {inst.name: inst for inst in instances}
    return [embeddings_step(plan, load, texts, by_name[plan.instance], manifest, manifest_digest, root)
            for plan in plan_steps(load, spec, instances) if plan.run_id not in done]
