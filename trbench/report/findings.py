"""What the report says first and last: key findings, answers to the objective's questions, and
recommendations, each sentence generated from the computed report under the interval rule.

A difference is stated only when the bootstrap 95% intervals separate (trbench.report.cross_model.decide);
otherwise the sentence says the data does not separate the models. Prefect-free, no formatting
beyond the sentences themselves.
"""

from __future__ import annotations

from pydantic import BaseModel

from trbench.data.rows import CACHE_STATE_LABELS
from trbench.measure.metrics import MIN_CI_RUNS
from trbench.report.cross_model import WinnerRow
from trbench.report.load_findings import embedding_sentences, load_recommendations, load_sentences
from trbench.report.questions import QUESTIONS_BY_WORKLOAD, VRAM_QUESTION
from trbench.prose.english import count, fold, join, noun, verb

_STATE_WORDS = {"cold": "a cold prefill", "cached": "a cached prefill", "partial": "a partly cached prefill",
                "cold_asked": "a prefill asked cold (not verified by the server)",
                "cached_asked": "a prefill asked cached (not verified by the server)",
                "unknown": "a prefill of unknown cache state"}
# the (cold, cached) state pairs whose TTFTs show what the prompt cache saves: the server's own
# states, or where it reports no counts, the states asked for (said to be unverified)
_CACHE_PAIRS = (("cold", "cached", ""), ("cold_asked", "cached_asked", " (as asked; the server reports no cache counts)"))
# what each multi-agent scenario is, in words a reader knows (the spec's names are internal: the
# "chimera" option set is the spec's multi_agent.chimera, the options the multi-agent runs test)
_SCENARIO_WORDS = {"baseline_vs_chimera": "with one agent on the server's defaults and the other on the spec's "
                                          "multi-agent options",
                   "chimera_homo": "with both agents on the spec's multi-agent options",
                   "chimera_hetero": "with the two agents on two different option sets of the spec"}


class Findings(BaseModel):
    key: list[str]  # 3-6 sentences
    answers: list[tuple[str, str]]  # (question, one-sentence answer)
    recommendations: list[str]
    undecided: list[str]  # what the data cannot decide


def _pct_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.0f} %" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} %"


def _num_range(values: list[float], unit: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.0f} {unit}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} {unit}"


def _rows(winners: list[WinnerRow], scenario: str) -> list[WinnerRow]:
    return [w for w in winners if w.scenario == scenario and len(w.estimates) >= 2]


def _margin(w: WinnerRow) -> float | None:
    """How far the winner is ahead of the best other model, in % of the other's value."""
    others = [e.value for m, e in w.estimates.items() if m != w.winner and e.value]
    best = w.estimates[w.winner].value
    if not others or best is None:
        return None
    other = max(others) if w.higher_is_better else min(others)
    return (best / other - 1) * 100 if w.higher_is_better else (1 - best / other) * 100


def _compare_sentence(rows: list[WinnerRow], what: str, verb_better: str, unit: str) -> str | None:
    """One sentence over every config of one scenario."""
    if not rows:
        return None
    winners = {w.winner for w in rows}
    n = len(rows)
    where = f"at {rows[0].config}" if n == 1 else "at both configs" if n == 2 else f"at all {n} configs"
    if len(winners) == 1 and (win := next(iter(winners))) not in ("tie", "n/a"):
        margins = [m for w in rows if (m := _margin(w)) is not None]
        others = sorted({m for w in rows for m in w.estimates if m != win})
        return (f"{win} {verb_better} than {join(others)} {where}"
                + (f" (by {_pct_range(margins)})" if margins else "") + f" on {what}; the 95 % intervals separate.")
    decided = [w for w in rows if w.winner not in ("tie", "n/a")]
    if not decided:
        values = [e.value for w in rows for e in w.estimates.values() if e.value is not None]
        verdict = ("the models are a tie" if _all_intervals(rows) else "the data does not separate the models")
        return f"On {what}, {verdict} {where} ({_why_not_separate(rows)}; {_medians(values, unit)})."
    parts = [f"{w.winner} at {w.config}" for w in decided]
    undecided = len(rows) - len(decided)
    rest = ("" if not undecided else "; the other config does not separate them" if undecided == 1
            else f"; the other {undecided} configs do not separate them")
    return f"On {what}, the lead depends on the config: {join(parts)}{rest}."


def _medians(values: list[float], unit: str) -> str:
    """"medians 40.0 to 90.0 ms", or the one figure when every median is the same."""
    lo, hi = min(values), max(values)
    if f"{lo:.1f}" == f"{hi:.1f}":
        return f"{'median' if len(values) == 1 else 'every median'} {lo:.1f} {unit}"
    return f"medians {lo:.1f} to {hi:.1f} {unit}"


def _all_intervals(rows: list[WinnerRow]) -> bool:
    return all(e.ci is not None for w in rows for e in w.estimates.values())


def _why_not_separate(rows: list[WinnerRow]) -> str:
    """Why tied rows are ties: overlapping intervals, or medians without an interval (too few runs)."""
    if not _all_intervals(rows):
        return f"not every median has a 95 % interval, which needs {count(MIN_CI_RUNS, 'run')}"
    return "95 % intervals overlap"


def _cache_sentence(cells: list, states: list[str]) -> str | None:
    """How much a cached prefill saves, per model, from the same runs: the factor is measured, never assumed."""
    for cold, cached, note in _CACHE_PAIRS:
        if cold in states and cached in states:
            break
    else:
        return None
    by_model: dict[str, list[tuple[float, float]]] = {}
    for c in cells:
        a, b = getattr(c, f"ttft_{cold}_p50_ms"), getattr(c, f"ttft_{cached}_p50_ms")
        if a and b:
            by_model.setdefault(c.model, []).append((a, b))
    if not by_model:
        return None
    parts = [f"{m} {_num_range([a for a, _ in v], 'ms')} cold against {_num_range([b for _, b in v], 'ms')} cached"
             for m, v in by_model.items()]
    factors = [a / b for v in by_model.values() for a, b in v]
    lo, hi = min(factors), max(factors)
    if lo > 1:
        effect = f"A prompt the server has in its KV cache gets its first token {fold(lo, hi)} sooner"
    elif hi < 1:
        effect = "A prompt sent cached got its first token later than a cold one"
    else:
        effect = "Cold and cached prefills' TTFT differ in both directions across configs"
    return f"{effect}{note}, so the two are reported apart: TTFT p50 {'; '.join(parts)}."


def _scenario_words(scenario: str) -> str:
    """A multi-agent scenario as a reader knows it: what its agents run on."""
    return _SCENARIO_WORDS.get(scenario, f"in the scenario {scenario}")


def _ahead(w: WinnerRow) -> str:
    """Who is ahead of whom in one decided multi-agent scenario, with both medians."""
    name = w.scenario.removeprefix("multi-agent efficiency ")
    others = {m: e.value for m, e in w.estimates.items() if m != w.winner and e.value is not None}
    best = w.estimates[w.winner].value
    against = (f"{next(iter(others.values())):.0f} %" if len(others) == 1 else
               join(f"{v:.0f} % for {m}" for m, v in others.items()))
    figures = f" ({best:.0f} % against {against})" if best is not None and others else ""
    return f"{w.winner} is ahead of {join(others) or 'the other models'} {_scenario_words(name)}{figures}"


def _multi_sentence(winners: list[WinnerRow], ma_results: list) -> str | None:
    rows = [w for w in winners if w.scenario.startswith("multi-agent efficiency") and len(w.estimates) >= 2]
    if not rows:
        if ma_results:
            effs = [r.efficiency_p50 for r in ma_results if r.efficiency_p50 is not None]
            if effs:
                models = list(dict.fromkeys(r.model for r in ma_results))
                scenarios = len({r.scenario for r in ma_results})
                where = "in the one scenario" if scenarios == 1 else f"across {scenarios} scenarios"
                who = (f"of {models[0]}, the one model measured," if len(models) == 1 else
                       f"of {join(models)}, never two in the same scenario,")
                return f"Multi-agent efficiency {who} is {_pct_range(effs)} {where}; no model comparison."
        return None
    effs = [e.value for w in rows for e in w.estimates.values() if e.value is not None]
    if all(w.winner in ("tie", "n/a") for w in rows):
        if not _all_intervals(rows):
            return (f"Multi-agent efficiency ({_pct_range(effs)}) does not separate the models: "
                    f"{_why_not_separate(rows)}.")
        where = ("in the one scenario measured" if len(rows) == 1 else "in both scenarios" if len(rows) == 2
                 else f"in all {len(rows)} scenarios")
        return (f"Multi-agent efficiency is a tie between the models ({_pct_range(effs)}) {where}: "
                "the architecture (two agents on two instances), not the model, dominates.")
    decided = [_ahead(w) for w in rows if w.winner not in ("tie", "n/a")]
    undecided = len(rows) - len(decided)
    rest = ("" if not undecided else "; the other scenario does not separate the models" if undecided == 1
            else f"; the other {undecided} scenarios do not separate the models")
    return (f"Model choice changes multi-agent efficiency ({_pct_range(effs)}), with separate 95 % intervals: "
            f"{'; '.join(decided)}{rest}.")


def _tie_where(w: WinnerRow) -> str:
    """What a tied row compared, in words: "single-agent decode tok/s at <config>", or a multi-agent
    scenario said as what its agents run on."""
    if w.scenario.startswith("multi-agent efficiency "):
        return f"multi-agent efficiency {_scenario_words(w.scenario.removeprefix('multi-agent efficiency '))}"
    return f"{w.scenario} at {w.config}" if w.config else w.scenario


def _answers_sentence(cells: list) -> str:
    total = sum(sum(c.answer_checks.values()) for c in cells)
    flagged: dict[str, int] = {}
    for c in cells:
        for kind, n in c.answer_checks.items():
            if kind != "ok":
                flagged[kind] = flagged.get(kind, 0) + n
    base = sorted({c.model for c in cells if c.prompt_style == "completion"})
    note = (f" {join(base)} {'is a base model' if len(base) == 1 else 'are base models'} without a chat "
            "template, driven as plain-text completion." if base else "")
    if not total:
        return f"No measured answer to check: no valid run has an ok measured request.{note}"
    if not flagged:
        passed = "The one measured answer" if total == 1 else f"All {total} measured answers"
        return f"{passed} passed the answer sanity check.{note}"
    kinds = join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(flagged.items()))
    n_failed = sum(flagged.values())
    return (f"{n_failed} of {count(total, 'measured answer')} failed "
            f"the answer sanity check ({kinds}).{note}")


def _vram_answer(data) -> str:
    rows = data.vram
    if not rows or not data.setup.gpus:
        return ("No GPU was visible, so no VRAM budget applied and every configuration ran; "
                + ("energy was measured." if data.energy.measured else "energy was not measured."))
    skipped = [r for r in rows if r.decision == "skip"]
    downgraded = [r for r in rows if r.decision.startswith("downgrade")]
    fits = len(rows) - len(skipped) - len(downgraded)
    return (f"{fits} of {count(len(rows), 'server configuration')} {verb('fits', fits)} the VRAM budget as specified"
            + (f", {len(downgraded)} ran downgraded" if downgraded else "")
            + (f", {len(skipped)} {verb('was', len(skipped))} skipped" if skipped else "") + "; "
            + ("energy per token is in the efficiency frontier." if data.energy.measured else
               "energy was not measured."))


def _best_configs(data) -> list[str]:
    out = []
    for model in dict.fromkeys(c.model for c in data.cells):
        cells = [c for c in data.cells if c.model == model and c.decode_tps_p50 is not None]
        if not cells:
            continue
        best = max(cells, key=lambda c: c.decode_tps_p50)
        rivals = [c for c in cells if c is not best and c.decode_tps_p50_ci and best.decode_tps_p50_ci
                  and c.decode_tps_p50_ci[0] <= best.decode_tps_p50_ci[1]
                  and best.decode_tps_p50_ci[0] <= c.decode_tps_p50_ci[1]]
        ttft = "; ".join(f"TTFT {CACHE_STATE_LABELS[st]} p50 {getattr(best, f'ttft_{st}_p50_ms'):.0f} ms"
                         for st in data.cache.states if getattr(best, f"ttft_{st}_p50_ms") is not None)
        line = f"{model}: {best.config.label} ({best.decode_tps_p50:.1f} tok/s" + (f", {ttft}" if ttft else "") + ")"
        if rivals:
            line += (f"; not separable from {join(c.config.label for c in rivals)} (intervals overlap): "
                     "choose among them by memory")
        out.append(line + ".")
    return out


def _scenario_sentence(su) -> str | None:
    """Per JSON scenario: parse and schema rates (and route accuracy) across the models."""
    parts = []
    for scenario in dict.fromkeys(r["scenario"] for r in su.scenarios if r["json_parse_rate"] is not None):
        rows = [r for r in su.scenarios if r["scenario"] == scenario and r["json_parse_rate"] is not None]
        key = lambda r: (r["schema_valid_rate"] or 0.0, r["route_accuracy"] or 0.0)  # noqa: E731
        best = max(rows, key=key)
        # a best is named only among two or more models, alone at the top, with something right
        named = len(rows) > 1 and sum(key(r) == key(best) for r in rows) == 1 and key(best) > (0.0, 0.0)
        figures = join(
            f"{r['model']} {100 * r['json_parse_rate']:.0f} % JSON / {100 * (r['schema_valid_rate'] or 0):.0f} % valid"
            + (f" / {100 * r['route_accuracy']:.0f} % routed right" if r["route_accuracy"] is not None else "")
            for r in rows)
        parts.append(f"{scenario}: {figures}" + (f" (best: {best['model']})" if named else ""))
    if not parts:
        return None
    return "Quality suites, answers that parse / match the schema / route right: " + "; ".join(parts) + "."


def _qa_sentence(su) -> str | None:
    models = [r for r in su.qa if r["kind"] == "model" and r["overall"] is not None]
    if not models:
        return None
    best = max(models, key=lambda r: r["overall"])
    alone = len(models) == 1
    figures = join(f"{r['model']} {r['overall']:.3f} (value {r['value_accuracy']:.2f}, ref {r['ref_overlap']:.2f}, "
                   f"NA {r['na_recall']:.2f})" for r in models)
    line = (f"QA over retrieved documents (WattBot overall, 1 = all right; {count(int(best['questions']), 'question')}): "
            f"{figures}")
    ens = [r for r in su.qa if r["kind"] == "ensemble" and r["overall"] is not None]
    if ens:
        line += "; " + join(f"{r['model']} {r['overall']:.3f}" for r in ens)
    if best["overall"] == 0:
        line += (f". {best['model']} answered no question right: it is not usable" if alone else
                 ". No model answered any question right: none is usable") + " for this task as is, whatever its speed"
    elif best["overall"] < 0.5:
        line += (f". {best['model']} is wrong on most questions" if alone else
                 f". Even the highest-scoring, {best['model']}, is wrong on most questions") + (
                 ": not usable for this task as is, whatever its speed")
    # the frontier is named only where it says something: two or more models, and only models that scored
    front = [p for p in sorted(su.points, key=lambda p: -p.decode_tps_p50) if p.on_frontier and p.overall > 0]
    if len(su.points) > 1 and front:
        line += ("; on the quality frontier (no other model both scores higher and decodes faster): "
                 + join(f"{p.model} ({p.overall:.3f} at {p.decode_tps_p50:.1f} tok/s)" for p in front))
    return line + "."


def quality_findings(data) -> list[str]:
    """What the quality suites measured, in a sentence each; the mock provider's notice first."""
    from trbench.report.answer_quality import MOCK_NOTE

    out = [MOCK_NOTE] if getattr(data, "mock", False) else []
    su = getattr(data, "suites", None)
    if su is not None:
        out += [s for s in (_scenario_sentence(su), _qa_sentence(su)) if s]
    return out


def _single_sentence(cells: list, compared: bool) -> str | None:
    """What the single-agent cells hold when no scenario sets two models side by side."""
    if not cells or compared:
        return None
    models = list(dict.fromkeys(c.model for c in cells))
    values = [c.decode_tps_p50 for c in cells if c.decode_tps_p50 is not None]
    figure = f": decode p50 {_num_range(values, 'tok/s')}" if values else ": no valid run has a decode figure"
    if len(models) == 1:
        return f"One model measured ({models[0]}){figure} over {count(len(cells), 'config')}; no model comparison."
    return (f"{len(models)} models measured ({join(models)}), never two at the same config{figure}; "
            "no model comparison.")


def _smoke_findings(data) -> Findings:
    """A setup check: pass or fail, from what ran; no winner, no figure read as a measurement."""
    problems = []
    silent = [c.model for c in data.cells if not c.valid_runs]
    if silent:
        problems.append(f"no valid run of {join(dict.fromkeys(silent))}")
    if data.invalid_runs:
        problems.append(count(len(data.invalid_runs), 'invalid run'))
    failed = sum(c.failed_requests for c in data.cells)
    if failed:
        problems.append(count(failed, 'failed request'))
    if data.server_failures:
        problems.append(count(len(data.server_failures), 'server failure'))
    models = list(dict.fromkeys(c.model for c in data.cells))
    suites = next((m.summary for m in data.measured if m.workload == "suites"), None)
    ran = (f"{noun('model', len(models))} {join(models)}" if models else "no model") + (
        f"; quality suites {suites}" if suites else "")
    if data.cells and not problems:
        key = [f"Setup check passed: every model answered in a valid run and no request failed ({ran})."]
        recommendations = ["Run the full TR: the same command without --smoke."]
    else:
        key = [f"Setup check failed: {'; '.join(problems) or 'no single-agent run finished'} ({ran})."]
        recommendations = ["Fix what failed (see Failures), then run the setup check again."]
    key.append("A setup check is not a measurement: its figures (1 run of 2 requests per model) name no winner "
               "and support no finding.")
    return Findings(key=key, answers=[], recommendations=recommendations, undecided=[])


def build_findings(data) -> Findings:
    """Key findings, answers, recommendations and open questions of a built report (ReportData), each
    sentence about a workload the data holds."""
    if data.smoke:
        return _smoke_findings(data)
    w = data.winners
    decode = _compare_sentence(_rows(w, "single-agent decode tok/s"), "decode throughput", "decodes faster", "tok/s")
    ttft = [_compare_sentence(_rows(w, f"single-agent TTFT {CACHE_STATE_LABELS[st]}"), f"TTFT of {_STATE_WORDS[st]}",
                              "answers sooner",
                              "ms") for st in data.cache.states]
    single_only = _single_sentence(data.cells, bool(decode or any(ttft)))
    ma_results = data.multi_agent.results if data.multi_agent else []
    multi = _multi_sentence(w, ma_results)
    speed = [s for s in [decode, *ttft[:2], single_only, _cache_sentence(data.cells, data.cache.states), multi,
                         _answers_sentence(data.cells) if data.cells else None] if s]
    load, embeddings = load_sentences(data.load), embedding_sentences(data.load)
    quality = quality_findings(data)
    served = load + embeddings
    key = speed[:max(2, 6 - len(quality) - len(served))] + served + quality  # each workload measured gets its say
    if not key and data.workload_parts:  # a registered workload's figures are in its own section
        where = "its own section" if len(data.workload_parts) == 1 else "their own sections"
        key = [f"Measured: {', '.join(p.title for p in data.workload_parts)}; the figures are in {where}."]
    if not key:
        key = ["Nothing was measured: no finished run, load step or quality suite answer in the data."]

    by_question: dict[str, list[str | None]] = {
        **{q: [decode, ttft[0] if ttft else None, single_only] for q in QUESTIONS_BY_WORKLOAD["single"]},
        **{q: [multi] for q in QUESTIONS_BY_WORKLOAD["multi"]},
        **{q: list(load) for q in QUESTIONS_BY_WORKLOAD["load"]},
        **{q: list(embeddings) for q in QUESTIONS_BY_WORKLOAD["embeddings"]},
        VRAM_QUESTION: [_vram_answer(data)],
    }
    # a question whose every sentence is a key finding is answered there; its answer is not said again
    answers = [(q, " ".join(said)) for q in data.questions
               if (said := [s for s in by_question.get(q, []) if s]) and not set(said) <= set(key[:8])]

    recommendations = _best_configs(data) + load_recommendations(data.load)
    flagged = sorted({f.config for f in data.flagged_runs})
    if flagged:
        which = "the config" if len(flagged) == 1 else f"the {len(flagged)} configs"
        recommendations.append(f"Re-run {which} with outlier runs ({join(flagged)}): `trbench rerun {data.tr_id}`.")
    if data.invalid_runs:
        n = len(data.invalid_runs)
        recommendations.append(f"{count(n, 'invalid run')} (see Failures): fix {'its' if n == 1 else 'their'} cause and "
                               "run the same command again; only the missing runs are measured.")
    undecided = [f"{_tie_where(r)}: {r.reason}." for r in w if r.winner == "tie"]
    if data.cells and not data.energy.measured:
        undecided.append("Energy per token: " + data.energy.note + ".")
    if data.cells and (data.runs_per_cell or 0) < 5:
        undecided.append(f"With {count(data.runs_per_cell or 0, 'run')} per config, run-to-run intervals are "
                         "wide; more runs narrow them.")
    return Findings(key=key[:8], answers=answers, recommendations=recommendations, undecided=undecided)
