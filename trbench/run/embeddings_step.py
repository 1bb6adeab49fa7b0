"""One embeddings step: a batch size on one instance, its warm-up, its measured requests and its rows.

Requests run on one asyncio loop over one pooled httpx.AsyncClient, `concurrency` of them in flight
(closed loop: each worker sends its next request when its last one is answered). The warm-up
requests go first, all answered before the first measured one is sent, and are kept with
is_warmup = true, out of every figure. A failed request is recorded with its error kind and the
step goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import time
from collections.abc import Coroutine
from typing import Any

from pydantic import BaseModel

from trbench.backends import event_loop
from trbench.backends.embedding_clients import AsyncEmbeddingsClient, EmbeddingExchange
from trbench.config.embeddings_section import EmbeddingsLoad, EmbeddingTexts
from trbench.data.rows import EmbeddingKeys, EmbeddingRequestRow, EmbeddingStepRow
from trbench.data.store import slug
from trbench.measure.embedding_metrics import step_figures
from trbench.run.single import PhaseHook


class EmbeddingStepPlan(EmbeddingKeys):
    """Which step: the keys its rows carry."""


class StepResult(BaseModel):
    step_row: dict
    request_rows: list[dict]


def step_id(model: str, batch_size: int, concurrency: int, instance: str) -> str:
    return f"{slug(model)}_emb_b{batch_size}_c{concurrency}_{slug(instance)}"


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end from synchronous code, also where this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return event_loop.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(event_loop.run, coro).result()


async def _phase(client: AsyncEmbeddingsClient, plan: EmbeddingStepPlan, texts: EmbeddingTexts, num_ctx: int | None,
                 indices: range, concurrency: int) -> list[tuple[int, EmbeddingExchange]]:
    """Send the requests of `indices`, `concurrency` at a time; each with its index, in index order."""
    todo = iter(indices)
    done: list[tuple[int, EmbeddingExchange]] = []

    async def worker() -> None:
        for i in todo:  # one iterator shared by the workers: each index is sent once
            batch = [t.text for t in texts.batch(i, plan.batch_size)]
            done.append((i, await client.embed(plan.model, batch, num_ctx)))

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(indices))))))
    return sorted(done, key=lambda p: p[0])


async def _drive(plan: EmbeddingStepPlan, load: EmbeddingsLoad, texts: EmbeddingTexts, num_ctx: int | None,
                 api_key_env: str | None, on_phase: PhaseHook) -> tuple[int, list[tuple[int, bool, EmbeddingExchange]]]:
    client = AsyncEmbeddingsClient(plan.backend, plan.instance_url, load.timeout_s, connections=load.concurrency,
                                   api_key_env=api_key_env)
    try:
        t0 = time.perf_counter_ns()
        if load.warmup:
            on_phase("warmup")
        warm = await _phase(client, plan, texts, num_ctx, range(load.warmup), load.concurrency)
        on_phase("measured")
        measured = await _phase(client, plan, texts, num_ctx, range(load.warmup, load.warmup + load.requests),
                                load.concurrency)
    finally:
        on_phase("idle")
        await client.aclose()
    return t0, [(i, True, ex) for i, ex in warm] + [(i, False, ex) for i, ex in measured]


def request_row(plan: EmbeddingStepPlan, index: int, is_warmup: bool, ex: EmbeddingExchange, t0_ns: int) -> dict:
    return EmbeddingRequestRow(
        **plan.model_dump(), request_index=index, is_warmup=is_warmup,
        sent_at=dt.datetime.fromtimestamp(ex.sent_at_unix, dt.timezone.utc),
        sent_offset_ms=(ex.t_send_ns - t0_ns) / 1e6, status=ex.status, error_kind=ex.error_kind,
        error_message=ex.error_message, http_status=ex.http_status, latency_ms=ex.latency_ms, n_texts=ex.n_texts,
        n_vectors=ex.n_vectors, dims=ex.dims, prompt_tokens=ex.prompt_tokens, server_total_ms=ex.server_total_ms,
        server_load_ms=ex.server_load_ms,
    ).model_dump()


def step_row(plan: EmbeddingStepPlan, load: EmbeddingsLoad, texts: EmbeddingTexts, rows: list[dict],
             started_at: dt.datetime, load_ms: float | None, manifest_digest: str) -> dict:
    measured = [r for r in rows if not r["is_warmup"]]
    figures = step_figures(measured, load.slo_ms)
    return EmbeddingStepRow(
        **plan.model_dump(), started_at=started_at, n_warmup=len(rows) - len(measured), load_ms=load_ms,
        texts_name=texts.name, texts_digest=texts.digest, **figures.model_dump(), manifest_digest=manifest_digest,
    ).model_dump()


def execute_step(plan: EmbeddingStepPlan, load: EmbeddingsLoad, texts: EmbeddingTexts, manifest_digest: str,
                 load_ms: float | None = None, num_ctx: int | None = None, api_key_env: str | None = None,
                 on_phase: PhaseHook | None = None) -> StepResult:
    """Measure one step; num_ctx goes with each Ollama request (options.num_ctx), as a chat request's;
    api_key_env: the variable holding the server's key, if it asks for one; on_phase hears where the
    warm-ups (only when there are any) and the measured requests start and where the step ends."""
    started_at = dt.datetime.now(dt.timezone.utc)
    t0, observed = run_sync(_drive(plan, load, texts, num_ctx, api_key_env, on_phase or (lambda _label: None)))
    rows = [request_row(plan, i, warm, ex, t0) for i, warm, ex in observed]
    return StepResult(step_row=step_row(plan, load, texts, rows, started_at, load_ms, manifest_digest), request_rows=rows)


def failed_step(plan: EmbeddingStepPlan, load: EmbeddingsLoad, texts: EmbeddingTexts, reason: str,
                manifest_digest: str) -> StepResult:
    """A step whose server could not be prepared: every planned request recorded as not sent, with the reason."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [EmbeddingRequestRow(**plan.model_dump(), request_index=i, is_warmup=False, sent_at=now, sent_offset_ms=0.0,
                                status="error", error_kind="connect", error_message=f"not sent: {reason}",
                                latency_ms=0.0, n_texts=plan.batch_size).model_dump()
            for i in range(load.warmup, load.warmup + load.requests)]
    return StepResult(step_row=step_row(plan, load, texts, rows, now, None, manifest_digest), request_rows=rows)
