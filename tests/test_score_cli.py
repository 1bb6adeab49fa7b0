"""`trbench score TRUTH.csv PREDICTIONS.csv` (typer's CliRunner): the scores of a hand-computed
pair of files, the per-question file, and one-line errors for bad input."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from trbench.cli import app

TRUTH = """id,question,answer_value,answer_unit,ref_id
q1,How many?,1000,W,['d1']
q2,How much?,2.5,kWh,"['d1', 'd2']"
q3,Which vendor?,NVIDIA,,['d3']
q4,Unknowable?,is_blank,,is_blank
"""
PREDICTIONS = """id,answer_value,answer_unit,ref_id
q1,"1,000",W,['d1']
q2,2.6,kWh,"['d2', 'd3']"
q3,nvidia,,is_blank
q4,is_blank,,is_blank
"""


@pytest.fixture()
def files(tmp_path):
    t, p = tmp_path / "truth.csv", tmp_path / "pred.csv"
    t.write_text(TRUTH)
    p.write_text(PREDICTIONS)
    return t, p


def run(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


def test_scores_and_per_question_file(files):
    t, p = files
    out = run(t, p)
    assert out.exit_code == 0, out.output
    # value 3/4 (q2 is 4 % off), ref (1 + 1/3 + 0 + 1) / 4, NA 1/1
    overall = 0.75 * 0.75 + 0.15 * (7 / 3) / 4 + 0.10 * 1.0
    assert f"overall         {overall:.4f}" in out.output
    assert "value_accuracy  0.7500" in out.output and "ref_overlap     0.5833" in out.output
    assert "na_recall       1.0000" in out.output
    rows = pd.read_csv(p.with_name("pred.scores.csv"))
    assert list(rows["id"]) == ["q1", "q2", "q3", "q4"]
    assert list(rows["value"]) == [1, 0, 1, 1]
    assert rows["ref_overlap"].round(4).tolist() == [1.0, 0.3333, 0.0, 1.0]
    assert rows["na_correct"].isna().tolist() == [True, True, True, False] and bool(rows["na_correct"][3])


def test_lenient_scores_a_missing_prediction_0(files, tmp_path):
    t, p = files
    p.write_text("\n".join(PREDICTIONS.splitlines()[:-1]) + "\n")  # q4 left out
    target = tmp_path / "sub" / "scores.csv"
    out = run(t, p, "--out", target, "--lenient")
    assert out.exit_code == 0, out.output
    assert "1 question without a prediction, scored 0: q4" in out.output
    assert "na_recall       0.0000" in out.output and "(failed: 1;" in out.output
    assert pd.read_csv(target)["error"].fillna("").tolist() == ["", "", "", "no prediction"]


def test_public_reading_leaves_a_missing_prediction_out_as_the_public_scorer_does(files, tmp_path):
    t, p = files
    p.write_text("\n".join(PREDICTIONS.splitlines()[:-1]) + "\nq9,3,,is_blank\n")  # q4 left out, q9 unknown
    out = run(t, p)
    assert out.exit_code == 0, out.output
    assert "1 question without a prediction, left out, as the public scorer does" in out.output
    assert "1 predicted id not in the truth file, left out: q9" in out.output
    # q1-q3 only: value 2/3, ref (1 + 1/3 + 0) / 3, no unanswerable question: NA 1
    assert "questions       3  (failed: 0; unreadable cells, scored 0: 0)" in out.output
    assert "value_accuracy  0.6667" in out.output and "na_recall       1.0000" in out.output


@pytest.mark.parametrize("which, content, expected", [
    ("pred", "id,answer_value,ref_id\nq1,1,[]\n", "predictions {p}: column 'answer_unit' missing"),
    ("truth", "id,answer_value,answer_unit\nq1,1,W\n", "truth {t}: column 'ref_id' missing"),
    ("pred", "id,answer_value,answer_unit,ref_id\nq9,3,,is_blank\n", "field 'id' 'q9' not in the truth file"),
    ("pred", PREDICTIONS + "q1,3,,is_blank\n", "field 'id' repeats 'q1'"),
    ("pred", "", "not a readable CSV file"),
])
def test_bad_input_is_one_line_naming_the_field_and_the_fix(files, which, content, expected):
    t, p = files
    (p if which == "pred" else t).write_text(content)
    out = run(t, p)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert expected.format(p=p, t=t) in lines[0].replace("\n", "") and "fix:" in lines[0]


def test_a_file_that_is_not_there(files, tmp_path):
    t, _ = files
    out = run(t, tmp_path / "nope.csv")
    assert out.exit_code == 2 and "file not found; fix: check the path" in out.output
