"""The embeddings workload of load mode (spec `load.embeddings`): one step per batch size and
instance, each written as soon as it is measured; last, as the embedded engine restarts llama.cpp
in embedding mode for it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from trbench.backends import backend_kind
from trbench.config.embeddings_section import EmbeddingsLoad, EmbeddingTexts, load_texts
from trbench.config.spec import MatrixSpec
from trbench.config.paths import resolve_path
from trbench.data import store
from trbench.engines import Instance
from trbench.measure import energy
from trbench.run.embeddings_step import EmbeddingStepPlan, execute_step, failed_step, step_id
from trbench.workloads.protocol import Measured, Planned, ReportPart
from trbench.workloads.run_outcomes import EmbeddingsOutcome

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession

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
    return inst.prepare_embeddings(model, num_ctx)


def measure_step(session: TRSession, plan: EmbeddingStepPlan, load: EmbeddingsLoad, texts: EmbeddingTexts,
                 inst: Instance) -> dict[str, Any]:
    """One step, written before it returns; a server that cannot serve it leaves the step with its error."""
    telemetry_rows = None
    try:
        load_ms = _prepare(inst, plan.model, load.num_ctx)
    except Exception as err:  # noqa: BLE001 - whatever the server did, the step is recorded and the rest goes on
        result = failed_step(plan, load, texts, str(err), session.digest)
        result.step_row.update(energy.no_telemetry("no telemetry: the step did not start", energy.EMBEDDING_COLUMNS))
    else:
        endpoint = backend_kind(plan.backend).embeddings
        num_ctx = load.num_ctx if endpoint is not None and endpoint.options else None
        sampler = energy.sampler_for(session.spec.telemetry, [inst])  # GPU and host telemetry beside the step
        with sampler or contextlib.nullcontext():
            result = execute_step(plan, load, texts, session.digest, load_ms, num_ctx, inst.api_key_env,
                                  sampler.mark if sampler else None)
        telemetry_rows = energy.finish_embeddings(sampler, result.step_row)
    store.write_run(session.root, result.step_row, result.request_rows, session.manifest, kind=KIND,
                    telemetry_rows=telemetry_rows)
    return result.step_row


def measure_steps(session: TRSession, load: EmbeddingsLoad, instances: list[Instance]) -> list[dict[str, Any]]:
    """Every step not yet written on `instances` (a resumed TR run measures only what is missing); the
    step rows written now."""
    texts = load_texts(resolve_path(load.texts))
    done = store.finished_run_ids(session.root, KIND)
    by_name = {inst.name: inst for inst in instances}
    return [session.steps.call("embeddings-step", f"embeddings {plan.run_id}", measure_step, session, plan, load,
                               texts, by_name[plan.instance])
            for plan in plan_steps(load, session.spec, instances) if plan.run_id not in done]


class EmbeddingLoad:
    """Embeddings throughput per batch size (spec `load.embeddings`)."""

    name: ClassVar[str] = "embeddings"
    tables: ClassVar[tuple[str, ...]] = ("emb_steps", "emb_requests")

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.load is not None and spec.load.embeddings is not None and not rerun

    def plan(self, session: TRSession) -> Planned:
        return Planned(units=[session.live[0]])

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        load = session.spec.load.embeddings if session.spec.load else None
        assert load is not None
        rows = session.steps.call("embeddings-workload", "embeddings-workload", measure_steps, session, load,
                                  planned.units)
        measured.embeddings = [EmbeddingsOutcome.of_step(r) for r in rows]

    def report_section(self, root: Path) -> ReportPart | None:
        return None  # the report's Load section, its Embeddings part
