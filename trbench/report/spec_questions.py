"""Answers to the spec's own questions (spec `questions:`), from the report's summary records.

A question names one figure and what is compared: the models at each config, or the configs of each
model. In each group the leader is named only by the interval rule (its bootstrap 95 % interval
separate from every other's); overlapping intervals, a figure without intervals, a single candidate or
a figure the TR does not hold are each said as what the data cannot decide, and why."""

from __future__ import annotations

from collections import defaultdict

from trbench.config.questions_section import Question
from trbench.report.summary import SummaryFile, SummaryRecord
from trbench.report.tables import fmt, fmt_ci
from trbench.prose.english import join, noun

# the statistic a question means when it names none: the median where the report gives one
_DEFAULT_STATISTICS = ("median", "value", "max", "mean")
# groups spelt out in one answer; the rest are counted (summary.json holds them all)
_GROUPS_SHOWN = 4


def _records(q: Question, summary: SummaryFile) -> list[SummaryRecord]:
    """The question's figure, one statistic of it (the asked one or the default)."""
    ofs = [r for r in summary.records if r.metric == q.metric and r.workload == q.of_workload]
    stats = [q.statistic] if q.statistic else [s for s in _DEFAULT_STATISTICS if any(r.statistic == s for r in ofs)][:1]
    return [r for r in ofs if r.statistic in stats]


def _value(r: SummaryRecord) -> str:
    digits = 3 if r.unit == "1" else 1
    unit = "" if r.unit == "1" else f" {r.unit}"
    ci = f" {fmt_ci((r.ci_low, r.ci_high), digits)}" if r.ci_low is not None and r.ci_high is not None else ""
    return f"{fmt(r.value, digits)}{unit}{ci}"


def _named(r: SummaryRecord, across: str) -> str:
    return r.model if across == "models" else r.config


def _group_answer(q: Question, group: list[SummaryRecord]) -> tuple[str | None, str]:
    """(the leader or None, the sentence) for one config's models or one model's configs."""
    what = "model" if q.across == "models" else "config"
    known = [r for r in group if r.value is not None]
    if not known:
        return None, "the data cannot decide: no candidate has the figure"
    if len(known) == 1:
        return None, f"the data cannot decide: only {_named(known[0], q.across)} has the figure ({_value(known[0])})"
    higher = q.better_way == "higher"
    ranked = sorted(known, key=lambda r: float(r.value or 0.0), reverse=higher)
    best, rest = ranked[0], ranked[1:]
    figures = join(f"{_named(r, q.across)} {_value(r)}" for r in ranked)
    if all(r.value == best.value for r in rest):
        return None, f"the data cannot decide: every {what} has the same figure ({figures})"
    if any(r.ci_low is None or r.ci_high is None for r in known):
        return None, (f"the data cannot decide: {_named(best, q.across)} has the {'highest' if higher else 'lowest'} "
                      f"figure ({figures}), but this figure has no interval, so the difference is not tested")
    separate = all((best.ci_low or 0.0) > (r.ci_high or 0.0) if higher else (best.ci_high or 0.0) < (r.ci_low or 0.0)
                   for r in rest)
    if separate:
        return _named(best, q.across), f"{_named(best, q.across)} leads ({figures}; intervals separate)"
    return None, f"the data cannot decide: the intervals overlap ({figures})"


def answer(q: Question, summary: SummaryFile) -> str:
    """One answer: per group, the leader by the interval rule or why the data cannot decide."""
    records = _records(q, summary)
    if not records:
        which = f" {q.statistic}" if q.statistic else ""
        return (f"The data cannot decide: this TR has no{which} {q.metric} figure of {q.of_workload.replace('_', '-')} "
                "(that workload was not measured, or none of its runs finished).")
    groups: dict[str, list[SummaryRecord]] = defaultdict(list)
    for r in records:
        groups[r.config if q.across == "models" else r.model].append(r)
    answers = [(key, *_group_answer(q, group)) for key, group in groups.items()]
    where = "at" if q.across == "models" else "for"
    direction = f"`{q.metric}` ({q.statistic or records[0].statistic}; {q.better_way} is better)"
    if len(answers) == 1:
        key, _, sentence = answers[0]
        return f"{direction} {where} {key}: {sentence}."
    shown = "; ".join(f"{where} {key}: {sentence}" for key, _, sentence in answers[:_GROUPS_SHOWN])
    more = len(answers) - _GROUPS_SHOWN
    group = "config" if q.across == "models" else "model"
    leaders = {leader for _, leader, _ in answers}
    verdict = f" {next(iter(leaders))} leads {where} every {group}." if len(leaders) == 1 and None not in leaders else ""
    tail = f"; {more} more {noun(group, more)} in summary.json" if more > 0 else ""
    return f"{direction}: {shown}{tail}.{verdict}"
