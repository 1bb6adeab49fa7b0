"""Every metric trbench reports, defined once, from the raw record of each request.

Peers disagree on names (one tool's ITL is another's TPOT; some count the first token in the
decode rate), so DEFINITIONS holds the exact formula of each, and the report prints it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from trbench.backends.base import RawExchange
from trbench.data.rows import ASKED_STATES, CACHE_STATES, CacheState, RequestFigures  # noqa: F401 (re-exported)

_NS_PER_MS = 1e6

DEFINITIONS: dict[str, str] = {
    "ttft_ms": "t(first chunk carrying generated text of any kind, reasoning included) - t(request sent); client clock, "
    "so it includes queueing, model load and prefill",
    "ttfat_ms": "t(first chunk carrying answer text) - t(request sent); equals ttft_ms unless the server streams "
    "reasoning first",
    "e2e_ms": "t(last byte of the response) - t(request sent); client clock",
    "output_tokens": "generated tokens as the server counts them (OpenAI usage.completion_tokens; Ollama eval_count); "
    "never estimated from characters",
    "prompt_tokens": "prompt tokens as the server counts them (usage.prompt_tokens; Ollama prompt_eval_count); the "
    "synthetic workload gives them less its depth (the measured prompt alone), beside the length it asked",
    "input_exact": "synthetic workload: the server counted the prompt as asked (depth + the asked prompt tokens); "
    "a run with a request whose prompt was counted otherwise is marked, and the report counts such requests",
    "stopped_early": "an ok request with fewer output tokens (server counts) than it asked for (max_tokens): the "
    "model stopped at end-of-sequence. An OpenAI-compatible server (llama.cpp, vLLM) is sent ignore_eos and none "
    "stops early; Ollama cannot be made to ignore end-of-sequence, so such requests are counted, and left out of "
    "the synthetic workload's decode rates",
    "cached_tokens": "prompt tokens served from the server's KV cache (llama.cpp timings.cache_n; "
    "usage.prompt_tokens_details.cached_tokens; Ollama prompt_eval_cached_count, newer Ollama only); null where "
    "the server does not say (older Ollama: prompt_eval_count is the whole prompt, cached or not)",
    "decode_tps": "server view: decode steps after the first token / decode time, tokens per second. llama.cpp: "
    "(predicted_n - 1) / predicted_ms, equal to its own timings.predicted_per_second; Ollama: (eval_count - 1) / "
    "eval_duration. Both servers sample the first token at the end of prefill and start the decode clock there, so "
    "the decode time spans n - 1 steps; both count a final end-of-sequence token in n, which is sampled by a decode "
    "step of its own, so it stays in the step count (trbench follows llama.cpp's convention on both backends)",
    "decode_tps_client": "(streamed tokens - 1) / (t(last text chunk) - t(first text chunk)), tokens per second; "
    "streamed tokens = output_tokens, less the end-of-sequence token when the server stopped on it (finish "
    "'stop': the server counts it but streams no text for it); the first token's time belongs to prefill",
    "cache_state": "the prompt cache as the server's own counts say: cold (cached_tokens <= 10 % of prompt_tokens), "
    "cached (the uncached rest <= 10 % of prompt_tokens, or one token), partial (between); where the server "
    "reports no cached tokens (Ollama before prompt_eval_cached_count), the state trbench asked for, not "
    "verified by the server: cold_asked, cached_asked ('cold (asked, unverified)'); unknown where nothing was "
    "asked either (warm-ups, multi-agent calls on such a server); TTFT is never pooled across states",
    "cache_target": "what trbench asked for: cold (a unique prefix at the very start of the prompt, so no earlier "
    "request shares more than the template's first tokens) or cached (the identical prompt sent just before)",
    "answer_check": "sanity check of the answer text: ok, empty (no text), template_tokens (chat-template tokens "
    "such as <start_of_turn>, <end_of_turn> or ChatML's im_start and im_end markers in the text: the model was "
    "driven with the wrong template), or echo (at least half of the answer's word 4-grams repeat the prompt)",
    "prefill_ms": "server-reported prompt processing time (llama.cpp timings.prompt_ms; Ollama prompt_eval_duration)",
    "prefill_tps": "server view: prompt tokens the server processed / prefill_ms, tokens per second; processed = "
    "prompt_tokens - cached_tokens (a cached prefix is not processed again), equal to llama.cpp's own "
    "timings.prompt_per_second (prompt_n / prompt_ms); Ollama: prompt_eval_count / prompt_eval_duration. Summarised "
    "over the requests whose prefill was not served from the cache (cache_state not cached or cached_asked): a "
    "cached request processes a token or two and says nothing of prefill speed",
    "prefill_tps_client": "client view: the same processed prompt tokens / ttft_ms, tokens per second; the client "
    "clock adds queueing, the network and the first token's sampling, so it is at most the server view",
    "load_ms": "server-reported model load time (Ollama load_duration); for the embedded engine the measured "
    "server (re)start per cell is in the run table as instance_load_ms",
    "tpot_ms": "(e2e_ms - ttft_ms) / (output_tokens - 1): time per output token after the first, client clock",
    "itl_ms": "gaps between arrivals of consecutive text chunks, client clock; p50, p95 and max kept per request",
    "reasoning_tokens": "streamed chunks of reasoning text (llama.cpp delta.reasoning_content, Ollama "
    "message.thinking or thinking), one token each as both servers stream them; neither server counts reasoning "
    "apart in its usage; 0 where the server streamed no reasoning",
    "answer_tokens": "output_tokens - reasoning_tokens: the answer's tokens as the server counts them (its "
    "end-of-sequence token included, as in output_tokens); null where the server gave no output count",
    "decode_tps_reasoning": "(reasoning chunks - 1) / (t(last reasoning chunk) - t(first reasoning chunk)), tokens "
    "per second, client clock; null with fewer than two reasoning chunks",
    "decode_tps_answer": "(answer chunks - 1) / (t(last answer chunk) - t(first answer chunk)), tokens per second, "
    "client clock; null with fewer than two answer chunks (the step from the last reasoning chunk to the first "
    "answer chunk, which holds the unstreamed end-of-reasoning marker, is in neither rate)",
    "status": "ok, or error with error_kind one of timeout (the whole request over timeout_s), stall (no byte "
    "for stall_timeout_s), connect, http_4xx, http_5xx, oom, bad_response, cancelled, and the server's message",
    "prompt_style": "chat (the server applies the model's chat template to the messages) or completion (a base model "
    "without a chat template: the messages as plain text, 'system text, Question: ..., Answer:', on the completion "
    "endpoint: OpenAI /v1/completions, Ollama /api/generate with raw true)",
}

RUN_DEFINITIONS: dict[str, str] = {
    "requests": "warm-up requests are sent and stored but excluded from every statistic",
    "valid run": "a run with at least min_ok_requests measured requests of status ok; invalid runs are kept "
    "and marked, never averaged in",
    "percentiles": "p50/p95/p99 by linear interpolation between order statistics (numpy 'linear')",
    "per-config statistics": "over the measured ok requests of the valid runs of one model x config (pooled)",
    "cv_pct": "run-to-run coefficient of variation: sample standard deviation / mean of the per-run mean "
    "decode_tps, in %; needs at least two valid runs",
    "pct_of_baseline": "value / value of the baseline model at the same config x 100",
}


MULTI_AGENT_DEFINITIONS: dict[str, str] = {
    "concurrent_wall_s": "t(last agent finished) - t(first agent started) with both agents running at once, "
    "one per instance",
    "sequential_wall_s": "measured, not assumed: collector alone on its instance, then insight alone on its "
    "instance; the sum of the two agents' walls",
    "speedup": "sequential_wall_s / concurrent_wall_s",
    "efficiency_pct": "speedup / n_agents x 100 (n_agents = 2); 100 % means two agents cost no more than one",
    "agent decode tok/s": "mean decode_tps (server view) over the agent's calls",
    "agent TTFT": "mean ttft_ms over the agent's calls",
    "deltas": "insight minus collector, in the concurrent phase",
    "phase order": "even runs measure the concurrent phase first, odd runs the solo phase first, so that "
    "neither phase always gets the warmer caches",
}


ENERGY_DEFINITIONS: dict[str, str] = {
    "telemetry": "sampled beside every run and every load and embeddings step every telemetry.interval_s seconds (default 0.5) and once at each phase "
    "change: per NVIDIA GPU via NVML power draw (W), total energy counter (mJ, where the GPU has one), utilization %, "
    "memory used (MiB, every process on the GPU) and temperature; the host's CPU % and the server processes' RSS "
    "and CPU % via psutil; stored in the telemetry table, one row per GPU and one host row per sample",
    "measured window": "from the sample taken when the measured requests start to the sample taken when they end: "
    "single-agent phase 'measured'; multi-agent phases 'concurrent' and 'solo' (back to back, both measured); "
    "a load step's from its first measured request sent to its last request answered (warm-ups still in flight "
    "then included), an embeddings step's its measured requests; warm-ups (phase 'warmup'), model loads and idle "
    "time are outside it",
    "energy_window_s": "length of the measured window in seconds (monotonic clock)",
    "energy_j": "GPU energy over the measured window, summed over the sampled GPUs: each GPU's energy counter "
    "difference (nvmlDeviceGetTotalEnergyConsumption) where it has one, else the trapezoidal integral of its power "
    "samples; board power only (host CPU and DRAM not included); null when no GPU is visible",
    "energy_method": "'energy counter' or 'power integral' (per GPU when they differ)",
    "gpu_power_w_mean": "mean GPU power during active inference: energy_j / energy_window_s, summed over the "
    "sampled GPUs",
    "j_per_token": "energy_j / output tokens of the run's (or load step's) ok measured requests",
    "j_per_text": "embeddings steps: energy_j / texts embedded by the step's ok measured requests; "
    "j_per_input_token: energy_j / their input tokens as the server counted them (an embedding has no output)",
    "tokens_per_j": "output tokens of the run's ok measured requests / energy_j",
    "tokens_per_dollar": "output tokens of the run's ok measured requests / cost of the measured window; cost = "
    "energy_window_s / 3600 x price_per_gpu_hour x GPUs sampled when telemetry.price_per_gpu_hour is given (it wins: "
    "a GPU-hour price already includes the electricity), else energy_j / 3.6e6 (kWh) x telemetry.price_per_kwh; "
    "null without a price; in the prices' currency",
    "cost_basis": "the arithmetic of the run's cost, e.g. '12.5 s x 1 GPU x 2.5/GPU-hour'",
    "gpu_mem_used_mib_max": "peak over the whole run (warm-ups included) of the GPU memory used, summed over the "
    "sampled GPUs, every process on them included: the measured VRAM next to the estimate",
    "gpu_util_pct_mean": "time-weighted mean NVML GPU utilization over the measured window (each sample weighted by "
    "the time since the one before it, which its value describes), averaged over the sampled GPUs",
    "cpu_pct_mean": "time-weighted mean system CPU busy % (all cores) over the measured window, weighted as "
    "gpu_util_pct_mean",
    "server_rss_mib_max": "peak resident memory of the local server process(es) and their children over the run, "
    "MiB; null for servers that are not local processes (external, containers)",
    "telemetry_note": "what was not measured and why, e.g. 'no GPU visible: GPU metrics unavailable (NVML: ...)'",
}


def error_kinds(rows: Sequence[dict]) -> list[str]:
    """The kinds of a run's failed requests (their request rows), each once, sorted; a failure without a
    kind is left out."""
    return sorted({r["error_kind"] for r in rows if r["error_kind"]})


def speedup(sequential_wall_s: float | None, concurrent_wall_s: float | None) -> float | None:
    if not sequential_wall_s or not concurrent_wall_s:
        return None
    return sequential_wall_s / concurrent_wall_s


def efficiency_pct(speedup_value: float | None, n_agents: int) -> float | None:
    return None if speedup_value is None else speedup_value / n_agents * 100.0


class RequestMetrics(RequestFigures):
    """One request's metrics (derive): the figures its row stores, with its status, error and cache state."""

    status: str
    error_kind: str | None = None
    error_message: str | None = None
    e2e_ms: float  # always measured, also on a failed request
    cache_state: CacheState = "unknown"


_COLD_MAX_SHARE = 0.10  # a cold prompt still shares the template's first few tokens with the last one
_CACHED_MAX_REST = 0.10  # llama.cpp re-evaluates the last prompt token even on a full hit


def cache_state(prompt_tokens: int | None, cached_tokens: int | None, asked: str | None = None) -> CacheState:
    """Cold, partial or cached, from the server's own counts. Where the server does not say, the state
    asked for (cold_asked, cached_asked: not verified), so cold and cached asks are never pooled;
    unknown when nothing was asked either."""
    if cached_tokens is None or not prompt_tokens:
        return ASKED_STATES.get(asked or "", "unknown")
    if cached_tokens <= _COLD_MAX_SHARE * prompt_tokens:
        return "cold"
    rest = prompt_tokens - cached_tokens
    if rest <= max(1.0, _CACHED_MAX_REST * prompt_tokens):
        return "cached"
    return "partial"


def streamed_tokens(ex: RawExchange) -> int | None:
    """Tokens that arrived as text: the server's count less the end-of-sequence token it counts but
    does not stream (llama.cpp predicted_n and Ollama eval_count both include it)."""
    if ex.output_tokens is None:
        return len(ex.token_times_ns) or None
    eos = 1 if ex.finish_reason == "stop" and ex.output_tokens > 1 else 0
    return ex.output_tokens - eos


def decode_rate(steps_n: int | None, decode_ms: float | None) -> float | None:
    """Server-view decode rate: the first of n tokens comes out of prefill, so decode_ms spans n - 1 steps."""
    if steps_n is None or steps_n < 2 or not decode_ms:
        return None
    return (steps_n - 1) / decode_ms * 1000.0


def _number(v: object) -> float | None:
    """A stored count or time as a float; None where it is missing (None, NaN, pandas' NA)."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def processed_prompt_tokens(prompt_tokens: object, cached_tokens: object) -> float | None:
    """The prompt tokens a prefill evaluated: the prompt less the cached prefix the server reused."""
    n = _number(prompt_tokens)
    return None if n is None else n - (_number(cached_tokens) or 0.0)


def prefill_rate(prompt_tokens: object, cached_tokens: object, prefill_ms: object) -> float | None:
    """DEFINITIONS['prefill_tps'] of one request: the server's processed prompt tokens over its own prefill time."""
    n, ms = processed_prompt_tokens(prompt_tokens, cached_tokens), _number(prefill_ms)
    if n is None or ms is None:
        return None
    rate = float(prefill_rate_array(np.array([n]), np.array([0.0]), np.array([ms]))[0])
    return None if math.isnan(rate) else rate


def prefill_rate_array(prompt_tokens: np.ndarray, cached_tokens: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """prefill_rate over arrays (NaN for missing), NaN where no prompt token was processed or no time was taken."""
    n = prompt_tokens - np.nan_to_num(cached_tokens, nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n > 0) & (ms > 0), n / ms * 1000.0, np.nan)


def prefill_rate_client(prompt_tokens: object, cached_tokens: object, ttft_ms: object) -> float | None:
    """DEFINITIONS['prefill_tps_client'] of one request: the same tokens over the client's TTFT."""
    return prefill_rate(prompt_tokens, cached_tokens, ttft_ms)


# the cache states whose prefill rate says something of prefill speed (DEFINITIONS['prefill_tps'])
PREFILL_RATE_STATES: frozenset[str] = frozenset(CACHE_STATES) - {"cached", "cached_asked"}


def prefill_rates(rows: Sequence[dict], view: Literal["server", "client"] = "server") -> list[float | None]:
    """Each request row's prefill rate (server or client view), for the rows whose prefill was not cached."""
    clock = "prefill_ms" if view == "server" else "ttft_ms"
    return [prefill_rate(r.get("prompt_tokens"), r.get("cached_tokens"), r.get(clock)) for r in rows
            if r.get("cache_state") in PREFILL_RATE_STATES]


def itl_gaps(times: Sequence[float], per_ms: float = 1.0) -> np.ndarray:
    """The inter-chunk gaps in ms (DEFINITIONS['itl_ms']) of one request's chunk arrival times, given in
    units of 1/per_ms ms (ns readings: per_ms 1e6; stored chunk offsets in ms: 1)."""
    return np.diff(np.asarray(times, dtype=np.float64)) / per_ms if len(times) > 1 else np.array([])


def stream_rate(times: Sequence[int]) -> float | None:
    """Tokens per second over a run of one-token chunks (ns arrival times): n - 1 steps over their span."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)


def derive(ex: RawExchange, asked: str | None = None) -> RequestMetrics:
    """The metrics of one request, from its raw record and the cache state it asked for (if any)."""
    times = ex.token_times_ns
    e2e = (ex.t_end_ns - ex.t_send_ns) / _NS_PER_MS
    ttft = (times[0] - ex.t_send_ns) / _NS_PER_MS if times else None
    answer_times = [t for t, k in zip(times, ex.token_kinds) if k == "content"]
    reasoning_times = [t for t, k in zip(times, ex.token_kinds) if k == "reasoning"]
    ttfat = (answer_times[0] - ex.t_send_ns) / _NS_PER_MS if answer_times else None
    n_out = ex.output_tokens if ex.output_tokens is not None else (len(times) if times else None)
    gaps = itl_gaps(times, per_ms=_NS_PER_MS)
    span_s = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0.0
    n_streamed = streamed_tokens(ex)
    return RequestMetrics(
        status=ex.status,
        error_kind=ex.error_kind,
        error_message=ex.error_message,
        ttft_ms=ttft,
        ttfat_ms=ttfat,
        e2e_ms=e2e,
        prompt_tokens=ex.prompt_tokens,
        output_tokens=n_out,
        cached_tokens=ex.cached_tokens,
        cache_state=cache_state(ex.prompt_tokens, ex.cached_tokens, asked),
        decode_tps=decode_rate(ex.server_decode_tokens, ex.server_decode_ms),
        decode_tps_client=(n_streamed - 1) / span_s if n_streamed and n_streamed > 1 and span_s > 0 else None,
        prefill_ms=ex.server_prefill_ms,
        load_ms=ex.server_load_ms,
        tpot_ms=(e2e - ttft) / (n_out - 1) if ttft is not None and n_out and n_out > 1 else None,
        itl_p50_ms=_pct(gaps, 50),
        itl_p95_ms=_pct(gaps, 95),
        itl_max_ms=float(gaps.max()) if gaps.size else None,
        n_chunks=len(times),
        reasoning_tokens=len(reasoning_times),
        answer_tokens=n_out - len(reasoning_times) if n_out is not None else None,
        decode_tps_reasoning=stream_rate(reasoning_times),
        decode_tps_answer=stream_rate(answer_times),
    )


# --- answer sanity ------------------------------------------------------------------------------

AnswerCheck = Literal["ok", "empty", "template_tokens", "echo"]
TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|im_start", "<start_of_turn>", "<end_of_turn>", "<|eot_id|>",
                   "<|start_header_id|>", "<|endoftext|>")
_ECHO_SHARE = 0.5
_NGRAM = 4


def _ngrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + _NGRAM]) for i in range(len(words) - _NGRAM + 1)}


def answer_check(answer: str, prompt: str) -> AnswerCheck:
    """Whether an answer looks like an answer: not empty, no chat-template tokens, not the prompt again."""
    if not answer.strip():
        return "empty"
    if any(tok in answer for tok in TEMPLATE_TOKENS):
        return "template_tokens"
    grams = _ngrams(answer)
    if grams and len(grams & _ngrams(prompt)) >= _ECHO_SHARE * len(grams):
        return "echo"
    return "ok"


def _pct(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if a.size else None


# --- statistics over many requests or runs ---------------------------------------------------


def clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)


def percentile(values: Sequence[float | None], q: float) -> float | None:
    return _pct(clean(values), q)


def mean(values: Sequence[float | None]) -> float | None:
    a = clean(values)
    return float(a.mean()) if a.size else None


def cv_pct(values: Sequence[float | None]) -> float | None:
    """Sample coefficient of variation in %, None with fewer than two values."""
    a = clean(values)
    if a.size < 2 or a.mean() == 0:
        return None
    return float(a.std(ddof=1) / a.mean() * 100.0)


class Summary(BaseModel):
    n: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None


def summarize(values: Sequence[float | None]) -> Summary:
    a = clean(values)
    return Summary(
        n=int(a.size),
        mean=float(a.mean()) if a.size else None,
        p50=_pct(a, 50),
        p95=_pct(a, 95),
        p99=_pct(a, 99),
    )


def pct_of(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline * 100.0


# --- bootstrap intervals ----------------------------------------------------------------------

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20250101  # fixed: the same data always gives the same interval
BOOTSTRAP_LEVEL = 0.95
# Runs with fewer measured values than this are resampled request by request; from this size on,
# the requests within the drawn runs are integrated out (normal approximation of a binomial sum,
# which needs tens of values per run to hold; drawing every request of a 1M-row TR takes minutes).
TWO_STAGE_EXACT_BELOW = 50
# An interval of a config's median needs the values of at least this many runs: with one run the
# run-to-run variation (a restarted server, another cache state) is unseen, and an interval over that
# run's requests alone reads narrower than the config's median really is known (two requests of one
# run gave [151.9, 151.9]). Per-run values (the flat form) are one per run already.
MIN_CI_RUNS = 2
_BOOTSTRAP_CHUNK_VALUES = 2_000_000  # values drawn per chunk of resamples: bounds memory on large runs

BOOTSTRAP_DEFINITIONS: dict[str, str] = {
    "95% CI of a single-agent median": (
        f"percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples, fixed seed {BOOTSTRAP_SEED}, two-stage over the "
        "pooled per-request values: each resample draws the config's valid runs with replacement, then each drawn "
        "run's measured ok requests with replacement, and takes the median of the pooled draw; the interval is the "
        "2.5th to 97.5th percentile of the resampled medians. Resampling runs as well as requests keeps run-to-run "
        f"variation (server restarts, cache state) in the interval; n/a with fewer than {MIN_CI_RUNS} runs, whose "
        "run-to-run variation is unseen. "
        f"When every run has at least {TWO_STAGE_EXACT_BELOW} values (large TRs), the runs are drawn but the "
        "requests within them are not drawn one by one but integrated out: the pooled "
        "draw's median is at most x when at least half of its values are, and that count is a sum of binomials "
        "(per drawn run: its request count, each at most x with the run's share of values at most x), taken as "
        "normal; the interval's ends are the observed values where the medians' distribution over the resamples "
        "crosses 2.5 % and 97.5 % (the limit of drawing every request, without its noise, at a cost that does not "
        "grow with the number of requests)"),
    "95% CI of a per-run median": (
        f"percentile bootstrap of the median over the per-run values ({BOOTSTRAP_RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}): multi-agent speedup and efficiency, tokens per joule; with 3 runs it spans about "
        "their range"),
    "intervals": f"n/a with fewer than two values or fewer than {MIN_CI_RUNS} runs; intervals are for reading the "
    "medians, not a test between more than two models",
}


def bootstrap_median_ci(
    groups: Sequence[Sequence[float | None]] | Sequence[float | None],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = BOOTSTRAP_LEVEL,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the median.

    `groups` is either a flat list of values (plain bootstrap) or a list of groups, one per run
    (two-stage: runs with replacement, then values within each drawn run with replacement, pooled).
    None with fewer than two values in all, or groups from fewer than MIN_CI_RUNS runs."""
    if not len(groups):
        return None
    nested = not isinstance(groups[0], (int, float, type(None))) and not np.isscalar(groups[0])
    arrays = [_finite(g) for g in groups] if nested else [_finite(groups)]
    arrays = [a for a in arrays if a.size]
    if sum(a.size for a in arrays) < 2 or (nested and len(arrays) < MIN_CI_RUNS):
        return None
    rng = np.random.default_rng(seed)
    tail = (1.0 - level) / 2.0
    if len(arrays) == 1:
        lo, hi = np.percentile(_bootstrap_flat(arrays[0], n_resamples, rng), [tail * 100.0, 100.0 - tail * 100.0])
    elif min(a.size for a in arrays) < TWO_STAGE_EXACT_BELOW:  # small runs: draw every request
        lo, hi = np.percentile(_bootstrap_two_stage(arrays, n_resamples, rng), [tail * 100.0, 100.0 - tail * 100.0])
    else:
        lo, hi = _two_stage_quantiles(arrays, n_resamples, rng, (tail, 1.0 - tail))
    return float(lo), float(hi)


def _finite(values) -> np.ndarray:
    """metrics.clean, without the per-value loop for a float array."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values[~np.isnan(values)].astype(np.float64, copy=False)
    return clean(values)


def _chunks(n_resamples: int, per_resample: int):
    size = max(1, _BOOTSTRAP_CHUNK_VALUES // max(per_resample, 1))
    for start in range(0, n_resamples, size):
        yield min(size, n_resamples - start)


def _bootstrap_flat(a: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for b in _chunks(n_resamples, a.size):
        out.append(np.median(a[rng.integers(0, a.size, size=(b, a.size))], axis=1))
    return np.concatenate(out)


def _bootstrap_two_stage(arrays: list[np.ndarray], n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    n_runs = len(arrays)
    sizes = np.array([a.size for a in arrays])
    width = int(sizes.max())
    padded = np.full((n_runs, width), np.nan)
    for i, a in enumerate(arrays):
        padded[i, : a.size] = a
    out = []
    for b in _chunks(n_resamples, n_runs * width):
        runs = rng.integers(0, n_runs, size=(b, n_runs))  # the drawn runs
        n = sizes[runs]  # (b, n_runs): each drawn run's request count
        within = np.floor(rng.random((b, n_runs, width)) * n[..., None]).astype(np.int64)
        drawn = padded[runs[..., None], within]
        drawn[np.arange(width) >= n[..., None]] = np.nan  # draw each run's own count, not the widest
        out.append(np.nanmedian(drawn.reshape(b, -1), axis=1))
    return np.concatenate(out)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz & Stegun 26.2.17, absolute error < 7.5e-8), vectorised."""
    x = np.abs(z)
    t = 1.0 / (1.0 + 0.2316419 * x)
    poly = t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))))
    upper = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) * poly  # P(Z > |z|)
    return np.where(z >= 0, 1.0 - upper, upper)


def _two_stage_quantiles(arrays: list[np.ndarray], n_resamples: int, rng: np.random.Generator,
                         qs: tuple[float, ...]) -> list[float]:
    """Quantiles of the two-stage bootstrap median (BOOTSTRAP_DEFINITIONS): runs drawn, requests integrated out.

    For resample b with run r drawn c[b, r] times, the pooled draw holds N_b = sum_r c n_r values and
    S_b(x) = sum of c[b, r] Binomial(n_r, F_r(x)) of them are <= x (F_r: run r's share of values <= x).
    P(median_b <= x) = P(S_b(x) >= N_b / 2), with S_b taken as normal; the quantile q is the smallest
    observed x where the mean of those probabilities over the resamples reaches q (bisection: the mean
    rises with x)."""
    sizes = np.array([a.size for a in arrays], dtype=np.float64)
    padded = np.full((len(arrays), int(sizes.max())), np.inf)  # one row per run; inf is never <= x
    for i, a in enumerate(arrays):
        padded[i, : a.size] = a
    support = np.unique(np.concatenate(arrays))
    n_runs = len(arrays)
    drawn = rng.integers(0, n_runs, size=(n_resamples, n_runs))  # the drawn runs of each resample
    counts = np.bincount((drawn + np.arange(n_resamples)[:, None] * n_runs).ravel(),
                         minlength=n_resamples * n_runs).reshape(n_resamples, n_runs).astype(np.float64)
    half = counts @ sizes / 2.0

    def cdf(x: float) -> float:
        below = (padded <= x).sum(axis=1).astype(np.float64)  # per run: its values <= x
        mu = counts @ below
        sd = np.sqrt(counts @ (below * (1.0 - below / sizes)))
        safe = np.where(sd > 0, sd, 1.0)
        p = np.where(sd > 0, _normal_cdf((mu - half) / safe), np.where(mu > half, 1.0, np.where(mu == half, 0.5, 0.0)))
        return float(p.mean())

    out = []
    for q in qs:
        lo, hi = 0, support.size - 1  # cdf(support[-1]) == 1 >= q
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf(support[mid]) >= q:
                hi = mid
            else:
                lo = mid + 1
        out.append(float(support[lo]))
    return out


def intervals_overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """True when the two intervals share a point (or either is missing: nothing separates them)."""
    if a is None or b is None:
        return True
    return a[0] <= b[1] and b[0] <= a[1]
