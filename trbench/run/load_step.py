"""One load step: many requests in flight on one asyncio event loop, every one of them recorded.

Closed loop (mode concurrency): N streams, each sends its next request as soon as its last one
returned. Open loop (mode rate): requests are sent at their seeded arrival times (run/schedule.py)
whether or not the server keeps up; with max_inflight, an arrival waits for a free place and the
wait is recorded (scheduled vs sent offset). A failed request is recorded with its error kind and
the step goes on; warm-ups are stored and marked. Prefect-free: tasks/load.py calls execute_step.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from trbench.backends import backend_kind
from trbench.backends import ChatRequest, RawExchange, event_loop
from trbench.config.load_section import LoadSpec, LoadStep, sweep_steps
from trbench.data.model_facts import ModelFacts
from trbench.config.prompts import PromptSuite
from trbench.config.spec import Cell, MatrixSpec
from trbench.data.rows import LoadRequestRow, LoadStepRow
from trbench.data.store import slug
from trbench.engines import Instance, ollama_api, tuning
from trbench.engines.model_kind import prompt_style
from trbench.measure import load_metrics
from trbench.run.schedule import arrival_offsets, stream_starts
from trbench.run.single import Gate, PhaseHook, generation_request, prompt_text, request_row, unique_prefix, utc
from trbench.prose import count


class AsyncChat(Protocol):
    """What a load step needs of a client (backends.async_client.AsyncWireClient)."""

    async def chat(self, request: ChatRequest) -> RawExchange: ...

    async def aclose(self) -> None: ...


ClientFactory = Callable[[str, str], AsyncChat]  # (backend, base_url) -> client, made inside the step's loop


def wire_client(spec: MatrixSpec) -> ClientFactory:
    """The real client, with the spec's limits and the servers' key (if they ask for one)."""
    from trbench.backends.async_client import AsyncWireClient

    return lambda backend, url: AsyncWireClient(backend, url, spec.timeout_s, spec.stall_timeout_s,
                                                api_key_env=spec.api_key_env)


class StepPlan(BaseModel):
    """Everything that identifies one load step of one cell."""

    tr_id: str
    cell: Cell
    step: LoadStep
    step_index: int
    attempt: int = 1
    instance: str
    instance_url: str
    slots: int | None = None
    max_queue: int | None = None
    prompt_style: Literal["chat", "completion"] = "chat"

    @property
    def run_id(self) -> str:
        return f"{slug(self.cell.model)}_{self.cell.label}_load{self.step_index:02d}_{self.step.label}_a{self.attempt}"


class Sent(BaseModel):
    """One request of a step as it went: its place, whether it is a warm-up, when it was due."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    index: int
    warmup: bool
    prompt_id: str
    prompt: str
    scheduled_ns: int
    exchange: RawExchange


class Budget:
    """Which request is a warm-up, and when the step stops sending (LoadSpec: requests or duration_s
    measured requests after the warm-up)."""

    def __init__(self, load: LoadSpec) -> None:
        self.load = load
        self.measured = 0
        self.measure_start_s: float | None = None

    def admit(self, index: int, offset_s: float) -> bool | None:
        """The warm-up flag of request `index`, due `offset_s` after the step started; None: stop sending."""
        if index < self.load.warmup_requests or offset_s < self.load.warmup_s:
            return True
        if self.measure_start_s is None:
            self.measure_start_s = offset_s
        if self.load.requests is not None and self.measured >= self.load.requests:
            return None
        if self.load.duration_s is not None and offset_s >= self.measure_start_s + self.load.duration_s:
            return None
        self.measured += 1
        return False


async def drive(step: LoadStep, load: LoadSpec, send: Callable[[int], Awaitable[tuple[str, str, RawExchange]]],
                seed: int, gate: Gate | None = None, on_phase: PhaseHook | None = None) -> tuple[int, list[Sent]]:
    """Send a step's requests (closed or open loop) through `send(index)`; (t0_ns, every request sent).
    on_phase hears 'measured' as the first measured request is sent (telemetry.Sampler.mark fits)."""
    sent: list[Sent] = []
    budget = Budget(load)
    t0 = time.perf_counter_ns()
    counter = itertools.count()
    measuring = False

    async def one(index: int, warmup: bool, due_ns: int) -> None:
        nonlocal measuring
        if not warmup and not measuring:
            measuring = True
            if on_phase:
                on_phase("measured")
        prompt_id, prompt, ex = await send(index)
        sent.append(Sent(index=index, warmup=warmup, prompt_id=prompt_id, prompt=prompt, scheduled_ns=due_ns,
                         exchange=ex))

    async def sleep_until(ns: int) -> None:
        delay = (ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)

    async def stream(start_s: float) -> None:
        await sleep_until(t0 + int(start_s * 1e9))
        while True:
            if gate:
                gate.check()
            now = time.perf_counter_ns()
            index = next(counter)
            warmup = budget.admit(index, (now - t0) / 1e9)
            if warmup is None:
                return
            await one(index, warmup, now)

    try:
        async with asyncio.TaskGroup() as group:  # one failing (a cancel) cancels the rest
            if step.mode == "concurrency":
                for start in stream_starts(step.concurrency or 1, load.ramp_up_s):
                    group.create_task(stream(start))
            else:
                room = asyncio.Semaphore(load.max_inflight) if load.max_inflight else None
                arrivals = arrival_offsets(step.rate or 1.0, load.burstiness, seed, load.ramp_up_s)
                for index, due_s in enumerate(arrivals):
                    warmup = budget.admit(index, due_s)
                    if warmup is None:
                        break
                    due_ns = t0 + int(due_s * 1e9)
                    await sleep_until(due_ns)
                    if gate:
                        gate.check()
                    if room:
                        await room.acquire()  # the wait shows as sent later than scheduled
                    task = group.create_task(one(index, warmup, due_ns))
                    if room:
                        task.add_done_callback(lambda _t: room.release())
    except BaseExceptionGroup as failed:  # the first failure as itself (RunCancelled: the flow stops)
        raise failed.exceptions[0] from None
    return t0, sorted(sent, key=lambda s: s.index)


def _failed(req: ChatRequest, backend: str, url: str, err: Exception, t_send: int) -> RawExchange:
    """A request whose client raised instead of answering: kept, with what was raised."""
    return RawExchange(backend=backend, url=url, model=req.model, sent_at_unix=time.time(), t_send_ns=t_send,
                       t_end_ns=time.perf_counter_ns(), status="error", error_kind="bad_response",
                       error_message=f"{type(err).__name__}: {err}"[:2000])


def prepare_server(inst: Instance, spec: MatrixSpec, plan: StepPlan) -> None:
    """The server ready for the step's cell before its clock starts. The embedded engine (re)starts
    llama.cpp for it (prepare); Ollama loads a model at its first request, and again for another num_ctx
    or num_gpu, so the cell's model is loaded here with its requests' options: no measured request
    waits for a load, with or without warm-ups (once loaded, this answers at once)."""
    inst.prepare(plan.cell)
    if backend_kind(spec.backend).loads_per_request:
        cell = plan.cell
        ollama_api.load(plan.instance_url, cell.model, {"num_ctx": cell.num_ctx, "num_gpu": cell.num_gpu,
                                                        **tuning.ollama_options(cell)},
                        spec.load_timeout_s, api_key_env=inst.api_key_env)


def load_section(spec: MatrixSpec) -> LoadSpec:
    """The spec's load section: load steps are planned only from a spec that has one."""
    assert spec.load is not None
    return spec.load


def step_keys(spec: MatrixSpec, plan: StepPlan) -> dict:
    c, s = plan.cell, plan.step
    return {"tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": plan.attempt, "model": c.model,
            "provider": spec.provider, "backend": spec.backend, "instance": plan.instance,
            "instance_url": plan.instance_url, "num_gpu": c.num_gpu, "num_ctx": c.num_ctx,
            "temperature": c.temperature, "slots": plan.slots, "max_queue": plan.max_queue,
            "server_settings": c.settings_text or None,
            "step_index": plan.step_index, "step_label": s.label, "mode": s.mode, "concurrency": s.concurrency, "rate": s.rate,
            "burstiness": load_section(spec).burstiness if s.mode == "rate" else None}


def load_request_rows(keys: dict, t0_ns: int, sent: list[Sent]) -> list[dict]:
    rows = []
    for s in sent:
        ex = s.exchange
        row = request_row(keys, s.index, s.warmup, s.prompt_id, ex, s.prompt, model=LoadRequestRow,
                          scheduled_offset_ms=(s.scheduled_ns - t0_ns) / 1e6,
                          sent_offset_ms=(ex.t_send_ns - t0_ns) / 1e6)
        row["queue_ms"] = load_metrics.queue_ms(row["ttft_ms"], row["prefill_ms"])
        rows.append(row)
    return rows


def step_row(spec: MatrixSpec, plan: StepPlan, request_rows: list[dict], started: float, wall_s: float,
             manifest_digest: str, reason: str | None = None) -> dict:
    load = load_section(spec)
    slo = load.slo.given()
    figures = load_metrics.step_figures(request_rows, slo, plan.step.rate if plan.step.mode == "rate" else None,
                                        load.max_tokens or spec.max_tokens)
    if reason is None and figures.n_ok == 0:
        reason = f"no ok measured request ({count(figures.n_errors, 'error')}: {load_metrics.kinds_text(figures.error_kinds) or 'none sent'})"
    return LoadStepRow(
        **step_keys(spec, plan), started_at=utc(started), wall_s=wall_s, warmup_requests=load.warmup_requests,
        warmup_s=load.warmup_s or None, ramp_up_s=load.ramp_up_s or None, max_inflight=load.max_inflight,
        max_tokens=load.max_tokens or spec.max_tokens, ignore_eos=forces_output(spec), **{f"slo_{k}": v for k, v in slo.items()},
        **figures.model_dump(), valid=reason is None, invalid_reason=reason, manifest_digest=manifest_digest,
        stop_below_good_pct=load.stop_below_good_pct, stop_queue_growth=load.stop_queue_growth,
    ).model_dump()


def forces_output(spec: MatrixSpec) -> bool:
    """Whether the step's outputs are all max_tokens long: asked for, and an OpenAI-compatible server,
    which takes ignore_eos (Ollama has no such option: its early ends are counted instead)."""
    return load_section(spec).exact_output and not backend_kind(spec.backend).loads_per_request


def execute_step(spec: MatrixSpec, plan: StepPlan, make_client: ClientFactory, prompts: PromptSuite,
                 manifest_digest: str, gate: Gate | None = None,
                 on_phase: PhaseHook | None = None) -> tuple[dict, list[dict]]:
    """Run one load step on a fresh event loop; (its step row, its request rows). on_phase hears where
    the warm-ups (only when there are any) and the measured requests start and where the step ends."""
    load = load_section(spec)
    phase = on_phase or (lambda _label: None)
    max_tokens = load.max_tokens or spec.max_tokens
    forced = forces_output(spec)

    async def run() -> tuple[int, list[Sent]]:
        client = make_client(spec.backend, plan.instance_url)

        async def send(index: int) -> tuple[str, str, RawExchange]:
            # every prompt new to the cache
            prompt_id, messages = prompts.messages(index, unique_prefix=unique_prefix())
            req = generation_request(plan.cell.model, messages, plan.prompt_style, plan.cell, max_tokens, spec.seed)
            req = req.model_copy(update={"ignore_eos": forced})
            t_send = time.perf_counter_ns()
            try:
                ex = await client.chat(req)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as err:  # noqa: BLE001 - recorded; the step goes on
                ex = _failed(req, spec.backend, plan.instance_url, err, t_send)
            return prompt_id, prompt_text(req), ex

        try:
            return await drive(plan.step, load, send, (spec.seed or 0) * 1000 + plan.step_index, gate, on_phase)
        finally:
            await client.aclose()

    if load.warmup_requests or load.warmup_s:
        phase("warmup")
    started, t0 = time.time(), time.perf_counter()
    try:
        t0_ns, sent = event_loop.run(run())
    finally:
        phase("idle")
    wall_s = time.perf_counter() - t0
    rows = load_request_rows(step_keys(spec, plan), t0_ns, sent)
    return step_row(spec, plan, rows, started, wall_s, manifest_digest), rows


def output_tokens(request_rows: list[dict]) -> int:
    """Output tokens of a step's ok measured requests (what its energy per token divides by)."""
    return sum(r["output_tokens"] or 0 for r in request_rows if not r["is_warmup"] and r["status"] == "ok")


def failed_step(spec: MatrixSpec, plan: StepPlan, reason: str, manifest_digest: str) -> dict:
    """The row of a step that could not run (its server would not load): kept, marked invalid."""
    return step_row(spec, plan, [], time.time(), 0.0, manifest_digest, reason=f"instance failed: {reason}")


def server_slots(concurrency: dict[str, int] | None) -> int | None:
    """Requests the server works on at once, as trbench set it (the instance's `concurrency`): the
    embedded engine's slots, the Ollama providers' num_parallel (OLLAMA_NUM_PARALLEL); None for a server
    trbench does not configure. A step is compared with a baseline's only at the same value."""
    concurrency = concurrency or {}
    return concurrency.get("slots", concurrency.get("num_parallel"))


def plan_steps(spec: MatrixSpec, instance: str, instance_url: str, slots: int | None,
               facts: dict[str, ModelFacts] | None = None, max_queue: int | None = None) -> list[StepPlan]:
    """The fixed steps of every load cell (a sweep's rates are planned once its first two are measured);
    a base model (facts: no chat template) is prompted as plain-text completion, as in the matrix."""
    cells = [c for c in spec.cells() if c.model in spec.load_models]
    return [StepPlan(tr_id=spec.tr_id, cell=c, step=s, step_index=i, instance=instance, instance_url=instance_url,
                     slots=c.slots or slots, max_queue=max_queue, prompt_style=prompt_style((facts or {}).get(c.model)))
            for c in cells for i, s in enumerate(load_section(spec).fixed_steps())]


def sweep_plans(spec: MatrixSpec, measured: list[StepPlan], rows: list[dict]) -> list[StepPlan]:
    """A sweep's rate steps for one cell, from its synchronous and throughput steps' request rates."""
    sweep = load_section(spec).sweep
    if sweep is None or len(rows) < 2:
        return []
    steps = sweep_steps(sweep, rows[0]["request_rps"], rows[1]["request_rps"])
    first = measured[0]
    return [first.model_copy(update={"step": s, "step_index": len(measured) + i}) for i, s in enumerate(steps)]
