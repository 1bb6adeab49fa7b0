"""`trbench score` reproduces the public WattBot scorer (KohakuRAG_UI `scripts/score.py`) by default.

Every expected figure below was computed by that scorer, commit
1569223062f313b509dfafa045d9fe7b22a9e870, run with pandas 3.1.1 on the same files
(`bench/score_parity.py --public PATH` reruns the comparison); where it raises instead, the test
says so. The files under tests/data/wattbot/ name their sources in its README.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trbench.cli import app
from trbench.suites import qa_csv
from trbench.suites.qa_score import Reading, score_answers

DATA = Path(__file__).parent / "data" / "wattbot"
DEEP = "[" * 2500 + "]" * 2500  # 5,000 characters of nesting


def score_files(truth: Path, sub: Path, reading: Reading = Reading.PUBLIC):
    t = qa_csv.read_answers(truth, "truth", reading)
    p = qa_csv.read_answers(sub, "predictions", reading)
    return score_answers(t, p, reading)


@pytest.mark.parametrize("submission, overall, components", [
    # public scorer: return value (overall) and its printed means (value, unit, ref, NA recall)
    ("deepseek-r1-smoke.csv", 0.750609756097561, (0.707, 1.000, 0.801, 1.000)),
    ("gpt-oss-20b-bench-smoke.csv", 0.6195121951219512, (0.561, 1.000, 0.659, 1.000)),
])
def test_real_submissions_score_as_the_public_scorer_scores_them(submission, overall, components):
    result, _ = score_files(DATA / "train_QA.csv", DATA / submission)
    assert result.overall == overall  # the same float, not just close
    got = (result.value_accuracy, result.unit_match, result.ref_overlap, result.na_recall)
    assert tuple(round(x, 3) for x in got) == components
    assert result.n == 41 and result.n_na == 2


def one_question(tmp_path: Path, truth_value: str, truth_ref: str, value: str, ref: str) -> tuple[Path, Path]:
    t, s = tmp_path / "truth.csv", tmp_path / "sub.csv"
    pd.DataFrame({"id": ["q1"], "answer_value": [truth_value], "answer_unit": ["W"], "ref_id": [truth_ref]}).to_csv(
        t, index=False)
    pd.DataFrame({"id": ["q1"], "answer_value": [value], "answer_unit": ["W"], "ref_id": [ref],
                  "explanation": ["x"]}).to_csv(s, index=False)
    return t, s


# (truth value, truth ref, answer value, answer ref) -> the public scorer's (value ok, ref, NA ok, overall)
EDGE_CELLS = {
    "NA answered with an empty value and [] refs": (("is_blank", "is_blank", "", "[]"), (True, 0.0, False, 0.75)),
    "NA answered is_blank everywhere": (("is_blank", "is_blank", "is_blank", "is_blank"), (True, 1.0, True, 1.0)),
    "is_blank inside a ref list": (("is_blank", "is_blank", "is_blank", "['is_blank']"), (True, 1.0, True, 1.0)),
    "is_blank beside an id": (("5", "['a']", "5", "['a', 'is_blank']"), (True, 0.5, True, 0.9249999999999999)),
    "[] against is_blank": (("5", "is_blank", "5", "[]"), (True, 0.0, True, 0.85)),
    "['1.50'] against a bare 1.50": (("5", "1.50", "5", "['1.50']"), (True, 0.0, True, 0.85)),
    "['1.50'] on both sides": (("5", "['1.50']", "5", "['1.50']"), (True, 1.0, True, 1.0)),
    "bare a, b is one id": (("5", "a, b", "5", "['a', 'b']"), (True, 0.0, True, 0.85)),
    "blank spelled NA": (("is_blank", "is_blank", "NA", "is_blank"), (True, 1.0, False, 0.9)),
    "blank spelled N/A": (("is_blank", "is_blank", "N/A", "is_blank"), (True, 1.0, False, 0.9)),
    "blank spelled na": (("is_blank", "is_blank", "na", "is_blank"), (True, 1.0, True, 1.0)),
    "blank spelled null": (("is_blank", "is_blank", "null", "is_blank"), (True, 1.0, False, 0.9)),
    "blank spelled ' IS_BLANK '": (("is_blank", "is_blank", " IS_BLANK ", "is_blank"), (True, 1.0, True, 1.0)),
    "the refusal phrase": (("is_blank", "is_blank", "Unable to answer with confidence based on the provided documents.",
                            "is_blank"), (True, 1.0, True, 1.0)),
    "a truth written 1,000": (("1,000", "['a']", "1000", "['a']"), (False, 1.0, True, 0.25)),
    "{[]}": (("5", "{[]}", "{[]}", "{[]}"), (False, 1.0, True, 0.25)),
    "[{[]}]": (("5", "[{[]}]", "[{[]}]", "[{[]}]"), (False, 1.0, True, 0.25)),
    "5,000 characters of nesting": ((DEEP, DEEP, DEEP, DEEP), (True, 1.0, True, 1.0)),
}


@pytest.mark.parametrize("cells, expected", EDGE_CELLS.values(), ids=EDGE_CELLS.keys())
def test_edge_cells_score_as_the_public_scorer_scores_them(tmp_path, cells, expected):
    result, rows = score_files(*one_question(tmp_path, *cells))
    row = rows[0]
    na_ok = row.marked_blank if row.na_question else True
    assert (row.value == 1.0, row.ref, na_ok, result.overall) == expected
    assert result.unreadable == 0


def test_a_cell_the_public_scorer_cannot_read_scores_0_and_is_counted(tmp_path):
    # the public scorer raises OverflowError on this answer (2B-style suffix on a number past the float range)
    t, s = one_question(tmp_path, "5", "['a']", "9" * 400 + "k", "['a']")
    result, rows = score_files(t, s)
    assert rows[0].value == 0.0 and rows[0].ref == 1.0 and rows[0].unreadable == ("answer_value",)
    assert result.unreadable == 1 and result.overall == pytest.approx(0.25)


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("cell", ["{[]}", "[{[]}]", DEEP, "{" * 2500 + "}" * 2500, "9" * 400 + "k", "1" * 400 + "-5"])
def test_no_cell_makes_a_traceback(tmp_path, cell, lenient):
    t, s = one_question(tmp_path, cell, cell, cell, cell)
    out = CliRunner().invoke(app, ["score", str(t), str(s), *(["--lenient"] if lenient else [])])
    assert out.exit_code == 0 and out.exception is None, out.output
    assert "Traceback" not in out.output and "unreadable cells, scored 0:" in out.output


def test_lenient_reading_differs_where_docs_say(tmp_path):
    # the documented differences, one question each: is_blank refs, an empty answer to an NA question
    t, s = one_question(tmp_path, "is_blank", "is_blank", "", "[]")
    public, _ = score_files(t, s)
    lenient, _ = score_files(t, s, Reading.LENIENT)
    assert (public.ref_overlap, public.na_recall) == (0.0, 0.0)
    assert (lenient.ref_overlap, lenient.na_recall) == (1.0, 1.0)
