"""What the load and embeddings steps say, in a sentence each, for the report's key findings,
answers and recommendations: generated from the load section (report/load_results.py), true for any number
of steps, models and SLOs, zeros included."""

from __future__ import annotations

from trbench.measure.load_metrics import SATURATION_SHARE
from trbench.report.load_results import LoadSection, LoadStepResult
from trbench.prose.english import count, join, noun


def _groups(load: LoadSection) -> dict[tuple[str, str], list[LoadStepResult]]:
    out: dict[tuple[str, str], list[LoadStepResult]] = {}
    for s in load.steps:
        out.setdefault((s.model, s.config), []).append(s)
    return out


def _goodput_clause(best: LoadStepResult | None, slo: dict[str, float]) -> str | None:
    if best is None or best.goodput_rps is None:
        return None
    if best.goodput_rps == 0:
        return "no request met every SLO at any step (goodput 0)"
    share = f", {best.good_pct:.0f} % of its requests" if best.good_pct is not None else ""
    within = " within every SLO" if slo else " (no SLO given: every ok request counts)"
    return f"goodput is best at step {best.step_label} ({best.goodput_rps:.2f} req/s{share}{within})"


def _saturation_clause(steps: list[LoadStepResult], saturation: float | None, slo: dict[str, float]) -> str:
    share = f"{SATURATION_SHARE * 100:.0f} %"
    how = "within the SLOs" if slo else "ok (no SLO given)"
    below = [s.step_label for s in steps if s.offered_rps and s.goodput_rps is not None
             and s.goodput_rps < SATURATION_SHARE * s.offered_rps]
    if saturation is None:
        return f"no step served at least {share} of its offered rate {how}, so there is no saturation point"
    if not below:
        return f"every step served at least {share} of its offered rate {how}: no step saturated the server"
    return (f"the saturation point is {saturation:.2f} req/s offered (the highest offered rate served at least "
            f"{share} {how}); below that share: {noun('step', len(below))} {join(below)}")


def load_sentences(load: LoadSection | None) -> list[str]:
    """One sentence per model x config of the load steps: peak output, best goodput, saturation, queueing."""
    if load is None or not load.steps:
        return []
    summaries = {(s.model, s.config): s for s in load.summaries}
    out = []
    for (model, config), steps in _groups(load).items():
        counted = [s for s in steps if s.valid]
        if not counted:
            none = "its one step had no" if len(steps) == 1 else f"none of its {len(steps)} steps had an"
            out.append(f"Under load, {model} at {config}: {none} ok measured request.")
            continue
        parts = []
        with_tps = [(s.output_tps, s) for s in counted if s.output_tps is not None]
        if with_tps:
            peak_tps, peak = max(with_tps, key=lambda t: t[0])
            parts.append(f"output {'peaks at' if len(with_tps) > 1 else 'is'} {peak_tps:.1f} tok/s "
                         f"(step {peak.step_label})")
        summary = summaries.get((model, config))
        best = next((s for s in counted if summary and s.step_label == summary.best_goodput_step), None)
        if (clause := _goodput_clause(best, load.slo)) is not None:
            parts.append(clause)
        parts.append(_saturation_clause(counted, summary.saturation_rps if summary else None, load.slo))
        queued = [s for s in counted if s.queue_ms_p50 is not None]
        if len(queued) > 1:
            first, last = queued[0], queued[-1]
            if f"{first.queue_ms_p50:.0f}" == f"{last.queue_ms_p50:.0f}":
                parts.append(f"queueing p50 is {first.queue_ms_p50:.0f} ms at {first.step_label} and at "
                             f"{last.step_label}")
            else:
                parts.append(f"queueing p50 goes from {first.queue_ms_p50:.0f} ms at {first.step_label} to "
                             f"{last.queue_ms_p50:.0f} ms at {last.step_label}")
        out.append(f"Under load, {model} at {config}: " + "; ".join(parts) + ".")
    return out


def stop_sentences(load: LoadSection | None) -> list[str]:
    """Per model x config, whether its steps stopped early (the server over-saturated); nothing where the
    spec set no stopping rule."""
    if load is None or not load.steps or not load.stop_rules:
        return []
    rules = join([f"good % below {v:g}" if k == "stop_below_good_pct" else f"queue p50 growing over {v:g}x a step"
                  for k, v in load.stop_rules.items()], "or")
    out = []
    for (model, config), steps in _groups(load).items():
        stopped = next((s for s in steps if s.stop_reason), None)
        if stopped is None:
            out.append(f"{model} at {config}: no step stopped the load steps early ({rules}).")
        else:
            out.append(f"{model} at {config}: the load steps stopped early after step {stopped.step_label}, "
                       f"{stopped.stop_reason}.")
    return out


def load_recommendations(load: LoadSection | None) -> list[str]:
    """Where a model served the most requests within the SLOs (only where some did)."""
    if load is None:
        return []
    out = []
    for s in load.summaries:
        if s.best_goodput_rps and s.best_goodput_step:
            out.append(f"{s.model} {s.config}: for the most requests within the SLOs, load it as step "
                       f"{s.best_goodput_step} did ({s.best_goodput_rps:.2f} req/s of goodput).")
    return out


def _num(v, unit: str, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{unit}"


def embedding_sentences(load: LoadSection | None) -> list[str]:
    """One sentence per model of the embeddings steps (the latest attempt of each): texts/s, p95, SLO share."""
    if load is None or not load.embedding_steps:
        return []
    latest: dict[str, dict] = {}
    for r in sorted(load.embedding_steps, key=lambda r: r["attempt"] or 0):
        latest[r["run_id"]] = r
    by_model: dict[str, list[dict]] = {}
    for r in sorted(latest.values(), key=lambda r: (r["batch_size"] or 0, r["concurrency"] or 0)):
        by_model.setdefault(str(r["model"]), []).append(r)
    out = []
    for model, rows in by_model.items():
        parts = []
        for r in rows:
            slo = f" within {r['slo_ms']:g} ms" if r["slo_ms"] is not None else " within the SLO"
            errors = f", {count(int(r['n_errors']), 'error')}" if r["n_errors"] else ""
            parts.append(f"batch {r['batch_size']}: {_num(r['texts_per_s'], ' texts/s')}, p95 "
                         f"{_num(r['latency_p95_ms'], ' ms', 0)}, {_num(r['within_slo_pct'], ' %', 0)}{slo}{errors}")
        out.append(f"Embeddings on {model}: " + "; ".join(parts) + ".")
    return out
