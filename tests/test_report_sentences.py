"""Every generated sentence of the report is true of its data and reads right, over a corpus of data
shapes: two models, one model, one config, ties, one run, failed runs, load only, a setup check
(--smoke), multi-agent runs, quality suites that scored zero and one cache state against two.

Each shape's prose (key findings, answers, recommendations, open questions and the whole Markdown) is
held to the same rules: no "(s)" plural, a count agrees with its noun, "an order of magnitude" only
from 10x on, no model ahead of itself, no best or frontier named for a zero score or a lone model, lists
joined "a, b and c". Then the sentences found false or clumsy in real reports are pinned in their new
wording. The report's grammar itself (trbench.prose.english) is checked first."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import tests.test_report_publish as publish_fixtures
from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report import _plant as plant_failed_runs
from tests.test_report_publish import MANIFEST, plant
from tests.test_report_shapes import FAST, SLOW, _embedding_steps
from trbench.config.smoke import smoke_spec
from trbench.config.spec import parse_spec
from trbench.report import build_report, render_appendix_markdown, render_markdown
from trbench.report.answer_quality import QualityPoint, SuitesSection, frontier
from trbench.report.cross_model import Estimate, WinnerRow
from trbench.report.findings import _cache_sentence, _compare_sentence, _multi_sentence, quality_findings
from trbench.prose.english import count, fold, join, noun, verb

# the nouns the report counts: after 1 the singular, after any other number the plural
COUNTED = ("run", "config", "configuration", "step", "question", "request", "model", "cell", "error", "regression",
           "improvement", "scenario", "attempt", "answer", "failure", "row")
_NOUN = rf"(?:[a-z-]+ )?({'|'.join(COUNTED)})"
_HEAD = rf"(?! x | (?:{'|'.join(COUNTED)})s?\b)"  # "model x config cells", "request rows": the last noun counts
_SINGULAR_AFTER_MANY = re.compile(rf"(?<![\w.])(?:0|[2-9]|[1-9]\d+) {_NOUN}\b{_HEAD}")
_PLURAL_AFTER_ONE = re.compile(rf"(?<![\w.])(?<!- )1 {_NOUN}s\b{_HEAD}")


# --- the grammar ----------------------------------------------------------------------------------


def test_counts_lists_and_factors_read_as_english():
    assert [count(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert count(1, "server configuration") == "1 server configuration"
    assert count(3, "model x config cell") == "3 model x config cells"
    assert (noun("step", 1), noun("step", 4), verb("is", 1), verb("is", 2), verb("was", 3), verb("fits", 2)) == (
        "step", "steps", "is", "are", "were", "fit")
    assert [join(x) for x in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]
    assert join(["single-agent", "multi-agent"], "or") == "single-agent or multi-agent"
    # the report's whole vocabulary, and the regular rules it stands for
    plurals = {"run": "runs", "regression": "regressions", "improvement": "improvements", "cell": "cells",
               "compared cell": "compared cells", "superseded attempt": "superseded attempts",
               "logical core": "logical cores", "failed request": "failed requests", "warm-up request":
               "warm-up requests", "request row": "request rows", "measured answer": "measured answers",
               "matched cell": "matched cells", "invalid run": "invalid runs", "model": "models",
               "step": "steps", "server configuration": "server configurations", "GPU": "GPUs",
               "class": "classes", "box": "boxes", "batch": "batches", "query": "queries", "day": "days"}
    assert {word: noun(word, 2) for word in plurals} == plurals
    assert (verb("has", 2), verb("does", 2), verb("goes", 2), verb("passes", 2)) == ("have", "do", "go", "pass")
    assert fold(5.9) == "5.9x" and fold(5.8, 6.1) == "5.8-6.1x"
    assert fold(9.96) == "10.0x"  # rounds to 10 but is not 10x: no order of magnitude
    assert fold(10.0) == "10.0x (an order of magnitude)" and fold(12.0, 30.0) == "12.0-30.0x (an order of magnitude)"


# --- the rules every shape's prose keeps ------------------------------------------------------------


def findings_prose(data) -> list[str]:
    f = data.findings
    return [*f.key, *(a for _, a in f.answers), *f.recommendations, *f.undecided]


def check_prose(text: str) -> None:
    """The rules any generated text keeps, whatever its data."""
    assert not re.search(r"[A-Za-z]\(s\)", text), re.search(r".{60}[A-Za-z]\(s\).{0,40}", text)
    assert not (m := _SINGULAR_AFTER_MANY.search(text)), text[max(0, m.start() - 60):m.end() + 20]
    assert not (m := _PLURAL_AFTER_ONE.search(text)), text[max(0, m.start() - 60):m.end() + 20]
    for m in re.finditer(r"order of magnitude", text):
        factor = re.search(r"(\d+(?:\.\d+)?)(?:-\d+(?:\.\d+)?)?x \(an $", text[:m.start()])
        assert factor and float(factor.group(1)) >= 10, text[max(0, m.start() - 80):m.end()]
    for m in re.finditer(r"(\S+) is ahead of (.+?) (?:with|in) ", text):
        assert m.group(1) not in re.split(r", | and ", m.group(2)), m.group(0)
    for m in re.finditer(r"(\S+) (?:decodes faster|answers sooner) than (.+?) (?:at|on) ", text):
        assert m.group(1) not in re.split(r", | and ", m.group(2)), m.group(0)


def check_findings(data) -> str:
    """The findings of a built report and its Markdown under the rules; the findings as one text."""
    prose = findings_prose(data)
    for sentence in prose:
        check_prose(sentence)
        assert ", and " not in sentence, sentence  # lists are "a, b and c"
    check_prose(render_markdown(data))
    return " ".join(prose)


@pytest.mark.parametrize("bad", [
    "Re-run the 2 config(s) with outlier runs.", "With 1 runs per config, intervals are wide.",
    "over 2 config; no model comparison", "3 failed request", "1 invalid runs",
    "cuts TTFT by an order of magnitude: 237 ms cold against 40-41 ms cached (5.8-5.9x (an order of magnitude)",
    "a cached prefill is an order of magnitude faster",
    "Model choice changes multi-agent efficiency: gemma3:270m is ahead of gemma3:270m in chimera_homo.",
    "a decodes faster than b and a at both configs"])
def test_the_rules_catch_what_they_are_for(bad):
    with pytest.raises(AssertionError):
        check_prose(bad)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict:
    """Each data shape's built report, by name."""
    tmp = tmp_path_factory.mktemp("shapes")
    out = {
        "two models": build_report(plant(tmp / "two", {"fast-model": FAST, "slow-model": SLOW},
                                         multi={"fast-model": 85.0, "slow-model": 60.0})),
        "one model": build_report(plant(tmp / "one", {"fast-model": FAST}, multi={"fast-model": 80.0})),
        "ties": build_report(plant(tmp / "ties", {"fast-model": FAST, "slow-model": {**FAST, "sd": 0.02}},
                                   multi={"fast-model": 70.0, "slow-model": 70.2})),
        "one run": build_report(plant(tmp / "one-run", {"fast-model": FAST, "slow-model": SLOW}, runs=1,
                                      requests=2)),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(publish_fixtures, "CONFIGS", publish_fixtures.CONFIGS[:1])
        out["one config"] = build_report(plant(tmp / "one-config", {"fast-model": FAST, "slow-model": SLOW}))
        out["one model, one config"] = build_report(plant(tmp / "one-one", {"fast-model": FAST}, runs=1))
    plant_failed_runs(tmp / "failed")
    out["failed runs"] = build_report(tmp / "failed")
    spec = parse_spec(LOAD_SPEC)
    _write_tr(tmp / spec.tr_id, spec)
    _embedding_steps(tmp / spec.tr_id, spec.tr_id)
    out["load only"] = build_report(tmp / spec.tr_id, spec)
    smoke = smoke_spec(parse_spec({**MANIFEST["spec"], "tr_id": "planted"}))
    out["smoke"] = build_report(plant(tmp / "smoke", {"fast-model": FAST, "slow-model": SLOW}, runs=1, requests=2,
                                      manifest={**MANIFEST, "spec": smoke.model_dump(mode="json")}))
    return out


SHAPES = ["two models", "one model", "ties", "one run", "one config", "one model, one config", "failed runs",
          "load only", "smoke"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_reads_right(shapes, shape):
    check_findings(shapes[shape])


@pytest.mark.parametrize("shape", SHAPES)
def test_definitions_and_rules_are_stated_once(shapes, shape):
    """The bootstrap intervals, the winner rule and the run-to-run spread are stated where their table or
    section is; the methodology names them."""
    from trbench.measure import metrics
    from trbench.report.cross_model import WINNER_RULE

    md = render_markdown(shapes[shape])
    stated = [*metrics.BOOTSTRAP_DEFINITIONS.values(), WINNER_RULE, metrics.RUN_DEFINITIONS["cv_pct"]]
    assert {text[:80]: md.count(text[:80]) for text in stated if md.count(text[:80]) > 1} == {}


@pytest.mark.parametrize("shape", SHAPES)
def test_no_answer_repeats_a_key_finding(shapes, shape):
    f = shapes[shape].findings
    assert not [a for _, a in f.answers if any(k in a for k in f.key)]


def test_one_model_and_one_config_say_so_in_the_singular(shapes):
    key = " ".join(shapes["one model, one config"].findings.key)
    assert "One model measured (fast-model): decode p50 120 tok/s over 1 config; no model comparison." in key
    undecided = " ".join(shapes["one model, one config"].findings.undecided)
    assert "With 1 run per config, run-to-run intervals are wide" in undecided
    one = " ".join(shapes["one model"].findings.key)
    assert "Multi-agent efficiency of fast-model, the one model measured, is 80-86 % across 2 scenarios" in one
    matrix = dict(shapes["one model, one config"].methodology)["matrix"]
    assert matrix.startswith("1 model x 1 config (GPU layers, context size, temperature): gpu0_ctx512_temp0.8; "
                             "up to 1 run per model x config")


def test_one_config_names_the_config_it_compared_at(shapes):
    key = " ".join(shapes["one config"].findings.key)
    assert "fast-model decodes faster than slow-model at gpu0_ctx512_temp0.8 (by 100 %) on decode throughput" in key


def test_a_clear_multi_agent_lead_names_who_is_ahead_of_whom_per_scenario(shapes):
    (sentence,) = [k for k in shapes["two models"].findings.key if "multi-agent efficiency" in k]
    assert sentence == (
        "Model choice changes multi-agent efficiency (60-90 %), with separate 95 % intervals: fast-model is ahead of "
        "slow-model with one agent on the server's defaults and the other on the spec's multi-agent options (86 % "
        "against 60 %); fast-model is ahead of slow-model with both agents on the spec's multi-agent options (90 % "
        "against 66 %).")
    assert "chimera" not in sentence


def test_ties_are_said_as_ties(shapes):
    key = " ".join(shapes["ties"].findings.key)
    assert "the models are a tie at both configs (95 % intervals overlap;" in key
    assert "Multi-agent efficiency is a tie between the models (70-76 %) in both scenarios:" in key
    undecided = shapes["ties"].findings.undecided
    assert ("multi-agent efficiency with both agents on the spec's multi-agent options: 95% intervals overlap: "
            "slow-model with fast-model.") in undecided
    assert not any("chimera" in u or "its options" in u for u in undecided)
    assert "faster" not in key and "is ahead" not in key and "best" not in key


def test_a_load_figure_that_does_not_change_is_not_said_to_go_anywhere(shapes):
    """The planted steps are measured against a fake client on this machine's clock: the sentence
    must fit whichever queueing figures it got (the same whole ms, or two different ones)."""
    report = shapes["load only"]
    (load,) = [k for k in report.findings.key if k.startswith("Under load")]
    assert load.startswith("Under load, smollm2:135m at gpu0_ctx512_temp0.8: output peaks at")
    first, last = (f"{s.queue_ms_p50:.0f}" for s in (report.load.steps[0], report.load.steps[-1]))
    if first == last:
        assert f"queueing p50 is {first} ms at c1 and at c4." in load
    else:
        assert f"queueing p50 goes from {first} ms at c1 to {last} ms at c4." in load
    assert not re.search(r"from (\d+) ms at \S+ to \1 ms", load)


def test_failed_runs_are_counted_in_the_singular(shapes):
    recommendations = shapes["failed runs"].findings.recommendations
    assert "1 invalid run (see Failures): fix its cause and run the same command again; only the missing runs are " \
           "measured." in recommendations


# --- the sentences found false or clumsy in real reports, now true ---------------------------------


def _row(scenario: str, config: str, winner: str, values: dict[str, float], higher: bool = True) -> WinnerRow:
    return WinnerRow(scenario=scenario, config=config, metric="m", higher_is_better=higher, winner=winner, reason="",
                     estimates={m: Estimate(value=v, ci=(v - 1, v + 1)) for m, v in values.items()})


def test_a_6x_cache_saving_is_6x_not_an_order_of_magnitude():
    cells = [SimpleNamespace(model="gemma3:270m", ttft_cold_p50_ms=237.0, ttft_cached_p50_ms=cached)
             for cached in (40.0, 41.0)]
    sentence = _cache_sentence(cells, ["cold", "cached"])
    assert sentence == ("A prompt the server has in its KV cache gets its first token 5.8-5.9x sooner, so the two are "
                        "reported apart: TTFT p50 gemma3:270m 237 ms cold against 40-41 ms cached.")
    check_prose(sentence)
    tenfold = _cache_sentence([SimpleNamespace(model="m", ttft_cold_p50_ms=400.0, ttft_cached_p50_ms=20.0)],
                              ["cold", "cached"])
    assert "20.0x (an order of magnitude) sooner" in tenfold


def test_a_multi_agent_lead_in_one_scenario_names_the_model_behind_it():
    winners = [_row("multi-agent efficiency baseline_vs_chimera", "", "gemma3:270m",
                    {"gemma3:270m": 88.0, "smollm2:135m": 61.0}),
               _row("multi-agent efficiency chimera_homo", "", "tie", {"gemma3:270m": 70.0, "smollm2:135m": 70.5})]
    sentence = _multi_sentence(winners, [])
    assert sentence == (
        "Model choice changes multi-agent efficiency (61-88 %), with separate 95 % intervals: gemma3:270m is ahead of "
        "smollm2:135m with one agent on the server's defaults and the other on the spec's multi-agent options (88 % "
        "against 61 %); the other scenario does not separate the models.")
    check_prose(sentence)


def test_one_other_config_is_singular_and_more_are_counted():
    scenario = "single-agent decode tok/s"
    one = _compare_sentence([_row(scenario, "gpu0_ctx512_temp0.8", "gemma3:270m", {"gemma3:270m": 10, "b": 5}),
                             _row(scenario, "gpu80_ctx1024_temp0.8", "tie", {"gemma3:270m": 10, "b": 10})],
                            "decode throughput", "decodes faster", "tok/s")
    assert one == ("On decode throughput, the lead depends on the config: gemma3:270m at gpu0_ctx512_temp0.8; the "
                   "other config does not separate them.")
    two = _compare_sentence([_row(scenario, "c1", "a", {"a": 10, "b": 5}), _row(scenario, "c2", "tie", {"a": 1, "b": 1}),
                             _row(scenario, "c3", "tie", {"a": 1, "b": 1})], "decode throughput", "decodes faster",
                            "tok/s")
    assert two.endswith("a at c1; the other 2 configs do not separate them.")


def _scen(model: str, rate: float) -> dict:
    return {"model": model, "scenario": "router", "json_mode": True, "json_parse_rate": rate,
            "schema_valid_rate": rate, "route_accuracy": rate}


def _qa(model: str, overall: float, questions: int = 4) -> dict:
    return {"model": model, "kind": "model", "overall": overall, "value_accuracy": overall, "ref_overlap": 0.0,
            "na_recall": 0.0, "questions": questions}


def _quality(rows: list[tuple[str, float, float]], questions: int = 4) -> tuple[str, str]:
    """(scenario line, QA line) of models given as (model, score, decode tok/s)."""
    su = SuitesSection(scenarios=[_scen(m, s) for m, s, _ in rows], qa=[_qa(m, s, questions) for m, s, _ in rows],
                       points=frontier([QualityPoint(model=m, overall=s, decode_tps_p50=t) for m, s, t in rows]))
    scen_line, qa_line = quality_findings(SimpleNamespace(suites=su, mock=False))
    check_prose(scen_line)
    check_prose(qa_line)
    return scen_line, qa_line


def test_a_zero_quality_score_is_never_called_good_best_or_the_frontier():
    scen_line, qa_line = _quality([("smollm2:135m", 0.0, 124.8), ("gemma3:270m", 0.0, 80.0)])
    assert qa_line.endswith(". No model answered any question right: none is usable for this task as is, whatever "
                            "its speed.")
    for word in ("best", "frontier", "good"):
        assert word not in scen_line + qa_line, word
    # one scoring model: the frontier names it, and not the faster one that scored zero
    _, qa_line = _quality([("smollm2:135m", 0.0, 124.8), ("gemma3:270m", 0.5, 80.0)])
    assert qa_line.endswith("on the quality frontier (no other model both scores higher and decodes faster): "
                            "gemma3:270m (0.500 at 80.0 tok/s).")


def test_the_only_model_tested_is_not_the_best_of_one():
    scen_line, qa_line = _quality([("smollm2:135m", 0.0, 124.8)], questions=1)
    assert "(best:" not in scen_line and "frontier" not in qa_line and "1 question)" in qa_line
    assert qa_line.endswith(". smollm2:135m answered no question right: it is not usable for this task as is, "
                            "whatever its speed.")
    scen_line, qa_line = _quality([("smollm2:135m", 0.25, 124.8)])
    assert "(best:" not in scen_line and "frontier" not in qa_line and "Even" not in qa_line
    assert ". smollm2:135m is wrong on most questions: not usable" in qa_line
    scen_line, _ = _quality([("a", 0.5, 1.0), ("b", 0.75, 2.0)])
    assert scen_line.endswith("(best: b).")


def test_the_vram_estimate_is_said_to_be_trbenchs_own_and_no_internal_word_is_left(shapes):
    md = render_markdown(shapes["two models"]) + render_appendix_markdown(shapes["two models"])
    assert "seed 000" not in md
    template = (Path(publish_fixtures.ROOT) / "trbench" / "report" / "templates" / "appendix.md.j2").read_text()
    assert "the estimate trbench makes before the runs" in template and "seed 000" not in template


def test_the_sentence_for_an_unchecked_vram_budget_is_true_for_each_shape_of_estimates():
    """No GPU: one sentence instead of the budget table; the estimates' span in number order, one figure when
    every configuration has the same, none without any; with a GPU, the table (no sentence)."""
    from trbench.report.cross_model import VramRow
    from trbench.report.models import ReportData, Setup

    def sentence(estimates: list[float | None], gpus: list[str]) -> str:
        rows = [VramRow(model="m", num_gpu=0, num_ctx=512, estimate_gib=e, decision="run", reason="r",
                        measured_mib_max=None) for e in estimates]
        return ReportData.model_construct(vram=rows, setup=Setup.model_construct(gpus=gpus)).vram_unchecked

    head = "No GPU was visible, so no VRAM budget applied and every configuration ran"
    assert sentence([2.0, 10.0, 2.5], []) == f"{head}; trbench's estimates were 2.000 to 10.000 GiB per configuration."
    assert sentence([0.5, 0.5], []) == f"{head}; trbench's estimate was 0.500 GiB for every configuration."
    assert sentence([None], []) == f"{head}."
    assert sentence([0.5], ["NVIDIA H100"]) == ""
    assert ReportData.model_construct(vram=[], setup=Setup.model_construct(gpus=[])).vram_unchecked == ""
