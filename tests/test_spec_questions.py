"""The spec's own questions (spec `questions:`): each is answered from the data by the interval rule,
or with why the data cannot decide, on every data shape; a bad question is one line naming its field."""

from __future__ import annotations

import pytest

import tests.test_report_publish as publish_fixtures
from tests.test_report_publish import FAST, MANIFEST, SLOW, plant
from tests.test_report_sentences import check_prose
from trbench.config.questions_section import ASKABLE
from trbench.config.spec import SpecError, parse_spec
from trbench.report import build_report, render_markdown
from trbench.report.summary import build_summary

QUESTIONS = [
    {"ask": "Which model decodes fastest at each config?", "metric": "decode_tps"},
    {"ask": "Which context size answers a cold prompt soonest?", "metric": "ttft_cold_ms", "across": "configs"},
    {"ask": "Is run-to-run spread lower for one model?", "metric": "cv_pct"},
    {"ask": "Where does the server saturate?", "metric": "saturation_rps"},
]


def _spec(questions: list[dict]):
    return parse_spec({**MANIFEST["spec"], "questions": questions})


def _answers(root, questions: list[dict] = QUESTIONS) -> dict[str, str]:
    data = build_report(root, _spec(questions))
    return dict(data.findings.answers)


def test_a_clear_lead_is_named_at_every_config(tmp_path):
    answers = _answers(plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": SLOW}))
    decode = answers["Which model decodes fastest at each config?"]
    assert decode.startswith("`decode_tps` (median; higher is better): at gpu0_ctx512_temp0.8: fast-model leads (")
    assert decode.endswith("fast-model leads at every config.")
    assert "intervals separate" in decode and "slow-model" in decode


def test_overlapping_intervals_are_not_a_lead(tmp_path):
    answers = _answers(plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": {**FAST, "sd": 0.02}}, seed=3))
    decode = answers["Which model decodes fastest at each config?"]
    assert "the data cannot decide: the intervals overlap" in decode
    assert "leads at every config" not in decode


def test_one_model_has_no_rival_and_configs_can_still_be_compared(tmp_path):
    answers = _answers(plant(tmp_path / "tr", {"fast-model": FAST}))
    assert "the data cannot decide: only fast-model has the figure" in answers["Which model decodes fastest at each config?"]
    ttft = answers["Which context size answers a cold prompt soonest?"]
    assert ttft.startswith("`ttft_cold_ms` (median; lower is better) for fast-model: ")


def test_a_figure_without_intervals_names_no_leader(tmp_path):
    cv = _answers(plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": SLOW}))["Is run-to-run spread lower for one model?"]
    assert "this figure has no interval, so the difference is not tested" in cv and " leads" not in cv


def test_a_workload_the_tr_did_not_measure_cannot_answer(tmp_path):
    answers = _answers(plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": SLOW}))
    assert answers["Where does the server saturate?"] == (
        "The data cannot decide: this TR has no saturation_rps figure of load (that workload was not measured, or "
        "none of its runs finished).")


def test_equal_figures_are_said_to_be_equal(tmp_path):
    root = plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": SLOW})
    data = build_report(root, _spec(QUESTIONS[:1]))
    summary = build_summary(data)
    for r in summary.records:  # every model decodes at the same rate
        if r.metric == "decode_tps":
            r.value, r.ci_low, r.ci_high = 0.0, 0.0, 0.0
    from trbench.report.spec_questions import answer

    text = answer(_spec(QUESTIONS[:1]).questions[0], summary)
    assert "the data cannot decide: every model has the same figure (fast-model 0.0 tok/s [0.0, 0.0] and " in text


@pytest.mark.parametrize("models", [{"fast-model": FAST, "slow-model": SLOW}, {"fast-model": FAST}])
def test_the_report_asks_the_spec_s_questions_instead_of_the_defaults(tmp_path, models):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(publish_fixtures, "CONFIGS", publish_fixtures.CONFIGS[:1])
        data = build_report(plant(tmp_path / "tr", models), _spec(QUESTIONS))
    assert data.questions == [q["ask"] for q in QUESTIONS]
    md = render_markdown(data)
    for q in QUESTIONS:
        assert md.count(q["ask"]) == 2  # listed under the objective, answered under key findings
    assert "Does model choice materially shift" not in md
    for _, a in data.findings.answers:
        check_prose(a)


def test_a_spec_without_questions_keeps_the_workloads_defaults(tmp_path):
    data = build_report(plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": SLOW}))
    assert any("Does model choice materially shift" in q for q in data.questions)


@pytest.mark.parametrize(("question", "line"), [
    ({"ask": "?", "metric": "speed"}, "field 'questions.0.metric': 'speed' is not a figure a question can ask about"),
    ({"ask": "?", "metric": "e2e_ms"}, "field 'questions.0.workload': e2e_ms is a figure of single_agent and load: "
     "name one as workload"),
    ({"ask": "?", "metric": "decode_tps", "workload": "load"}, "field 'questions.0.workload': decode_tps is not a "
     "figure of load"),
    ({"ask": "?", "metric": "decode_tps", "across": "hosts"}, "field 'questions.0.across'"),
])
def test_a_bad_question_is_one_line_naming_its_field(question, line):
    with pytest.raises(SpecError) as err:
        _spec([question])
    assert line in str(err.value) and "\n" not in str(err.value)


def test_decode_tps_still_means_the_single_agent_s_and_synthetic_rates_are_named():
    spec = _spec([{"ask": "a?", "metric": "decode_tps"},
                  {"ask": "b?", "metric": "prefill_tps", "workload": "synthetic", "across": "configs"}])
    assert [q.of_workload for q in spec.questions] == ["single_agent", "synthetic"]
    with pytest.raises(SpecError) as err:
        _spec([{"ask": "?", "metric": "prefill_tps"}])
    assert "prefill_tps is a figure of single_agent and load and synthetic: name one as workload" in str(err.value)


def test_every_figure_the_summary_holds_can_be_asked_about(tmp_path):
    """The askable figures are summary.json's metric ids (agent-level multi-agent figures aside), so a new
    figure in the summary is askable or a test fails."""
    summary = build_summary(build_report(plant(tmp_path / "tr", {"fast-model": FAST, "slow-model": SLOW},
                                               energy=True, multi={"fast-model": 85.0, "slow-model": 60.0})))
    held = {(r.metric, r.workload) for r in summary.records if not r.metric.startswith(("collector_", "insight_"))}
    unaskable = {"decode_client_vs_server_pct", "output_tokens", "offered_rps"}
    assert {(m, w) for m, w in held if m not in unaskable} <= {(m, w) for m, ws in ASKABLE.items() for w in ws}
