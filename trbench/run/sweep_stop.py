"""Whether a cell's load steps stop early, the server being over-saturated (load_metrics.LOAD_DEFINITIONS
['stopped early']): after each step, in step order, the spec's rules are read against its figures and the
figures of the step before it. The reason is stored with the step (LoadStepRow.stop_reason), so a resumed
TR stops at the same step without measuring anything again."""

from __future__ import annotations

from trbench.config.load_section import LoadSpec, LoadStep
from trbench.prose import count

QUEUE_FLOOR_MS = 1.0  # a queue p50 below this counts as this much: growth from ~0 ms is no ratio


def ramp_step(load: LoadSpec, step: LoadStep) -> bool:
    """Whether the rules are read at this step: every step of a concurrency or rate list; of a sweep only
    its rates (its synchronous and throughput steps are the ends the rates are spread between)."""
    return load.sweep is None or step.mode == "rate"


def stop_reason(load: LoadSpec, row: dict, previous: dict | None, later: int) -> str | None:
    """Why the steps after `row` are not run (None: they are). previous: the step before it that the rules
    read (None for the first); later: how many steps that leaves out (none: nothing stops)."""
    if later == 0:
        return None
    reasons = []
    good = _num(row.get("good_pct"))
    if load.stop_below_good_pct is not None and good is not None and good < load.stop_below_good_pct:
        reasons.append(f"good {good:.1f} % < stop_below_good_pct {load.stop_below_good_pct:g} %")
    queue, before = _num(row.get("queue_ms_p50")), _num((previous or {}).get("queue_ms_p50"))
    if load.stop_queue_growth is not None and previous is not None and queue is not None and before is not None:
        base = max(before, QUEUE_FLOOR_MS)
        if queue > load.stop_queue_growth * base:
            reasons.append(f"queue p50 {queue:.0f} ms > stop_queue_growth {load.stop_queue_growth:g} x "
                           f"{base:.0f} ms at step {previous['step_label']}")
    if not reasons:
        return None
    return f"over-saturated: {'; '.join(reasons)}; {count(later, 'later step')} not run"


def _num(v: object) -> float | None:
    """A stored figure as a number; None where it is missing (None, or NaN from a pandas read)."""
    return float(v) if isinstance(v, int | float) and v == v else None
