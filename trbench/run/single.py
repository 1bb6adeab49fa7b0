"""One single-agent benchmark run: warm-ups, then N measured requests of one cell, in order.

Prefect-free: the task in tasks/bench.py calls execute_run and writes what it returns.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal, Protocol

from pydantic import BaseModel

from trbench.measure import metrics
from trbench.measure import vram
from trbench.backends.base import is_oom
from trbench.backends import ChatRequest, RawExchange, WireClient
from trbench.config.prompts import PromptSuite
from trbench.config.spec import Cell
from trbench.data.rows import PREFILL_STATS, PREFILL_SUMMARIZED, RequestRow, RunRow
from trbench.data.cells import DEFAULT_HARNESS, Harness
from trbench.data.store import slug
from trbench.engines import tuning
from trbench.run.settings import RunSettings
from trbench.prose import count


class RunCancelled(RuntimeError):
    """The flow is stopping: this run was not finished and is not written (a resume runs it)."""


class Gate:
    """Closed by the flow when it is interrupted: no run starts after that, and a run cut short
    is never written, so that resuming measures it again instead of keeping a broken run."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def check(self) -> None:
        if self._closed.is_set():
            raise RunCancelled("the flow is stopping")


class RunPlan(BaseModel):
    """Everything that identifies one run of one cell."""

    tr_id: str
    cell: Cell
    cell_hash: str
    run_index: int
    attempt: int = 1
    instance: str
    instance_url: str
    fallback_from: str | None = None  # the config label this OOM fallback replaces
    prompt_style: Literal["chat", "completion"] = "chat"  # completion: a base model without a chat template
    harness: Harness = DEFAULT_HARNESS  # who sends the requests (the run's only difference from its twin)

    @property
    def run_id(self) -> str:
        return f"{slug(self.cell.model)}_{self.cell.label}{harness_tag(self.harness)}_r{self.run_index:02d}_a{self.attempt}"


def harness_tag(harness: str) -> str:
    """What a run id adds for its harness: nothing for python (run ids, the resume ledger, of TR runs
    from before the harness axis stay as they were), else _<harness>."""
    return "" if harness == DEFAULT_HARNESS else f"_{harness}"


class RunResult(BaseModel):
    run_row: dict
    request_rows: list[dict]


# called with the request's number and the requests planned (0: not known before, a run bounded by duration_s)
RequestHook = Callable[[int, int, RawExchange], None]
# called with the phase that starts: 'warmup' (only when there are warm-ups), 'measured', then
# 'idle' once the last request has returned (telemetry.Sampler.mark fits)
PhaseHook = Callable[[str], None]


def utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)


class RequestSlot(BaseModel):
    """One request of a run: which prompt, which cache state it aims at, and whether it is counted."""

    index: int  # position in the run, warm-ups included
    prompt_index: int
    warmup: bool
    cache_target: str | None  # cold | cached for measured requests; None for warm-ups
    unique: str  # the prefix that makes the prompt new to the server's cache
    max_tokens: int


def unique_prefix() -> str:
    """A prefix no earlier prompt starts with, so that two prompts part at their first token; short,
    since it lengthens every prompt it is put on (about 8 tokens)."""
    return secrets.token_hex(6)


class TimeBound:
    """Whether a run may send its next measured prompt: always for a run of requests_per_run prompts; for a
    run bounded by duration_s, until that many seconds have passed since its first measured prompt. It is
    asked before each prompt, never inside one, so every prompt is measured in all its cache states."""

    def __init__(self, duration_s: float | None) -> None:
        self.duration_s = duration_s
        self._start: float | None = None

    def more(self) -> bool:
        if self.duration_s is None:
            return True
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        return now - self._start < self.duration_s


def request_slots(settings: RunSettings, plan: RunPlan, warmups: int,
                  more: Callable[[], bool] = lambda: True) -> Iterator[RequestSlot]:
    """The run's requests in order, made as they are sent. Warm-ups (after a server load) come first, each
    prompt new to the cache. Then per measured prompt, by settings.ttft: cold sends it once with a unique
    prefix; cached sends it once as a 1-token warm-up, then again, identical, measured; both sends it cold,
    then the identical prompt again, which the server now serves from its cache. The measured prompts are
    requests_per_run, or (duration_s) as many as `more` allows, asked before each."""
    index = itertools.count()
    for w in range(warmups):
        yield RequestSlot(index=next(index), prompt_index=w, warmup=True, cache_target=None, unique=unique_prefix(),
                          max_tokens=settings.max_tokens)
    prompts = itertools.count() if settings.duration_s is not None else range(settings.requests_per_run)
    for i in prompts:
        if not more():
            return
        unique = unique_prefix()
        if settings.ttft == "cached":  # puts the prompt into the KV cache; its one token costs nothing
            yield RequestSlot(index=next(index), prompt_index=i, warmup=True, cache_target=None, unique=unique,
                              max_tokens=1)
        for target in settings.cache_targets:
            yield RequestSlot(index=next(index), prompt_index=i, warmup=False, cache_target=target, unique=unique,
                              max_tokens=settings.max_tokens)


def planned_requests(settings: RunSettings, warmups: int) -> int:
    """Requests a run sends, warm-ups included; 0 for a run bounded by duration_s (not known before)."""
    if settings.duration_s is not None:
        return 0
    per_prompt = len(settings.cache_targets) + (settings.ttft == "cached")
    return warmups + settings.requests_per_run * per_prompt


def completion_text(messages: list[dict[str, str]]) -> str:
    """A chat as plain text for a base model: the system text, then the question, then 'Answer:'."""
    parts = [m["content"] for m in messages if m["role"] == "system"]
    users = [m["content"] for m in messages if m["role"] != "system"]
    return "\n\n".join(parts + [f"Question: {u}" for u in users]) + "\nAnswer:"


class ServerOptions(Protocol):
    """What a request asks of the server's settings: a Cell or an agent's OptionSet."""

    @property
    def temperature(self) -> float | None: ...

    @property
    def num_ctx(self) -> int | None: ...

    @property
    def num_gpu(self) -> int | None: ...


def generation_request(model: str, messages: list[dict[str, str]], prompt_style: str, options: ServerOptions,
                       max_tokens: int, seed: int | None, json_mode: bool = False) -> ChatRequest:
    """One request of any kind of run: a chat, or its plain-text completion for a base model. A cell's
    per-request server settings (Ollama's num_batch, num_thread) go with it; an agent's options have none."""
    per_request = tuning.ollama_options(options) if isinstance(options, Cell) else {}
    return ChatRequest(
        model=model, messages=messages,
        prompt=completion_text(messages) if prompt_style == "completion" else None,
        temperature=options.temperature, max_tokens=max_tokens, num_ctx=options.num_ctx,
        num_gpu=options.num_gpu, seed=seed, json_mode=json_mode, **per_request,
    )


def build_request(settings: RunSettings, plan: RunPlan, prompts: PromptSuite, slot: RequestSlot) -> tuple[str, ChatRequest]:
    prompt_id, messages = prompts.messages(slot.prompt_index, unique_prefix=slot.unique)
    return prompt_id, generation_request(plan.cell.model, messages, plan.prompt_style, plan.cell, slot.max_tokens,
                                         settings.seed)


def prompt_text(req: ChatRequest) -> str:
    return req.prompt if req.prompt is not None else "\n".join(m["content"] for m in req.messages)


def _keys(settings: RunSettings, plan: RunPlan) -> dict:
    c = plan.cell
    return {
        "tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": plan.attempt, "cell_hash": plan.cell_hash,
        "model": c.model, "provider": settings.provider, "backend": settings.backend, "instance": plan.instance,
        "instance_url": plan.instance_url, "num_gpu": c.num_gpu, "num_ctx": c.num_ctx,
        "temperature": c.temperature, "ttft_mode": settings.ttft, "prompt_style": plan.prompt_style,
        "run_index": plan.run_index, "fallback_from": plan.fallback_from, "harness": plan.harness,
        "server_settings": c.settings_text,
    }


def request_row(keys: dict, index: int, warmup: bool, prompt_id: str, ex: RawExchange, prompt: str,
                cache_target: str | None = None, model: type[BaseModel] = RequestRow,
                **extra: object) -> dict:
    """One request's row, built (and type-checked) through its model: RequestRow, or MaRequestRow
    with the multi-agent columns in `extra`, or LoadRequestRow with a load step's, or another
    row with the same measurement columns (a multi-turn TurnRow)."""
    m = metrics.derive(ex, cache_target)
    return model(
        **keys,
        **extra,
        request_index=index,
        is_warmup=warmup,
        prompt_id=prompt_id,
        cache_target=cache_target,
        answer_check=metrics.answer_check(ex.text, prompt) if ex.status == "ok" else None,
        sent_at=utc(ex.sent_at_unix),
        http_status=ex.http_status,
        finish_reason=ex.finish_reason,
        **m.model_dump(),
        server_decode_tokens=ex.server_decode_tokens,
        server_decode_ms=ex.server_decode_ms,
        server_decode_tps_reported=ex.server_decode_tps_reported,
        server_total_ms=ex.server_total_ms,
        client_cpu_s=ex.client_cpu_ns / 1e9 if ex.client_cpu_ns is not None else None,
        chunk_offsets_ms=[(t - ex.t_send_ns) / 1e6 for t in ex.token_times_ns],
        chunk_kinds=list(ex.token_kinds),
        output_text=ex.text,
        reasoning_text=ex.reasoning_text,
        # what the GPUs held when the request failed (an OOM's context); None without a GPU
        gpu_memory_at_error=vram.gpu_memory_snapshot() if ex.status != "ok" else None,
    ).model_dump()


def run_row(keys: dict, settings: RunSettings, rows: list[dict], started: float, wall_s: float,
            load_ms: float | None, manifest_digest: str) -> dict:
    measured = [r for r in rows if not r["is_warmup"]]
    ok = [r for r in measured if r["status"] == "ok"]
    errors = [r for r in measured if r["status"] != "ok"]
    short = {t: n for t in settings.cache_targets
             if (n := sum(r.get("cache_target") == t for r in ok)) < settings.min_ok}
    valid = bool(measured) and not short
    reason = None if valid else (
        f"{count(len(ok), 'ok request')} of {len(measured)}, fewer than min_ok_requests={settings.min_ok} per cache state"
        + (f" ({', '.join(f'{t}: {n}' for t, n in short.items())})" if short and measured else ""))
    row = {
        **keys,
        "started_at": utc(started),
        "wall_s": wall_s,
        "instance_load_ms": load_ms,
        "n_requests": len(measured),
        "n_warmup": len(rows) - len(measured),
        "n_ok": len(ok),
        "n_errors": len(errors),
        "min_ok_requests": settings.min_ok,
        "valid": valid,
        "invalid_reason": reason,
        "error_kinds": metrics.error_kinds(errors),
        "output_tokens_total": sum(r["output_tokens"] or 0 for r in ok),
        "cached_tokens_total": sum(r["cached_tokens"] or 0 for r in ok),
        "answers_flagged": sum(r.get("answer_check") not in (None, "ok") for r in ok),
        "manifest_digest": manifest_digest,
    }
    for name in ("decode_tps", "decode_tps_client", "e2e_ms", "tpot_ms"):
        s = metrics.summarize([r[name] for r in ok])
        row.update({f"{name}_mean": s.mean, f"{name}_p50": s.p50, f"{name}_p95": s.p95, f"{name}_p99": s.p99})
    for name in PREFILL_SUMMARIZED:
        s = metrics.summarize(metrics.prefill_rates(ok, "client" if name.endswith("_client") else "server"))
        row.update({f"{name}_{stat}": getattr(s, stat) for stat in PREFILL_STATS})
    for state in metrics.CACHE_STATES:  # TTFT only ever per cache state: cold and cached differ tenfold
        s = metrics.summarize([r["ttft_ms"] for r in ok if r["cache_state"] == state])
        row.update({f"n_{state}": s.n, f"ttft_{state}_ms_mean": s.mean, f"ttft_{state}_ms_p50": s.p50})
    row["decode_tps_cv_pct_within_run"] = metrics.cv_pct([r["decode_tps"] for r in ok])
    return RunRow(**row).model_dump()


def execute_run(
    settings: RunSettings,
    plan: RunPlan,
    client: WireClient,
    prompts: PromptSuite,
    load_ms: float | None,
    manifest_digest: str,
    warmups: int,
    on_request: RequestHook | None = None,
    gate: Gate | None = None,
    on_phase: PhaseHook | None = None,
) -> RunResult:
    """Send `warmups` warm-up requests, then the measured requests of one run, one after the other.

    Warm-ups are per cell (the flow asks for them on the first run of a cell after a server
    load); they are stored with is_warmup=True and left out of every statistic. on_phase hears
    where the warm-ups and the measured requests start and where the run ends."""
    keys = _keys(settings, plan)
    total = planned_requests(settings, warmups)
    slots = request_slots(settings, plan, warmups, TimeBound(settings.duration_s).more)
    rows: list[dict] = []
    phase = on_phase or (lambda _label: None)
    phase("warmup" if warmups else "measured")
    started, t0 = time.time(), time.perf_counter()
    oom: str | None = None
    for slot in slots:
        if gate:
            gate.check()
        if slot.index == warmups and warmups:
            phase("measured")
        prompt_id, req = build_request(settings, plan, prompts, slot)
        ex = client.chat(req)
        rows.append(request_row(keys, slot.index, slot.warmup, prompt_id, ex, prompt_text(req), slot.cache_target))
        if on_request:
            on_request(slot.index + 1, total, ex)
        if ex.error_kind == "oom":  # every further request meets the same error: the next rung instead
            where = "warm-up" if slot.warmup else "measured"
            oom = f"out of memory at {where} request {slot.index}: the run ended there"
            break
    wall_s = time.perf_counter() - t0
    phase("idle")
    if gate:
        gate.check()  # the servers may have been stopped under this run
    row = run_row(keys, settings, rows, started, wall_s, load_ms, manifest_digest)
    if oom:
        row.update(valid=False, invalid_reason=oom, error_kinds=sorted({*row["error_kinds"], "oom"}))
    return RunResult(run_row=row, request_rows=rows)


def failed_run(settings: RunSettings, plan: RunPlan, reason: str, manifest_digest: str) -> dict:
    """The run row of a run that could not start (its server would not load): kept, marked invalid."""
    row = run_row(_keys(settings, plan), settings, [], time.time(), 0.0, None, manifest_digest)
    row.update(invalid_reason=f"instance failed: {reason}", error_kinds=["oom" if is_oom(reason) else "instance"],
               gpu_memory_at_error=vram.gpu_memory_snapshot())
    return row
