"""The QA suite (datasets/qa/): context documents, questions with WattBot-style truth, BM25
retrieval of the top-k documents, the prompt that carries them (retrieval-augmented: the documents, then the question),
and the parser that turns a model's answer into a prediction."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rank_bm25 import BM25Okapi

from trbench.config.suite_files import content_digest, read_suite
from trbench.suites.answers import parse_json_answer
from trbench.suites.qa_csv import ScoreInputError, read_answers
from trbench.suites.qa_score import BLANK, QAAnswer, Reading

EXAMPLE = "datasets/qa/qa.yaml"
SYSTEM = (
    "You answer questions using only the documents given. Reply with one JSON object and nothing else: "
    '{"answer_value": <the value, a number where the answer is one>, "answer_unit": <its unit, or "">, '
    '"ref_id": [<the ids of the documents that support the answer>]}. '
    f'If the documents do not contain the answer, reply {{"answer_value": "{BLANK}", "answer_unit": "", "ref_id": []}}.'
)


class QASuiteError(ValueError):
    """A QA suite that cannot be used; str() is one line naming the field and the fix."""


class QASuite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    documents: str = Field("documents", description="folder beside the suite file: one <id>.md per document")
    questions: str = Field("questions.csv", description="CSV beside the suite file: id, question and WattBot's truth columns")
    top_k: int = Field(2, ge=1, le=20)
    json_mode: bool = Field(True, description="ask the server for JSON (OpenAI response_format, Ollama format: json)")
    max_tokens: int = Field(96, ge=8, le=4096)
    system: str = SYSTEM


class Document(BaseModel):
    id: str
    text: str


class Question(BaseModel):
    id: str
    question: str
    truth: QAAnswer


class QASet(BaseModel):
    """A loaded suite: its settings, documents (sorted by id) and questions (file order)."""

    suite: QASuite
    documents: list[Document]
    questions: list[Question]
    digest: str

    @property
    def truth(self) -> list[QAAnswer]:
        return [q.truth for q in self.questions]


def load_qa(path: str | Path) -> QASet:
    """The suite at `path` with its documents and questions; QASuiteError (one line) when any is
    missing or malformed, or a question cites a document the suite lacks."""
    path = Path(path)
    suite, raw = read_suite(path, QASuite, QASuiteError, "suites.qa", "point it at a QA suite such as " + EXAMPLE,
                            EXAMPLE, detail_lines=3)
    folder = path.parent / suite.documents
    files = sorted(folder.glob("*.md")) if folder.is_dir() else []
    if not files:
        raise QASuiteError(f"QA suite {path}: field 'documents': no .md files in {folder}; fix: put one <id>.md per "
                           "document there, or point 'documents' at that folder")
    documents = [Document(id=f.stem, text=f.read_text(encoding="utf-8")) for f in files]
    questions = _questions(path, path.parent / suite.questions, {d.id for d in documents})
    digest = content_digest(raw, *(f.name.encode() + f.read_bytes() for f in files),
                            (path.parent / suite.questions).read_bytes())
    return QASet(suite=suite, documents=documents, questions=questions, digest=digest)


def _questions(suite_path: Path, csv_path: Path, doc_ids: set[str]) -> list[Question]:
    try:
        # the cells as written; scoring reads them as the public scorer would (results.score_predictions)
        truth = read_answers(csv_path, f"QA suite {suite_path}: field 'questions':", Reading.LENIENT)
    except ScoreInputError as err:
        raise QASuiteError(str(err)) from None
    texts = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "question" not in texts.columns:
        raise QASuiteError(f"QA suite {suite_path}: field 'questions': {csv_path} has no column 'question'; "
                           "fix: add the question text in a column 'question'")
    out = []
    for t, text in zip(truth, texts["question"]):
        unknown = sorted(t.refs - doc_ids)
        if unknown:
            raise QASuiteError(f"QA suite {suite_path}: question {t.id}: field 'ref_id' names {unknown[0]!r}, not a "
                               f"document (have: {', '.join(sorted(doc_ids))}); fix: use a document's file name "
                               "without .md")
        if not text.strip():
            raise QASuiteError(f"QA suite {suite_path}: question {t.id}: field 'question' empty; fix: write the question")
        out.append(Question(id=t.id, question=text.strip(), truth=t))
    return out


# --- retrieval --------------------------------------------------------------------------------

_STOPWORDS = frozenset(
    "a an and are as at be by do does for from how in is it its of on or per the this to what when which with".split())


def tokens(text: str) -> list[str]:
    """Lowercased word tokens (letters, digits, '_') without the commonest English words."""
    return [t for t in re.findall(r"[a-z0-9_]+", text.lower()) if t not in _STOPWORDS]


class Retriever:
    """BM25 (Okapi, rank-bm25's defaults) over the suite's documents. Deterministic: ties go to the
    document that sorts first by id."""

    def __init__(self, documents: list[Document]):
        self.documents = sorted(documents, key=lambda d: d.id)
        self._bm25 = BM25Okapi([tokens(d.text) for d in self.documents])

    def scores(self, query: str) -> np.ndarray:
        return self._bm25.get_scores(tokens(query))

    def top_k(self, query: str, k: int) -> list[Document]:
        order = np.argsort(-self.scores(query), kind="stable")
        return [self.documents[i] for i in order[:k]]


# --- prompt and answer --------------------------------------------------------------------------


def messages(suite: QASet, question: Question, retriever: Retriever) -> list[dict[str, str]]:
    """The chat messages of one question: the instruction, then the top-k documents and the question."""
    docs = retriever.top_k(question.question, suite.suite.top_k)
    context = "\n\n".join(f"[{d.id}]\n{d.text.strip()}" for d in docs)
    user = f"Documents:\n\n{context}\n\nQuestion: {question.question}\nAnswer with the JSON object only."
    return [{"role": "system", "content": suite.suite.system}, {"role": "user", "content": user}]


def parse_answer(question_id: str, text: str) -> QAAnswer:
    """A model's answer text as a prediction. Not one JSON object with answer_value: a prediction
    marked with the error (scored 0 everywhere, docs/qa-scoring.md). A null answer_value is an
    abstention (is_blank); a missing or null unit is empty; ref_id may be a list or one id."""
    value, error = parse_json_answer(text)
    if error is None and not isinstance(value, dict):
        error = f"not a JSON object but {type(value).__name__}"
    elif isinstance(value, dict) and "answer_value" not in value:
        error = "JSON object without answer_value"
    if error is not None or not isinstance(value, dict):  # value is a dict where no error was found
        return QAAnswer(id=question_id, answer_value="", error=error)
    refs = value.get("ref_id") or ()
    refs = tuple(str(r) for r in refs) if isinstance(refs, list) else str(refs)
    return QAAnswer(id=question_id, answer_value=_as_text(value["answer_value"]),
                    answer_unit=_as_text(value.get("answer_unit"), blank=""), ref_id=refs)


def _as_text(v: object, blank: str = BLANK) -> str:
    if v is None:
        return blank
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list):
        return repr(v)
    return str(v)
