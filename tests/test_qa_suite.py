"""The QA suite (datasets/qa/): its data, BM25 retrieval (rank-bm25) recall, the prompt, the
answer parser, and one-line errors for bad suite files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trbench.suites.qa import QASuiteError, Retriever, load_qa, messages, parse_answer
from trbench.suites.qa_csv import read_answers, write_answers
from trbench.suites.qa_score import score_answers
from trbench.suites.results import score_predictions

SUITE = Path(__file__).resolve().parent.parent / "datasets" / "qa" / "qa.yaml"


@pytest.fixture(scope="module")
def qa():
    return load_qa(SUITE)


def test_the_suite_data(qa):
    assert 5 <= len(qa.documents) <= 10 and 35 <= len(qa.questions) <= 45
    na = [q for q in qa.questions if q.truth.blank]
    assert 0.15 <= len(na) / len(qa.questions) <= 0.25  # about a fifth unanswerable
    assert all(q.truth.refs for q in qa.questions if not q.truth.blank)
    assert any(len(q.truth.refs) == 2 for q in qa.questions)  # answers that need two documents
    assert len({q.id for q in qa.questions}) == len(qa.questions)
    assert qa.digest.startswith("sha256:")


def test_retrieval_recall_of_the_answerable_questions(qa):
    """Measured: at k=2 (the suite's top_k) every cited document is retrieved for 32 of the 33
    answerable questions, and at least one for all 33; at k=1, one for all 33."""
    r = Retriever(qa.documents)
    answerable = [q for q in qa.questions if not q.truth.blank]

    def recall(k, full):
        hit = [(q.truth.refs <= {d.id for d in r.top_k(q.question, k)}) if full
               else bool(q.truth.refs & {d.id for d in r.top_k(q.question, k)}) for q in answerable]
        return sum(hit) / len(hit)

    assert qa.suite.top_k == 2
    assert recall(2, full=True) >= 0.9
    assert recall(2, full=False) == 1.0
    assert recall(1, full=False) >= 0.9


def test_retrieval_is_deterministic_and_ties_go_to_the_first_id(qa):
    r = Retriever(list(reversed(qa.documents)))
    q = qa.questions[0].question
    assert [d.id for d in r.top_k(q, 3)] == [d.id for d in Retriever(qa.documents).top_k(q, 3)]
    # a query of no known word scores every document 0: the order is by id
    assert [d.id for d in r.top_k("zzz qqq", 3)] == sorted(d.id for d in qa.documents)[:3]


def test_the_prompt_carries_the_retrieved_documents(qa):
    q = next(q for q in qa.questions if q.id == "q20")
    system, user = messages(qa, q, Retriever(qa.documents))
    assert system["role"] == "system" and '"answer_value"' in system["content"] and "is_blank" in system["content"]
    assert user["content"].count("\n[") == 2 and "[prompt-cache]\n# Prompt caching" in user["content"]
    assert user["content"].rstrip().endswith("Answer with the JSON object only.") and q.question in user["content"]


@pytest.mark.parametrize("text, value, unit, refs", [
    ('{"answer_value": 1158, "answer_unit": "ms", "ref_id": ["prompt-cache"]}', "1158", "ms", {"prompt-cache"}),
    ('```json\n{"answer_value": "3.0", "answer_unit": "J", "ref_id": ["energy"]}\n```', "3.0", "J", {"energy"}),
    ('```\n{"answer_value": 2.4, "ref_id": "ollama-notes"}\n```', "2.4", "", {"ollama-notes"}),
    ('  {"answer_value": null, "answer_unit": null, "ref_id": []} ', "is_blank", "", set()),
    ('{"answer_value": "is_blank", "answer_unit": "", "ref_id": []}', "is_blank", "", set()),
    ('{"answer_value": [11434, 11435], "ref_id": ["ollama-notes"]}', "[11434, 11435]", "", {"ollama-notes"}),
    ('{"answer_value": true, "ref_id": []}', "1", "", set()),
])
def test_parse_answer(text, value, unit, refs):
    p = parse_answer("q", text)
    assert p.error is None and (p.answer_value, p.answer_unit, set(p.refs)) == (value, unit, refs)


@pytest.mark.parametrize("text, reason", [
    ("The answer is 1158 ms.", "not JSON"),
    ('Sure! {"answer_value": 5}', "not JSON"),  # prose around the JSON
    ("", "empty answer"),
    ("```json\n```", "empty answer"),
    ('{"answer_value": 5', "not JSON"),  # cut off by max_tokens
    ("[1, 2]", "not a JSON object"),
    ('{"value": 5}', "without answer_value"),
])
def test_an_unreadable_answer_is_a_scored_failure(qa, text, reason):
    p = parse_answer("q20", text)
    assert p.error is not None and reason in p.error
    score, rows = score_answers([next(q.truth for q in qa.questions if q.id == "q20")], [p])
    assert rows[0].error == p.error and score.overall == pytest.approx(0.10)  # only NA recall's 1.0 (no NA question)


def test_the_truth_scores_one_through_the_csv_files(qa, tmp_path):
    path = write_answers(qa.truth, tmp_path / "pred.csv")
    # both files read as the public scorer reads them (an empty unit is 'nan' on both sides)
    score, _ = score_answers(read_answers(SUITE.parent / qa.suite.questions, "truth"), read_answers(path, "predictions"))
    assert score.overall == pytest.approx(1.0) and score.unit_match == 1.0
    # and the suite's own scoring of the same answers in memory agrees
    assert score_predictions(qa, qa.truth) == score


@pytest.fixture()
def copy(tmp_path):
    shutil.copytree(SUITE.parent, tmp_path / "qa")
    return tmp_path / "qa"


def one_line_error(path) -> str:
    with pytest.raises(QASuiteError) as err:
        load_qa(path)
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
    return str(err.value)


def test_bad_suite_files_give_one_line_errors(copy):
    suite = copy / "qa.yaml"
    assert "not found" in one_line_error(copy / "nope.yaml")
    suite.write_text(suite.read_text() + "top_kk: 3\n")
    assert "spec field 'suites.qa'" in one_line_error(suite) and "top_kk" in one_line_error(suite)
    suite.write_text(suite.read_text().replace("top_kk: 3\n", "").replace("documents: documents", "documents: docs"))
    assert "field 'documents': no .md files" in one_line_error(suite)
    suite.write_text(suite.read_text().replace("documents: docs", "documents: documents"))
    questions = copy / "questions.csv"
    questions.write_text(questions.read_text().replace("['thermal']", "['thermals']", 1))
    assert "question q30: field 'ref_id' names 'thermals', not a document" in one_line_error(suite)
    questions.write_text("id,answer_value,answer_unit,ref_id\nq1,1,W,['energy']\n")
    assert "has no column 'question'" in one_line_error(suite)
    questions.write_text("id,question,answer_value,ref_id\nq1,Why?,1,['energy']\n")
    assert "column 'answer_unit' missing" in one_line_error(suite)
