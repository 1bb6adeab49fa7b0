"""WattBot's CSV files (truth and predictions: `id`, `answer_value`, `answer_unit`, `ref_id`),
read into QAAnswer rows with one-line errors, and the per-question scores written back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from trbench.suites.qa_score import QAAnswer, QuestionScore

COLUMNS = ("id", "answer_value", "answer_unit", "ref_id")
ERROR_COLUMN = "error"  # optional in predictions: a non-empty cell marks an answer that could not be read


class ScoreInputError(ValueError):
    """A truth or predictions file that cannot be scored; str() is one line naming the field and the fix."""


def read_answers(path: Path, role: str) -> list[QAAnswer]:
    """The rows of a truth or predictions CSV (`role` names it in errors). Every cell is read as
    text, an empty one as empty (not NaN): an empty answer_value is a blank answer."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ScoreInputError(f"{role} {path}: file not found; fix: check the path") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScoreInputError(f"{role} {path}: not a readable CSV file ({first}); fix: give a UTF-8 CSV with a "
                              f"header row {', '.join(COLUMNS)}") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ScoreInputError(f"{role} {path}: column '{missing[0]}' missing (found: {', '.join(map(str, frame.columns))}); "
                              f"fix: add the column (WattBot's columns: {', '.join(COLUMNS)})")
    ids = frame["id"].str.strip()
    if (ids == "").any():
        row = int((ids == "").to_numpy().argmax()) + 2  # the header is line 1
        raise ScoreInputError(f"{role} {path}: field 'id' empty on line {row}; fix: give every row an id")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise ScoreInputError(f"{role} {path}: field 'id' repeats {dup.iloc[0]!r}; fix: keep one row per question")
    errors = frame[ERROR_COLUMN] if ERROR_COLUMN in frame.columns else pd.Series([""] * len(frame))
    return [QAAnswer(id=i, answer_value=v, answer_unit=u, ref_id=r, error=e.strip() or None)
            for i, v, u, r, e in zip(ids, frame["answer_value"], frame["answer_unit"], frame["ref_id"], errors)]


def check_ids(truth: Sequence[QAAnswer], predictions: Sequence[QAAnswer], predictions_path: Path) -> list[str]:
    """The truth ids without a prediction (scored as failures); an error for a predicted id the truth lacks."""
    known = {t.id for t in truth}
    unknown = [p.id for p in predictions if p.id not in known]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ScoreInputError(f"predictions {predictions_path}: field 'id' {unknown[0]!r}{more} not in the truth file; "
                              "fix: score against the truth file of the same questions, or remove those rows")
    predicted = {p.id for p in predictions}
    return [t.id for t in truth if t.id not in predicted]


def write_answers(answers: Sequence[QAAnswer], path: Path) -> Path:
    """Predictions (or truth) as WattBot's CSV, ref_id written `['a', 'b']` (empty: is_blank)."""
    rows = [{"id": a.id, "answer_value": a.answer_value, "answer_unit": a.answer_unit,
             "ref_id": format_refs(a.ref_id), ERROR_COLUMN: a.error or ""} for a in answers]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=[*COLUMNS, ERROR_COLUMN]).to_csv(path, index=False)
    return path


def format_refs(ref: str | Sequence[str]) -> str:
    if isinstance(ref, str):
        return ref
    return repr(list(ref)) if ref else "is_blank"


def write_question_scores(rows: Sequence[QuestionScore], path: Path) -> Path:
    """One line per question: its components (na_correct only for unanswerable questions)."""
    frame = pd.DataFrame([{
        "id": r.id, "na_question": r.na_question, "value": r.value, "ref_overlap": r.ref,
        "marked_blank": r.marked_blank, "na_correct": (r.marked_blank if r.na_question else None),
        "unit_match": r.unit_match, "error": r.error or "",
    } for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
