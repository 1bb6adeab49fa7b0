"""WattBot-style QA scoring in trbench's lenient reading against hand-computed cases
(docs/qa-scoring.md states each convention); the public reading is pinned in test_wattbot_parity.py."""

from __future__ import annotations

import pytest

from trbench.suites.lenient_rules import canon_refs, is_blank, normalize_value, ref_overlap, value_matches
from trbench.suites.qa_score import QAAnswer, Reading, aggregate, score_answers, score_question


def truth(id, value, unit="", refs=()):
    return QAAnswer(id=id, answer_value=value, answer_unit=unit, ref_id=refs)


def test_a_hand_computed_set_of_five():
    t = [truth("q1", "1000", "W", "['d1']"), truth("q2", "2.5", "kWh", "['d1', 'd2']"),
         truth("q3", "NVIDIA", "", "['d3']"), truth("q4", "is_blank", "", "is_blank"),
         truth("q5", "is_blank", "", "is_blank")]
    p = [QAAnswer(id="q1", answer_value="1,000", answer_unit=" w ", ref_id="['D1']"),  # value, ref 1, unit ok
         QAAnswer(id="q2", answer_value="2.502", answer_unit="Wh", ref_id=("d2", "d3")),  # value (0.08 %), ref 1/3
         QAAnswer(id="q3", answer_value="AMD", ref_id=()),  # value 0, ref 0
         QAAnswer(id="q4", answer_value="42", ref_id="['d1']"),  # NA missed: value 1 (nothing expected), ref 0
         QAAnswer(id="q5", answer_value="is_blank", ref_id="[]")]  # NA hit, ref 1 (both empty)
    score, rows = score_answers(t, p, Reading.LENIENT)
    assert [r.value for r in rows] == [1, 1, 0, 1, 1]
    assert [round(r.ref, 4) for r in rows] == [1, 0.3333, 0, 0, 1]
    assert score.value_accuracy == pytest.approx(0.8)
    assert score.ref_overlap == pytest.approx(7 / 15)
    assert score.na_recall == pytest.approx(0.5) and score.n_na == 2
    assert score.unit_match == pytest.approx(0.8)  # q2 only; a unit weighs nothing
    assert score.overall == pytest.approx(0.75 * 0.8 + 0.15 * 7 / 15 + 0.10 * 0.5)  # 0.72
    assert score.overall == pytest.approx(0.72)


@pytest.mark.parametrize("t, p, ok", [
    ("100", "100.1", True),  # 0.1 % of 100.1: inside
    ("100", "100.2", False),
    ("2.5", "2.5025", True),  # exactly 0.1 % of the truth; isclose measures against the larger
    ("0", "0.0009", True),  # the absolute fallback near zero
    ("0", "0.002", False),
    ("1,000", "1000", True), ("1000", "1,000", True), ("1000", "1 000", False),
    ("1e3", "1000", True),
    ("5", "about 5", True), ("5", "~5", True), ("12", "at least 12", True),
    ("2000000000", "2B", True), ("1500", "1.5k", True),
    ("[80,90]", "80-90", True), ("[80,90]", "85", True), ("[80,90]", "91", False), ("[80, 90]", "[90, 80]", True),
    ("['a', 'b']", "['B', 'A']", True), ("['a', 'b']", "a", False),
    ("1", "True", True), ("0", "no", True),
    ("5", "5 W", False),  # a unit inside the value is not a number
    ("llama.cpp", "  Llama.CPP ", True), ("llama cpp", "llama  cpp", False),
    ("NVIDIA", "nvidia h100", False),
    ("5", "nan", False), ("5", "", False), ("5", "is_blank", False),
])
def test_value_match(t, p, ok):
    assert value_matches(t, p) is ok


def test_normalize_value():
    assert normalize_value("1,234,567") == "1234567"
    assert normalize_value("approximately 1,200") == "1200"
    assert normalize_value("from 3 to 5") == "[3,5]"
    assert normalize_value("Yes") == "1"
    assert normalize_value("a,b") == "a,b"  # not a number: commas kept


@pytest.mark.parametrize("a, b, j", [
    ("['a', 'b']", "['B', 'c']", 1 / 3),
    ('["a"]', "a", 1.0), ("a, b", ["a", "b"], 1.0),
    ("is_blank", "[]", 1.0), ("", "is_blank", 1.0), ("[]", [], 1.0),  # both empty
    ("['a']", "is_blank", 0.0), ("is_blank", "['a']", 0.0),
    ("['a', 'a', 'b']", "['a']", 0.5),  # sets: a repeat counts once
])
def test_ref_overlap(a, b, j):
    assert ref_overlap(a, b) == pytest.approx(j)


def test_refs_are_sets_of_lowercased_ids():
    assert canon_refs("[' Doc1 ', 'doc2']") == {"doc1", "doc2"}
    assert canon_refs(["is_blank"]) == frozenset()


def test_blank_tokens_and_the_refusal_phrase():
    for v in ["is_blank", " IS_BLANK ", "", "NA", "n/a",
              "Unable to answer with confidence based on the provided documents."]:
        assert is_blank(v), v
    for v in ["0", "none", "unknown", "blank"]:
        assert not is_blank(v), v


def test_no_unanswerable_question_gives_full_na_recall():
    score, _ = score_answers([truth("q1", "3")], [QAAnswer(id="q1", answer_value="4")])
    assert score.na_recall == 1.0 and score.n_na == 0
    assert score.overall == pytest.approx(0.15 + 0.10)  # refs both empty: 1


def test_a_non_json_answer_earns_nothing_even_on_an_unanswerable_question():
    na = truth("q1", "is_blank", refs="is_blank")
    row = score_question(na, QAAnswer(id="q1", answer_value="", error="not JSON: 'The answer is 4'"))
    assert (row.value, row.ref, row.marked_blank) == (0.0, 0.0, False) and row.error.startswith("not JSON")
    # the same empty answer_value, read as a real answer, is a blank (an abstention)
    ok = score_question(na, QAAnswer(id="q1", answer_value=""))
    assert (ok.value, ok.ref, ok.marked_blank) == (1.0, 1.0, True)


def test_a_missing_prediction_is_a_failure():
    score, rows = score_answers([truth("q1", "3", refs="['a']"), truth("q2", "is_blank")],
                                [QAAnswer(id="q1", answer_value="3", ref_id="['a']")], Reading.LENIENT)
    assert rows[1].error == "no prediction" and score.failed == 1
    assert score.value_accuracy == 0.5 and score.ref_overlap == 0.5 and score.na_recall == 0.0


def test_no_question_is_an_error():
    with pytest.raises(ValueError, match="no questions"):
        aggregate([])
