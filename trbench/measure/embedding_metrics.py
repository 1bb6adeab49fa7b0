"""The figures of an embeddings step, defined once (the report and the tests use these).

Over the step's measured requests (warm-ups are left out of every figure):
- wall_s: first request sent -> last answer (or failure) received (client clock);
- texts_per_s: texts of the ok requests / wall_s; tokens_per_s: the prompt tokens the server counted
  for the ok requests / wall_s (None when the server did not count them);
- latency_*_ms: mean and p50/p95/p99 of the ok requests' latency (sent -> whole answer received);
- within_slo_pct: the share of ALL measured requests that are ok and within slo_ms: an error never
  meets the objective;
- error_kinds: the kinds of the failed requests, sorted.
"""

from __future__ import annotations

from collections.abc import Sequence

from trbench.data.rows import EmbeddingFigures
from trbench.measure.metrics import summarize

DEFINITIONS = {
    "texts_per_s": "texts embedded by the ok requests / step wall time (first request sent to last answer received)",
    "tokens_per_s": "prompt tokens the server counted for the ok requests / step wall time",
    "latency": "request sent -> whole answer received (client clock); p50/p95/p99 over the ok requests",
    "within_slo_pct": "share of all measured requests that are ok and within slo_ms (an error never is)",
    "scope": "the serving path of the embeddings endpoint (HTTP, batching, queueing, the forward pass); "
             "not the quality of the vectors",
}


def step_figures(requests: Sequence[dict], slo_ms: float) -> EmbeddingFigures:
    """Figures of the measured requests of one step: rows (rows.EmbeddingRequestRow dumps) with status,
    sent_offset_ms, latency_ms, n_texts, prompt_tokens and error_kind."""
    ok = [r for r in requests if r["status"] == "ok"]
    errors = [r for r in requests if r["status"] != "ok"]
    wall_s = ((max(r["sent_offset_ms"] + r["latency_ms"] for r in requests) - min(r["sent_offset_ms"] for r in requests))
              / 1e3 if requests else None)
    lat = summarize([r["latency_ms"] for r in ok])
    texts = sum(r["n_texts"] for r in ok)
    counted = [r["prompt_tokens"] for r in ok if r.get("prompt_tokens") is not None]
    tokens = sum(counted) if ok and len(counted) == len(ok) else None
    within = sum(1 for r in ok if r["latency_ms"] <= slo_ms)

    def per_s(n: int | None) -> float | None:
        return n / wall_s if n is not None and wall_s else None

    return EmbeddingFigures(
        n_requests=len(requests), n_ok=len(ok), n_errors=len(errors),
        error_kinds=sorted({str(r.get("error_kind")) for r in errors}),
        wall_s=wall_s, texts_total=texts, tokens_total=tokens,
        texts_per_s=per_s(texts) if ok else None, tokens_per_s=per_s(tokens),
        latency_mean_ms=lat.mean, latency_p50_ms=lat.p50, latency_p95_ms=lat.p95, latency_p99_ms=lat.p99,
        slo_ms=slo_ms, n_within_slo=within,
        within_slo_pct=within / len(requests) * 100.0 if requests else None,
    )
