"""The rows trbench stores, as pydantic models; the pyarrow schemas of store.py are derived from them.

One home per column: a column is declared once, here, with its Python type; `arrow_schema` maps
that to the Parquet type (int -> int32 unless marked Int64, float -> float64, str -> string, bool ->
bool_, datetime -> timestamp(us, UTC), list[...] -> list_, a model -> struct of its fields). Field order is column order, and the
derived schemas are pinned to the ones stored files were written with (tests/test_rows.py).
The runners build each row through its model (types checked as it is made) and hand its
model_dump to store.write_run.

Every model is declared statically, so an editor and mypy see each column. A row made of several
parts inherits them, listed from its last columns to its first: pydantic collects fields along the
reversed MRO, so `class R(C, B, A)` holds A's columns, then B's, then C's, then R's own. A family
of columns (per cache state, per agent, per percentile) is written out, and tests/test_rows.py
checks it against the tuples it is named from (CACHE_STATES, AGENT_ROLES, ...).
"""

from __future__ import annotations

import datetime as dt
import math
import types
import typing
from typing import Annotated, Any, Literal, Union

import pyarrow as pa
from pydantic import BaseModel


class Arrow:
    """Field metadata: the column's pyarrow type where the default mapping does not fit."""

    def __init__(self, type_: pa.DataType) -> None:
        self.type = type_


Int64 = Annotated[int, Arrow(pa.int64())]  # token counts and energy counters outgrow int32
F = float | None
S = str | None
I = int | None  # noqa: E741
I64 = Int64 | None

_ARROW: dict[Any, pa.DataType] = {
    int: pa.int32(), float: pa.float64(), str: pa.string(), bool: pa.bool_(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
}


def arrow_type(annotation: Any, metadata: typing.Iterable[Any] = ()) -> pa.DataType:
    """The pyarrow type of one field's annotation (Optional is nullable anyway: it is unwrapped)."""
    for m in metadata:
        if isinstance(m, Arrow):
            return m.type
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return arrow_type(args[0], args[1:])
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return arrow_type(inner)
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):  # a list's items of several fields
        return pa.struct(list(arrow_schema(annotation)))
    if origin is Literal and all(isinstance(a, str) for a in args):
        return pa.string()
    return _ARROW[annotation]


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The model's fields as a pyarrow schema, in field order."""
    return pa.schema([(name, arrow_type(f.annotation, f.metadata)) for name, f in model.model_fields.items()])


class RunKeys(BaseModel):
    """What identifies a single-agent run and its cell: the first columns of its requests and its run row."""

    tr_id: str
    run_id: str
    attempt: int
    cell_hash: str
    model: str
    provider: str
    backend: str
    instance: str
    instance_url: str
    num_gpu: I = None  # multi-agent options may leave these to the server's default (null)
    num_ctx: I = None
    temperature: F = None
    ttft_mode: str  # the spec's ttft: cold | cached | both
    prompt_style: str  # chat | completion (base model)
    run_index: int
    # who sent the requests: python (trbench's client) | rust (runners/rust); files written before the
    # harness axis lack the column and read back as python (store.py)
    harness: str = "python"
    # the server settings the cell set (trbench.data.cells.settings_text, e.g. fa1_kvq8_0); '' for none, and
    # files written before the server-setting axes read back as ''
    server_settings: str = ""


class Outcome(BaseModel):
    """How a request ended, as every request table stores it (in column order)."""

    status: str
    error_kind: S = None
    error_message: S = None
    http_status: I = None
    finish_reason: S = None


class _RequestStart(RunKeys):
    request_index: int
    is_warmup: bool
    prompt_id: str
    cache_target: S = None  # what trbench asked for: cold | cached (null on warm-ups)
    cache_state: str  # one of CACHE_STATES: the server's counts, or what was asked where it reports none
    answer_check: S = None  # ok | empty | template_tokens | echo (null on failed requests)
    sent_at: dt.datetime


class RequestFigures(BaseModel):
    """What metrics.derive computes from one request's raw record, as its row stores it (in column
    order); trbench.measure.metrics.RequestMetrics is these with the request's status, error and
    cache state."""

    ttft_ms: F = None
    ttfat_ms: F = None
    e2e_ms: F = None
    prompt_tokens: I64 = None
    output_tokens: I64 = None
    cached_tokens: I64 = None
    decode_tps: F = None
    decode_tps_client: F = None
    prefill_ms: F = None
    load_ms: F = None
    tpot_ms: F = None
    itl_p50_ms: F = None
    itl_p95_ms: F = None
    itl_max_ms: F = None
    n_chunks: int = 0
    # the reasoning split (servers that stream reasoning before the answer); files written before it
    # lack these columns and read them back as null
    reasoning_tokens: I64 = None
    answer_tokens: I64 = None
    decode_tps_reasoning: F = None
    decode_tps_answer: F = None


class _ServerRaw(BaseModel):
    """The raw observations every figure is derived from: first the server's own counts."""

    server_decode_tokens: I64 = None
    server_decode_ms: F = None
    server_decode_tps_reported: F = None  # the server's own decode rate, where it reports one
    server_total_ms: F = None


class _RequestRaw(_ServerRaw):
    # a load step's requests lack it: the asynchronous load client shares one thread's CPU among all its streams
    client_cpu_s: F = None  # the harness's CPU time over the request (RawExchange.client_cpu_ns)


class _StreamRaw(BaseModel):
    """What the answer's stream carried, and the GPUs' memory where the request failed."""

    chunk_offsets_ms: list[float] = []
    chunk_kinds: list[str] = []
    output_text: S = None
    reasoning_text: S = None
    gpu_memory_at_error: S = None  # what the GPUs held when the request failed; null without a GPU


class RequestRow(_StreamRaw, _RequestRaw, RequestFigures, Outcome, _RequestStart):
    """One request of a run, warm-ups included, with the raw observations its metrics come from."""


class MaRequestRow(RequestRow):
    """One call of a multi-agent run."""

    scenario: str
    agent: str
    phase: str  # warmup | concurrent | solo
    call: str


class _EnergyWindow(BaseModel):
    energy_j: F = None
    energy_method: S = None
    energy_window_s: F = None


class _PerOutputToken(BaseModel):
    j_per_token: F = None
    tokens_per_j: F = None
    tokens_per_dollar: F = None
    cost_basis: S = None


class _TelemetryFigures(BaseModel):
    gpu_power_w_mean: F = None
    gpu_mem_used_mib_max: F = None
    gpu_util_pct_mean: F = None
    cpu_pct_mean: F = None
    server_rss_mib_max: F = None
    telemetry_note: S = None


class Energy(_TelemetryFigures, _PerOutputToken, _EnergyWindow):
    """Energy and telemetry columns of both run tables and of load steps (definitions:
    metrics.ENERGY_DEFINITIONS)."""


class _PerText(BaseModel):
    j_per_text: F = None
    j_per_input_token: F = None


class EmbeddingEnergy(_TelemetryFigures, _PerText, _EnergyWindow):
    """Energy and telemetry columns of embeddings steps: as Energy's, per text and input token (an
    embedding has no output tokens)."""


# Why a planned run was never measured (its row is kept, invalid, with the reason in words as well):
# server_down: its server could not be used again (a start that failed, a server that stopped answering);
# a resume measures such a run. oom_rung: an earlier run of its server configuration ran out of memory,
# so the rest of that rung is decided (the ladder moves on). not_loaded: its server would not load its
# configuration (the first run of the configuration holds the failure); decided as well.
NotRun = Literal["server_down", "oom_rung", "not_loaded"]
NOT_RUN_CODES: tuple[NotRun, ...] = typing.get_args(NotRun)
RETRIED_NOT_RUN: frozenset[NotRun] = frozenset({"server_down"})  # the codes a resume measures again


class _RunCounts(RunKeys):
    started_at: dt.datetime
    wall_s: float
    instance_load_ms: F = None
    n_requests: int
    n_warmup: int
    n_ok: int
    n_errors: int
    min_ok_requests: int
    valid: bool
    invalid_reason: S = None  # why the run is invalid, in words
    not_run: NotRun | None = None  # why a planned run was never measured, as a code (NOT_RUN_CODES)
    error_kinds: list[str] = []  # the kinds of the failed measured requests, sorted
    output_tokens_total: Int64 = 0
    cached_tokens_total: Int64 = 0
    answers_flagged: int = 0


SUMMARIZED = ("decode_tps", "decode_tps_client", "e2e_ms", "tpot_ms")
STATS = ("mean", "p50", "p95", "p99")
PREFILL_SUMMARIZED = ("prefill_tps", "prefill_tps_client")  # over the requests whose prefill was not cached
PREFILL_STATS = ("mean", "p50")
# The cache state of a request's prefill. cold, partial and cached come from the server's own counts
# (cached / prompt tokens). A server that reports no cache count (Ollama before
# prompt_eval_cached_count) cannot confirm what trbench asked for, so such a request is kept apart
# by the state it was asked for, cold_asked or cached_asked, labelled as not verified; unknown is
# left for a request that asked for nothing on such a server (a warm-up, a multi-agent call).
# TTFT is never pooled across any two of these.
CacheState = Literal["cold", "partial", "cached", "cold_asked", "cached_asked", "unknown"]
CACHE_STATES: tuple[CacheState, ...] = typing.get_args(CacheState)
CACHE_STATE_LABELS: dict[str, str] = {
    "cold": "cold", "partial": "partial", "cached": "cached",
    "cold_asked": "cold (asked, unverified)", "cached_asked": "cached (asked, unverified)", "unknown": "unknown",
}
ASKED_STATES: dict[str, CacheState] = {"cold": "cold_asked", "cached": "cached_asked"}  # cache_target -> state
UNVERIFIED_STATES = frozenset(ASKED_STATES.values())  # kept by what was asked: the server sent no count
# the states a measured request lands in when it asked for cold or cached and the prefill went as asked
TARGET_STATES: tuple[CacheState, ...] = ("cold", "cached", *ASKED_STATES.values())


def ttft_state(field: str) -> str | None:
    """The cache state a per-state TTFT field is of ('ttft_cold_asked_p50_ms' -> 'cold_asked'), None
    for any other field; the longest state wins, since 'cold' is a prefix of 'cold_asked'."""
    matches = [st for st in CACHE_STATES if field.startswith(f"ttft_{st}_")]
    return max(matches, key=len) if matches else None


class _RunStats(_RunCounts):
    # <m>_<stat> for m in SUMMARIZED, stat in STATS
    decode_tps_mean: F = None
    decode_tps_p50: F = None
    decode_tps_p95: F = None
    decode_tps_p99: F = None
    decode_tps_client_mean: F = None
    decode_tps_client_p50: F = None
    decode_tps_client_p95: F = None
    decode_tps_client_p99: F = None
    e2e_ms_mean: F = None
    e2e_ms_p50: F = None
    e2e_ms_p95: F = None
    e2e_ms_p99: F = None
    tpot_ms_mean: F = None
    tpot_ms_p50: F = None
    tpot_ms_p95: F = None
    tpot_ms_p99: F = None
    # <m>_<stat> for m in PREFILL_SUMMARIZED, stat in PREFILL_STATS: prompt tokens per second beside decode
    # (metrics.DEFINITIONS['prefill_tps']); files written before lack them
    prefill_tps_mean: F = None
    prefill_tps_p50: F = None
    prefill_tps_client_mean: F = None
    prefill_tps_client_p50: F = None
    # TTFT per cache state, never pooled across states: n_<st>, ttft_<st>_ms_mean, ttft_<st>_ms_p50
    # for st in CACHE_STATES
    n_cold: I = None
    ttft_cold_ms_mean: F = None
    ttft_cold_ms_p50: F = None
    n_partial: I = None
    ttft_partial_ms_mean: F = None
    ttft_partial_ms_p50: F = None
    n_cached: I = None
    ttft_cached_ms_mean: F = None
    ttft_cached_ms_p50: F = None
    n_cold_asked: I = None
    ttft_cold_asked_ms_mean: F = None
    ttft_cold_asked_ms_p50: F = None
    n_cached_asked: I = None
    ttft_cached_asked_ms_mean: F = None
    ttft_cached_asked_ms_p50: F = None
    n_unknown: I = None
    ttft_unknown_ms_mean: F = None
    ttft_unknown_ms_p50: F = None


class _RunTail(_RunStats):
    decode_tps_cv_pct_within_run: F = None
    manifest_digest: str
    gpu_memory_at_error: S = None
    fallback_from: S = None  # the config label this OOM fallback replaces


class RunRow(Energy, _RunTail):
    """One single-agent run's aggregates: written last, the ledger entry of a finished run."""


class AgentFigures(BaseModel):
    """One agent's figures in one phase of a multi-agent run."""

    decode_tps: F = None
    ttft_ms: F = None
    wall_s: F = None
    output_tokens: I64 = None


class _MaRunHead(BaseModel):
    tr_id: str
    run_id: str
    attempt: int
    cell_hash: str
    model: str
    scenario: str
    provider: str
    backend: str
    run_index: int
    harness: str = "python"  # as RunKeys.harness
    started_at: dt.datetime
    phase_order: S = None  # concurrent,solo | solo,concurrent
    n_agents: int
    concurrent_wall_s: F = None
    sequential_wall_s: F = None
    speedup: F = None
    efficiency_pct: F = None
    n_requests: int
    n_errors: int
    error_kinds: list[str] = []  # as the single-agent run's
    valid: bool
    invalid_reason: S = None
    not_run: NotRun | None = None  # as the single-agent run's
    contention: bool | None = None
    contention_rule: str
    delta_decode_tps: F = None
    delta_ttft_ms: F = None
    manifest_digest: str


AGENT_ROLES = ("collector", "insight")  # as config.agents.ROLES
AGENT_PHASES = ("concurrent", "solo")

class _MaRunAgents(_MaRunHead):
    # per role of AGENT_ROLES: <role>_instance, _options, _contended, then <role>_<phase>_<AgentFigures field>
    # for phase in AGENT_PHASES
    collector_instance: S = None
    collector_options: S = None
    collector_contended: bool | None = None
    collector_concurrent_decode_tps: F = None
    collector_concurrent_ttft_ms: F = None
    collector_concurrent_wall_s: F = None
    collector_concurrent_output_tokens: I64 = None
    collector_solo_decode_tps: F = None
    collector_solo_ttft_ms: F = None
    collector_solo_wall_s: F = None
    collector_solo_output_tokens: I64 = None
    insight_instance: S = None
    insight_options: S = None
    insight_contended: bool | None = None
    insight_concurrent_decode_tps: F = None
    insight_concurrent_ttft_ms: F = None
    insight_concurrent_wall_s: F = None
    insight_concurrent_output_tokens: I64 = None
    insight_solo_decode_tps: F = None
    insight_solo_ttft_ms: F = None
    insight_solo_wall_s: F = None
    insight_solo_output_tokens: I64 = None


class MaRunRow(Energy, _MaRunAgents):
    """One multi-agent run: both agents at once, then each alone, and what contention cost."""


class _TelemetryHead(BaseModel):
    tr_id: str
    run_id: str
    attempt: int
    model: str
    kind: str  # single | multi | load | embeddings
    sample: int
    phase: str
    gpu_index: I = None
    gpu_name: S = None
    t: dt.datetime
    t_rel_s: float


class _GpuSample(BaseModel):
    """The columns a GPU row fills (null on the host row)."""

    power_w: F = None
    energy_mj: I64 = None
    util_pct: F = None
    mem_used_mib: F = None
    temp_c: F = None


class _HostSample(BaseModel):
    """The columns the host row fills (null on a GPU row)."""

    cpu_pct: F = None
    server_rss_mib: F = None
    server_cpu_pct: F = None


GPU_FIELDS: tuple[str, ...] = tuple(_GpuSample.model_fields)
HOST_FIELDS: tuple[str, ...] = tuple(_HostSample.model_fields)


class TelemetryRow(_HostSample, _GpuSample, _TelemetryHead):
    """The telemetry table: long ("tidy") by source. Each sample tick is one row per sampled GPU
    (gpu_index set; the GPU_FIELDS filled; host columns null) plus one host row (gpu_index null; the
    HOST_FIELDS filled; GPU columns null); the rows of one tick share `sample`. t: wall clock (UTC) of
    the read; t_rel_s: monotonic seconds since the sampler started; phase: idle | warmup | measured
    (single-agent) or idle | warmup | concurrent | solo (multi-agent). Field meanings:
    trbench/measure/sampler.py."""

    # the run's harness (RunKeys.harness); added with the axis, older files read as python
    harness: str = "python"


# --- the embeddings workload of load mode (trbench/run/embeddings_step.py) ------------------------------


class StepKeys(BaseModel):
    """The first columns of every load-mode step and its requests (embeddings and load steps)."""

    tr_id: str
    run_id: str  # the step's id: a step is the unit that is written, and resumed, at once
    attempt: int
    model: str
    provider: str
    backend: str
    instance: str
    instance_url: str


class EmbeddingKeys(StepKeys):
    """What identifies an embeddings step (one batch size on one instance): the first columns of its
    requests and of its step row."""

    batch_size: int
    concurrency: int


class EmbeddingRequestRow(EmbeddingKeys):
    """One embeddings request, warm-ups included, as observed."""

    request_index: int
    is_warmup: bool
    sent_at: dt.datetime
    sent_offset_ms: float  # client perf_counter_ns since the step began: the step's wall time comes from these
    status: str
    error_kind: S = None
    error_message: S = None
    http_status: I = None
    latency_ms: float  # request sent -> whole answer received, or -> the failure (client perf_counter_ns)
    n_texts: int
    n_vectors: I = None
    dims: I = None
    prompt_tokens: I64 = None  # as the server counts them (OpenAI usage.prompt_tokens; Ollama prompt_eval_count)
    server_total_ms: F = None  # Ollama total_duration
    server_load_ms: F = None  # Ollama load_duration


class EmbeddingFigures(BaseModel):
    """An embeddings step's figures over its measured requests (definitions:
    trbench.measure.embedding_metrics.DEFINITIONS)."""

    n_requests: int
    n_ok: int
    n_errors: int
    error_kinds: list[str] = []  # the kinds of the failed measured requests, sorted
    wall_s: F = None
    texts_total: int = 0
    tokens_total: I64 = None
    texts_per_s: F = None
    tokens_per_s: F = None
    latency_mean_ms: F = None
    latency_p50_ms: F = None
    latency_p95_ms: F = None
    latency_p99_ms: F = None
    slo_ms: float
    n_within_slo: int = 0
    within_slo_pct: F = None


class _EmbeddingStepHead(EmbeddingKeys):
    started_at: dt.datetime
    n_warmup: int
    load_ms: F = None  # the embedding server's (re)load before this step, where it loaded
    texts_name: str
    texts_digest: str


class _EmbeddingStepTail(EmbeddingFigures, _EmbeddingStepHead):
    manifest_digest: str


class EmbeddingStepRow(EmbeddingEnergy, _EmbeddingStepTail):
    """One embeddings step: a batch size on one instance, its figures; written last, its ledger entry. Its
    energy and telemetry columns were added later: older files read null."""


# --- load mode: many requests in flight; one row per request and one per step -------------------


class LoadKeys(StepKeys):
    """What identifies one load step (run_id: the step's id, the ledger key as for runs)."""

    num_gpu: I = None
    num_ctx: I = None
    temperature: F = None
    slots: I = None  # requests the server works on at once (llama.cpp n_parallel, OLLAMA_NUM_PARALLEL); null: the server's own
    max_queue: I = None  # requests Ollama holds past its slots before answering 503 (OLLAMA_MAX_QUEUE); null: the server's own
    server_settings: S = None  # as RunKeys.server_settings (null in files from before it)
    step_index: int
    step_label: str  # c4, r0.5, sync, throughput, sweep-r1.2
    mode: str  # concurrency (closed loop) | rate (open loop)
    concurrency: I = None
    rate: F = None  # requests per second, open loop
    burstiness: F = None  # gamma shape of the open-loop gaps (1: Poisson)


class _LoadRequestStart(LoadKeys):
    request_index: int
    is_warmup: bool
    prompt_id: str
    sent_at: dt.datetime
    # seconds after the step started: when the request was due (open loop: its arrival; closed loop: its stream
    # was free) and when it was sent; the difference is the client's own wait (max_inflight), never the server's
    scheduled_offset_ms: float
    sent_offset_ms: float
    queue_ms: F = None
    # as RequestRow's (tests/test_rows.py holds them equal)
    cache_state: str
    answer_check: S = None


class LoadRequestRow(_StreamRaw, _ServerRaw, RequestFigures, Outcome, _LoadRequestStart):
    """One request of a load step, warm-ups included, with the same measurement columns as a run's requests
    (all of RequestRow's past its keys and start, but client_cpu_s)."""

LOAD_LATENCIES = ("ttft", "tpot", "itl", "e2e", "queue", "prefill")  # as load_metrics.LATENCY_COLUMNS
LOAD_PCTS = (50, 90, 95, 99)


class ErrorCount(BaseModel):
    """How many measured requests of a load step failed with one error kind (a struct in Parquet: a
    pandas reader gets {"kind": ..., "count": ...} per kind, DuckDB `unnest(error_kinds)` its fields)."""

    kind: str
    count: int


class _LoadCounts(BaseModel):
    n_requests: int = 0  # measured requests sent (warm-ups not counted)
    n_warmup: int = 0
    n_ok: int = 0
    n_errors: int = 0
    error_rate_pct: F = None
    error_kinds: list[ErrorCount] = []  # the failed measured requests counted by kind, sorted by kind
    window_s: F = None
    offered_rps: F = None
    request_rps: F = None
    output_tps: F = None
    # prompt tokens per second, server and client view, p50 over the ok measured requests whose prefill was
    # not cached; files written before lack them
    prefill_tps_p50: F = None
    prefill_tps_client_p50: F = None
    # ok measured requests with fewer output tokens than max_tokens (load_metrics.LOAD_DEFINITIONS['n_ended_early']);
    # files written before lack it
    n_ended_early: I = None
    # how far out of step the streams ran: the share of max_tokens the ok measured requests produced, p50 and
    # min (load_metrics.LOAD_DEFINITIONS['output_share']); files written before lack them
    output_share_p50: F = None
    output_share_min: F = None
    n_good: int = 0
    good_pct: F = None
    goodput_rps: F = None


class LoadFigures(_LoadCounts):
    """One load step's figures from its raw records (definitions: measure/load_metrics.LOAD_DEFINITIONS)."""

    # bootstrap 95 % interval of the TTFT, TPOT and e2e p50, resampling blocks of requests sent together
    # (load_metrics.LOAD_DEFINITIONS['p50 interval']); files written before lack them
    ttft_ms_p50_ci_low: F = None
    ttft_ms_p50_ci_high: F = None
    tpot_ms_p50_ci_low: F = None
    tpot_ms_p50_ci_high: F = None
    e2e_ms_p50_ci_low: F = None
    e2e_ms_p50_ci_high: F = None
    # <m>_ms_p<p> for m in LOAD_LATENCIES, p in LOAD_PCTS
    ttft_ms_p50: F = None
    ttft_ms_p90: F = None
    ttft_ms_p95: F = None
    ttft_ms_p99: F = None
    tpot_ms_p50: F = None
    tpot_ms_p90: F = None
    tpot_ms_p95: F = None
    tpot_ms_p99: F = None
    itl_ms_p50: F = None
    itl_ms_p90: F = None
    itl_ms_p95: F = None
    itl_ms_p99: F = None
    e2e_ms_p50: F = None
    e2e_ms_p90: F = None
    e2e_ms_p95: F = None
    e2e_ms_p99: F = None
    queue_ms_p50: F = None
    queue_ms_p90: F = None
    queue_ms_p95: F = None
    queue_ms_p99: F = None
    prefill_ms_p50: F = None
    prefill_ms_p90: F = None
    prefill_ms_p95: F = None
    prefill_ms_p99: F = None

    def p50_ci(self, family: str) -> tuple[float, float] | None:
        """The stored interval of a latency family's p50 (TTFT, TPOT and e2e have one); None for the others, for
        steps written before intervals were, and for a step of one block of requests."""
        low, high = getattr(self, f"{family}_ms_p50_ci_low", None), getattr(self, f"{family}_ms_p50_ci_high", None)
        return None if low is None or high is None or math.isnan(low) or math.isnan(high) else (low, high)


class _LoadStepHead(LoadKeys):
    started_at: dt.datetime
    wall_s: float
    warmup_requests: int = 0
    warmup_s: F = None
    ramp_up_s: F = None
    max_inflight: I = None
    max_tokens: int
    ignore_eos: bool | None = None  # the outputs were forced to max_tokens (LoadSpec.exact_output); older files: null
    slo_ttft_ms: F = None
    slo_tpot_ms: F = None
    slo_e2e_ms: F = None


class _LoadStepTail(LoadFigures, _LoadStepHead):
    valid: bool
    invalid_reason: S = None
    manifest_digest: str


class SweepStop(BaseModel):
    """Whether a cell's steps stopped early at this step, the server being over-saturated (added later:
    older files read null, as a step that did not stop them)."""

    stop_below_good_pct: F = None  # the spec's rules, as the step was measured under them
    stop_queue_growth: F = None
    stop_reason: S = None  # why the later steps were not run; null: they were (or there were none)


class LoadStepRow(Energy, SweepStop, _LoadStepTail):
    """One load step: its settings and figures; written last, the ledger entry. Its energy and telemetry
    columns were added later: older files read null."""


class _SuiteRequestHead(BaseModel):

    tr_id: str
    run_id: str  # <model slug>_<suite>_r<run index>
    model: str
    provider: str
    backend: str
    instance: str
    instance_url: str
    num_gpu: I = None
    num_ctx: I = None
    temperature: F = None
    prompt_style: str  # chat | completion (base model)
    suite: str  # router | orchestrator | chat | qa
    kind: str  # the suite's kind: router | orchestrator | chat | qa
    suite_digest: str
    json_mode: bool  # whether the server was asked for JSON
    max_tokens: int
    run_index: int
    request_index: int
    item_id: str  # the message or question id
    expected: S = None  # the route label (router) or the true answer_value (QA)
    sent_at: dt.datetime


class SuiteRequestRow(Outcome, _SuiteRequestHead):
    """One request of a quality suite: a scenario message (router, orchestrator, chat) or a QA
    question, what was measured, and the answer's checks; null where a check does not apply (chat: no
    JSON; route: router only; QA columns: QA only) or the request failed."""

    ttft_ms: F = None
    e2e_ms: F = None
    prompt_tokens: I64 = None
    output_tokens: I64 = None
    decode_tps: F = None
    answer_check: S = None  # the sanity check: ok | empty | template_tokens | echo
    json_ok: bool | None = None  # QA: the answer read as a JSON object with answer_value
    schema_ok: bool | None = None
    route: S = None
    route_ok: bool | None = None
    problem: S = None  # why a check failed (first failure), or why a QA answer could not be read
    answer_value: S = None  # QA: the prediction as read
    answer_unit: S = None
    ref_id: list[str] = []
    output_text: S = None
    manifest_digest: str


class EnsembleAnswerRow(BaseModel):
    """One question's answer of a QA ensemble (trbench ensemble): the majority vote of `models`."""

    tr_id: str
    ensemble: str
    models: str  # comma-separated, in the order that breaks ties
    question_id: str
    answer_value: str
    answer_unit: str
    ref_id: list[str] = []
    error: S = None  # no model's answer could be read
    created_at: dt.datetime


# --- the synthetic workload: exact-length requests, one run per point (trbench/workloads/synthetic.py) ----


class SynKeys(StepKeys):
    """What identifies one run of one synthetic point (run_id: the run's id, its ledger key)."""

    num_gpu: I = None
    num_ctx: I = None
    point: str  # llama-bench's name of the point: pp512+tg128, pp512+tg128@d4096
    prompt_tokens_asked: int  # the measured prompt (pp), after the depth
    output_tokens_asked: int  # tg
    depth: int  # tokens of shared, cached context before the measured prompt
    run_index: int


class _SynRequestStart(SynKeys):
    request_index: int
    is_warmup: bool  # a warm-up, or the request that puts the depth's context in the cache
    prompt_id: str  # what makes the prompt unique (its leading tokens)
    sent_at: dt.datetime
    prompt_method: str  # token_ids (exact by construction, the server's usage checks it) | calibrated (text)
    cache_target: S = None  # cold (depth 0) | prefix (the depth's context cached, the measured prompt not)
    cache_state: str  # from the server's counts (metrics.cache_state)
    ignore_eos: bool  # whether the output length was forced


class SynRequestRow(_ServerRaw, RequestFigures, Outcome, _SynRequestStart):
    """One synthetic request, warm-ups included, with asked and achieved lengths (prompt_tokens,
    output_tokens: as the server counted them; the asked prompt is depth + prompt_tokens_asked)."""

    prefill_tps: F = None  # metrics.DEFINITIONS['prefill_tps']
    prefill_tps_client: F = None
    server_prefill_tps_reported: F = None  # the server's own prompt rate, where it reports one (llama.cpp)
    input_exact: bool | None = None  # the server counted depth + prompt_tokens_asked prompt tokens
    stopped_early: bool | None = None  # fewer output tokens than asked: never averaged with full-length ones


class SynRunRow(SynKeys):
    """One run of one synthetic point: its rates over the full-length ok measured requests; written
    last, its ledger entry."""

    started_at: dt.datetime
    wall_s: float
    n_requests: int
    n_warmup: int
    n_ok: int
    n_errors: int
    n_stopped_early: int = 0  # ok requests with fewer output tokens than asked: left out of the rates
    n_input_off: int = 0  # ok requests whose prompt the server counted other than asked
    input_exact: bool = True  # every ok request's prompt as asked: a run where it is not is marked
    prompt_tokens_min: I64 = None  # achieved, as the server counted them (depth included)
    prompt_tokens_max: I64 = None
    output_tokens_min: I64 = None
    output_tokens_max: I64 = None
    prefill_tps_mean: F = None
    prefill_tps_client_mean: F = None
    decode_tps_mean: F = None
    decode_tps_client_mean: F = None
    ttft_ms_mean: F = None
    valid: bool
    invalid_reason: S = None
    manifest_digest: str
