"""The majority vote across models (trbench.suites.ensemble), scored like a model."""

from __future__ import annotations

import pytest

from trbench.suites.ensemble import NO_VOTE, majority_vote, vote
from trbench.suites.qa_score import QAAnswer, score_answers


def a(value, refs=(), unit="", error=None, id="q"):
    return QAAnswer(id=id, answer_value=value, answer_unit=unit, ref_id=tuple(refs), error=error)


def test_equal_answers_after_normalization_are_one_vote_group():
    out = vote("q", [a("1000", ["x"], "W"), a("7"), a("1,000", ["y"], "w"), a("about 1000", [], "kW")])
    assert (out.answer_value, out.answer_unit, set(out.refs)) == ("1000", "W", {"x", "y"})


def test_a_tie_goes_to_the_group_voted_first():
    assert vote("q", [a("5"), a("6"), a("6"), a("5")]).answer_value == "5"
    assert vote("q", [a("6"), a("5"), a("5"), a("6")]).answer_value == "6"


def test_blanks_are_one_answer_and_can_win():
    out = vote("q", [a("is_blank"), a("12", ["d"]), a("N/A"), a("13")])
    assert out.answer_value == "is_blank" and out.blank and out.refs == frozenset()


def test_failed_answers_do_not_vote():
    out = vote("q", [a("", error="not JSON"), a("", error="not JSON"), a("4", ["d"])])
    assert out.answer_value == "4" and out.error is None
    none = vote("q", [a("", error="not JSON")])
    assert none.error == NO_VOTE and not none.blank


def test_unit_most_common_among_the_winners_ties_to_the_earliest():
    assert vote("q", [a("3", unit="J"), a("3", unit="kJ"), a("3", unit="kJ")]).answer_unit == "kJ"
    assert vote("q", [a("3", unit="J"), a("3", unit="kJ")]).answer_unit == "J"


def test_a_range_and_a_number_inside_it_are_not_one_answer():
    assert vote("q", [a("[80,90]"), a("85"), a("85")]).answer_value == "85"


def test_the_ensemble_is_scored_like_a_model():
    truth = [a("10", ["d1"], id="q1"), a("20", ["d2"], id="q2"), a("is_blank", id="q3")]
    models = {
        "m1": [a("10", ["d1"], id="q1"), a("21", ["d2"], id="q2"), a("is_blank", id="q3")],
        "m2": [a("10", ["d1", "d3"], id="q1"), a("20", ["d2"], id="q2"), a("5", ["d1"], id="q3")],
        "m3": [a("11", id="q1"), a("20", ["d2"], id="q2"), a("", error="not JSON", id="q3")],
    }
    ens = majority_vote(models, [t.id for t in truth])
    # q1: 10 (m1, m2; refs d1 | d1,d3); q2: 20 (m2, m3); q3: tie is_blank (m1) vs 5 (m2) -> m1's, earlier
    assert [(e.answer_value, sorted(e.refs)) for e in ens] == [("10", ["d1", "d3"]), ("20", ["d2"]), ("is_blank", [])]
    score, _ = score_answers(truth, ens)
    assert score.value_accuracy == 1.0 and score.na_recall == 1.0
    assert score.ref_overlap == pytest.approx((0.5 + 1 + 1) / 3)
    assert score.overall == pytest.approx(0.75 + 0.15 * 2.5 / 3 + 0.10)
    # each model alone scores lower
    assert all(score_answers(truth, p)[0].overall < score.overall for p in models.values())


def test_questions_default_to_every_answered_id_in_order():
    ens = majority_vote({"m1": [a("1", id="q2")], "m2": [a("1", id="q1"), a("2", id="q2")]})
    assert [e.id for e in ens] == ["q2", "q1"]
