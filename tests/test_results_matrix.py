"""The QA results matrix (model x metric) written as Parquet and read back."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from trbench.measure.metrics import summarize
from trbench.suites.ensemble import majority_vote
from trbench.suites.matrix import SCHEMA, ModelQuality, read_results_matrix, results_matrix, write_results_matrix
from trbench.suites.qa_score import QAAnswer, score_answers

TRUTH = [QAAnswer(id="q1", answer_value="10", ref_id=("d1",)), QAAnswer(id="q2", answer_value="is_blank")]
PREDS = {
    "smollm2:135m": [QAAnswer(id="q1", answer_value="12", ref_id=("d1",)), QAAnswer(id="q2", answer_value="3")],
    "gemma3:270m": [QAAnswer(id="q1", answer_value="10"), QAAnswer(id="q2", answer_value="", error="not JSON")],
    "other": [QAAnswer(id="q1", answer_value="10", ref_id=("d1",)), QAAnswer(id="q2", answer_value="is_blank")],
}


def rows():
    out = [ModelQuality(model=m, qa=score_answers(TRUTH, p)[0], latency_ms=summarize([100.0, 200.0]),
                        output_tokens_mean=20.0) for m, p in PREDS.items()]
    ens = majority_vote(PREDS, [t.id for t in TRUTH])
    return out + [ModelQuality(model="ensemble(3)", kind="ensemble", qa=score_answers(TRUTH, ens)[0])]


def test_the_matrix_round_trips_through_parquet(tmp_path):
    path = write_results_matrix(rows(), tmp_path / "quality" / "results_matrix.parquet")
    assert pq.read_schema(path).equals(SCHEMA)
    frame = read_results_matrix(path).set_index("model")
    assert list(frame.index) == ["smollm2:135m", "gemma3:270m", "other", "ensemble(3)"]
    # smollm2: value 1/2 (q1 wrong; q2 unanswerable: 1), ref 1 (q2: both empty), NA 0 -> 0.375 + 0.15 + 0
    assert frame.loc["smollm2:135m", "overall"] == pytest.approx(0.75 * 0.5 + 0.15 * 1.0)
    # gemma: value 1/2 (q2 failed), ref 0, NA 0, one failure
    g = frame.loc["gemma3:270m"]
    assert (g["value_accuracy"], g["ref_overlap"], g["na_recall"], g["failed"]) == (0.5, 0.0, 0.0, 1)
    assert frame.loc["other", "overall"] == pytest.approx(1.0)
    assert frame.loc["smollm2:135m", "latency_ms_p50"] == 150.0 and frame.loc["other", "output_tokens_mean"] == 20.0
    # the ensemble: q1 "10" (gemma, other: tie-free 2 votes), q2: smollm2's "3" vs other's blank, tie -> earlier (3)
    e = frame.loc["ensemble(3)"]
    assert e["kind"] == "ensemble" and e["value_accuracy"] == 1.0 and e["na_recall"] == 0.0
    assert math.isnan(e["latency_ms_p50"]) and math.isnan(e["cost"])  # not measured: null, not 0


def test_a_model_twice_is_an_error():
    r = rows()
    with pytest.raises(ValueError, match="'other' appears twice"):
        results_matrix(r + [r[2]])


def test_an_empty_matrix_keeps_its_columns(tmp_path):
    path = write_results_matrix([], tmp_path / "m.parquet")
    assert list(read_results_matrix(path).columns) == SCHEMA.names
