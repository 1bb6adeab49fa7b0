"""The figures of one load step, from its raw request records (the load_requests rows), and the
saturation point of a sweep. Per-request metrics (TTFT, TPOT, ITL, e2e) are metrics.derive's, as
stored in each row; this module only aggregates them, and adds queueing and goodput.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from trbench.data.rows import LOAD_PCTS, ErrorCount, LoadFigures
from trbench.measure.metrics import bootstrap_median_ci, itl_gaps, percentile, prefill_rates

# step figure family -> the request column it summarises (itl: every gap of every request, pooled)
LATENCY_COLUMNS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": None, "e2e": "e2e_ms", "queue": "queue_ms",
                   "prefill": "prefill_ms"}
# what the regression check compares per load step (report/regression.py): (field, name, higher is better)
LOAD_METRICS: list[tuple[str, str, bool]] = [
    ("output_tps", "load output tok/s", True),
    ("request_rps", "load req/s", True),
    ("goodput_rps", "load goodput req/s", True),
    ("ttft_ms_p95", "load TTFT p95 ms", False),
    ("e2e_ms_p99", "load e2e p99 ms", False),
]
SATURATION_SHARE = 0.9  # goodput at least this share of the offered rate: not saturated
CI_FAMILIES = ("ttft", "tpot", "e2e")  # the p50s a step gives with an interval

LOAD_DEFINITIONS: dict[str, str] = {
    "measured requests": "requests of a step sent after its warm-up (the first warmup_requests, and any sent in its "
    "first warmup_s seconds); warm-ups are sent and stored but left out of every figure",
    "window_s": "t(last measured request ended) - t(first measured request sent), client clock",
    "offered_rps": "open loop: the step's rate; closed loop: measured requests sent / window_s (what the streams "
    "asked of the server)",
    "request_rps": "ok measured requests / window_s",
    "output_tps": "output tokens (server counts) of the ok measured requests / window_s",
    "percentiles": "p50/p90/p95/p99 over the ok measured requests (numpy 'linear'); ITL pools every inter-chunk gap "
    "of those requests; TTFT, TPOT, e2e and prefill are the per-request metrics (metrics.DEFINITIONS)",
    "prefill_tps": "p50 of the per-request prefill tok/s (metrics.DEFINITIONS['prefill_tps'] and "
    "'prefill_tps_client') over the ok measured requests whose prefill was not cached: with several streams, the "
    "server's prefill time covers the batch its prompt was processed in",
    "n_ended_early": "ok measured requests that stopped early (metrics.DEFINITIONS['stopped_early']: fewer output "
    "tokens than max_tokens). With exact_output (the default) an OpenAI-compatible server is sent ignore_eos and "
    "none end early, so the streams stay in step; Ollama cannot be made to, and the count says how many did",
    "output_share": "how far out of step the streams ran: each ok measured request's output tokens (server counts) / "
    "max_tokens, p50 and min over the step. 1 where every stream produced its whole length (exact_output on an "
    "OpenAI-compatible server); a stream that ended early frees its slot and the next request starts out of step "
    "with the others, so the lower, the further TTFT and ITL are from a lockstep step's. Shown where some step had "
    "requests that ended early",
    "queue_ms": "ttft_ms - prefill_ms: client TTFT less the server's own prompt processing time, so a full server "
    "shows as queueing and not as a slow prefill (it also holds the network and the first token's sampling, "
    "about a millisecond on a local server); null where the server reports no prefill time",
    "error_rate_pct": "measured requests with status error / measured requests x 100; error_kinds counts them by kind",
    "goodput_rps": "ok measured requests meeting every SLO the spec gives (ttft_ms, tpot_ms, e2e_ms; a request "
    "with one output token has no TPOT and meets that one) / window_s; good_pct: their share of the measured "
    "requests; without SLOs every ok request counts",
    "batched prefill wait": "closed-loop steps with at least as many server slots as streams (slots >= concurrency "
    "> 1): the step's prefill_ms p50 less the prefill_ms p50 of the same model x config at concurrency 1. Every "
    "stream has a slot, so queue_ms stays small, but the server evaluates the prompts that arrive together in one "
    "batch and each request's prefill time covers the whole batch: the wait for the others' prompts shows here, "
    "not as queueing; n/a without a concurrency-1 step",
    "p50 interval": "bootstrap 95 % interval of a step's TTFT, TPOT and e2e p50 (metrics' resamples and seed), "
    "two-stage over blocks of requests sent together: the ok measured requests in the order sent, cut into blocks "
    "of as many as were in flight on average (Little's law: request_rps x mean e2e, at least 1); each resample "
    "draws blocks, then requests within them. Requests in flight together share the server's batches, so they "
    "are not independent draws: resampling them one by one gives an interval that two identical steps miss; "
    "n/a with fewer than two blocks",
    "saturation point": f"the highest offered_rps of a model's steps whose goodput_rps is at least "
    f"{SATURATION_SHARE:.0%} of it; none when no step reaches that",
    "stopped early": "a cell's steps end after the first step where the server is over-saturated by the spec's "
    "rules, checked in step order: good_pct below stop_below_good_pct, or queue p50 more than stop_queue_growth "
    "times the step before's (counted as at least 1 ms); the later steps are not run, and that step's stop_reason "
    "says why; a sweep's synchronous and throughput steps are its ends and never stop it",
}


def batched_prefill_wait(prefill_p50_ms: float | None, alone_p50_ms: float | None) -> float | None:
    """LOAD_DEFINITIONS['batched prefill wait'] of one step, from its prefill p50 and the concurrency-1 step's."""
    if prefill_p50_ms is None or alone_p50_ms is None:
        return None
    return prefill_p50_ms - alone_p50_ms


def queue_ms(ttft_ms: float | None, prefill_ms: float | None) -> float | None:
    """LOAD_DEFINITIONS['queue_ms'] of one request."""
    if ttft_ms is None or prefill_ms is None or pd.isna(ttft_ms) or pd.isna(prefill_ms):
        return None
    return float(ttft_ms) - float(prefill_ms)


def meets_slo(row: Mapping, slo: Mapping[str, float]) -> bool:
    """Whether an ok request meets every given SLO (LOAD_DEFINITIONS['goodput_rps'])."""
    if row["status"] != "ok":
        return False
    for name, bound in slo.items():
        value = row.get(name)
        if value is None or pd.isna(value):
            if name == "tpot_ms":  # one output token: no time per token after the first
                continue
            return False
        if value > bound:
            return False
    return True


def step_figures(requests: pd.DataFrame | Sequence[Mapping], slo: Mapping[str, float], rate: float | None = None,
                 max_tokens: int | None = None) -> LoadFigures:
    """One step's figures from its request rows (warm-ups included: they are left out here).
    `rate`: the open-loop rate the step offered; None for a closed-loop step. `max_tokens`: the output
    each request asked for (its early ends are counted); None: not counted."""
    df = requests if isinstance(requests, pd.DataFrame) else pd.DataFrame(list(requests))
    if df.empty:
        return LoadFigures()
    measured = df[~df["is_warmup"].astype(bool)]
    ok = measured[measured["status"] == "ok"]
    errors = measured[measured["status"] != "ok"]
    n = len(measured)
    window = _window_s(measured)
    good = int(sum(meets_slo(r, slo) for r in ok.to_dict("records")))
    per_s = (lambda x: x / window) if window else (lambda x: None)
    figures: dict = {
        "n_requests": n, "n_warmup": len(df) - n, "n_ok": len(ok), "n_errors": len(errors),
        "error_rate_pct": len(errors) / n * 100.0 if n else None,
        "error_kinds": [ErrorCount(kind=k, count=c)
                        for k, c in sorted(Counter(errors["error_kind"].fillna("unknown")).items())],
        "window_s": window,
        "offered_rps": rate if rate is not None else per_s(n),
        "request_rps": per_s(len(ok)),
        "output_tps": per_s(float(ok["output_tokens"].fillna(0).sum())),
        "n_good": good, "good_pct": good / n * 100.0 if n else None, "goodput_rps": per_s(good),
    }
    for family, column in LATENCY_COLUMNS.items():
        values = _itl(ok) if column is None else ok[column].tolist()
        figures.update({f"{family}_ms_p{p}": percentile(values, p) for p in LOAD_PCTS})
    if max_tokens is not None:
        produced = ok["output_tokens"].fillna(0)
        figures["n_ended_early"] = int((produced < max_tokens).sum())
        figures.update(output_shares(produced.tolist(), max_tokens))
    blocks = _blocks(ok, figures["request_rps"])
    for family in CI_FAMILIES:
        ci = bootstrap_median_ci([block[LATENCY_COLUMNS[family]].tolist() for block in blocks]) if blocks else None
        figures[f"{family}_ms_p50_ci_low"], figures[f"{family}_ms_p50_ci_high"] = ci or (None, None)
    ok_rows = ok.to_dict("records")
    figures.update(prefill_tps_p50=percentile(prefill_rates(ok_rows, "server"), 50),
                   prefill_tps_client_p50=percentile(prefill_rates(ok_rows, "client"), 50))
    return LoadFigures(**figures)


def output_shares(output_tokens: Sequence[float], max_tokens: int) -> dict[str, float | None]:
    """LOAD_DEFINITIONS['output_share'] of a step's ok measured requests: output_share_p50 and _min."""
    shares = [float(n) / max_tokens for n in output_tokens] if max_tokens > 0 else []
    return {"output_share_p50": percentile(shares, 50), "output_share_min": min(shares, default=None)}


def kinds_text(kinds: Sequence[ErrorCount]) -> str:
    """A step's error kinds for people: "http_5xx:3, timeout:1" ("" without an error)."""
    return ", ".join(f"{e.kind}:{e.count}" for e in kinds)


def _window_s(measured: pd.DataFrame) -> float | None:
    if measured.empty:
        return None
    start = measured["sent_offset_ms"].min()
    end = (measured["sent_offset_ms"] + measured["e2e_ms"].fillna(0)).max()
    return (end - start) / 1000.0 if end > start else None


def _blocks(ok: pd.DataFrame, request_rps: float | None) -> list[pd.DataFrame]:
    """The ok measured requests in the order sent, cut into blocks of as many as were in flight on average
    (LOAD_DEFINITIONS['p50 interval'])."""
    e2e_s = _num(ok["e2e_ms"].mean()) if len(ok) else None
    if not request_rps or e2e_s is None:
        return []
    size = max(1, round(request_rps * e2e_s / 1000.0))
    ordered = ok.sort_values("sent_offset_ms")
    return [ordered.iloc[i:i + size] for i in range(0, len(ordered), size)]


def _itl(ok: pd.DataFrame) -> list[float]:
    gaps = [itl_gaps(list(offsets)) for offsets in ok["chunk_offsets_ms"] if offsets is not None]
    return np.concatenate(gaps).tolist() if gaps else []


def saturation_point(steps: Sequence[Mapping]) -> float | None:
    """LOAD_DEFINITIONS['saturation point'] over one model's steps (offered_rps, goodput_rps each)."""
    fine = [s["offered_rps"] for s in steps
            if _num(s.get("offered_rps")) and _num(s.get("goodput_rps")) is not None
            and s["goodput_rps"] >= SATURATION_SHARE * s["offered_rps"]]
    return max(fine) if fine else None


def _num(x) -> float | None:
    return None if x is None or pd.isna(x) else float(x)
