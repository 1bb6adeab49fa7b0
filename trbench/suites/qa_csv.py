"""WattBot's CSV files (truth and predictions: `id`, `answer_value`, `answer_unit`, `ref_id`),
read into QAAnswer rows with one-line errors, and the per-question scores written back."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from trbench.suites.qa_score import QAAnswer, QuestionScore, Reading
from trbench.suites.wattbot_rules import ref_cell

COLUMNS = ("id", "answer_value", "answer_unit", "ref_id")
ERROR_COLUMN = "error"  # optional in predictions: a non-empty cell marks an answer that could not be read


class ScoreInputError(ValueError):
    """A truth or predictions file that cannot be scored; str() is one line naming the field and the fix."""


def read_answers(path: Path, role: str, reading: Reading = Reading.PUBLIC) -> list[QAAnswer]:
    """The rows of a truth or predictions CSV (`role` names it in errors), each cell as `reading`
    sees it. Public: as the public scorer reads the file (pandas' defaults, then str() of each cell):
    a cell pandas reads as missing (empty, `NA`, `N/A`, `null`, ...) is the text `nan`, and a column
    pandas reads as numbers holds their float spelling. Lenient: every cell as written, an empty
    one empty."""
    frame = _read_frame(path, role, reading)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ScoreInputError(f"{role} {path}: column '{missing[0]}' missing (found: {', '.join(map(str, frame.columns))}); "
                              f"fix: add the column (WattBot's columns: {', '.join(COLUMNS)})")
    cells = {c: _texts(frame[c], reading) for c in COLUMNS}
    # the public scorer joins on the ids as read; trbench's own reading strips them
    ids = cells["id"] if reading is Reading.PUBLIC else [i.strip() for i in cells["id"]]
    empty = [n for n, (i, raw) in enumerate(zip(ids, frame["id"])) if i.strip() == "" or pd.isna(raw)]
    if empty:
        raise ScoreInputError(f"{role} {path}: field 'id' empty on line {empty[0] + 2}; fix: give every row an id")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ScoreInputError(f"{role} {path}: field 'id' repeats {i!r}; fix: keep one row per question")
        seen.add(i)
    errors = [("" if pd.isna(e) else str(e)).strip() for e in frame[ERROR_COLUMN]] \
        if ERROR_COLUMN in frame.columns else [""] * len(frame)
    return [QAAnswer(id=i, answer_value=v, answer_unit=u, ref_id=r, error=e or None)
            for i, v, u, r, e in zip(ids, cells["answer_value"], cells["answer_unit"], cells["ref_id"], errors)]


def as_public_cells(answers: Sequence[QAAnswer]) -> list[QAAnswer]:
    """Answers as the public scorer would see them in the CSV trbench writes for them (write_answers):
    written and read back in memory, so that a score of in-memory answers is the public scorer's
    score of that file. Repeated ids (a question asked in several runs) are kept, in order."""
    buffer = io.StringIO()
    _frame(answers).to_csv(buffer, index=False)
    buffer.seek(0)
    frame = pd.read_csv(buffer)
    cells = {c: _texts(frame[c], Reading.PUBLIC) for c in COLUMNS[1:]}
    return [a.model_copy(update={"answer_value": v, "answer_unit": u, "ref_id": r})
            for a, v, u, r in zip(answers, cells["answer_value"], cells["answer_unit"], cells["ref_id"])]


class IdCheck(BaseModel):
    missing: list[str]  # truth ids without a prediction
    unknown: list[str]  # predicted ids the truth lacks


def check_ids(truth: Sequence[QAAnswer], predictions: Sequence[QAAnswer], predictions_path: Path,
              reading: Reading = Reading.PUBLIC) -> IdCheck:
    """Which truth ids have no prediction, and which predicted ids the truth lacks. Public: both are
    left out, as the scorer's join on id does, but no id in common is an error. Lenient: a predicted
    id the truth lacks is an error (the files are of different question sets)."""
    known = {t.id for t in truth}
    predicted = {p.id for p in predictions}
    unknown = [p.id for p in predictions if p.id not in known]
    if unknown and (reading is Reading.LENIENT or len(unknown) == len(predictions)):
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ScoreInputError(f"predictions {predictions_path}: field 'id' {unknown[0]!r}{more} not in the truth file; "
                              "fix: score against the truth file of the same questions, or remove those rows")
    return IdCheck(missing=[t.id for t in truth if t.id not in predicted], unknown=unknown)


def write_answers(answers: Sequence[QAAnswer], path: Path) -> Path:
    """Predictions (or truth) as WattBot's CSV, ref_id written `['a', 'b']` (empty: is_blank)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _frame(answers).to_csv(path, index=False)
    return path


def format_refs(ref: str | Sequence[str]) -> str:
    return ref if isinstance(ref, str) else ref_cell(ref)


def write_question_scores(rows: Sequence[QuestionScore], path: Path) -> Path:
    """One line per question: its components (na_correct only for unanswerable questions)."""
    frame = pd.DataFrame([{
        "id": r.id, "na_question": r.na_question, "value": r.value, "ref_overlap": r.ref,
        "marked_blank": r.marked_blank, "na_correct": (r.marked_blank if r.na_question else None),
        "unit_match": r.unit_match, "error": r.error or "", "unreadable": ", ".join(r.unreadable),
    } for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


# --- helpers --------------------------------------------------------------------------------


def _read_frame(path: Path, role: str, reading: Reading) -> pd.DataFrame:
    try:
        if reading is Reading.PUBLIC:
            return pd.read_csv(path)  # the public scorer's call: pandas' defaults
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ScoreInputError(f"{role} {path}: file not found; fix: check the path") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScoreInputError(f"{role} {path}: not a readable CSV file ({first}); fix: give a UTF-8 CSV with a "
                              f"header row {', '.join(COLUMNS)}") from None


def _texts(column: pd.Series, reading: Reading) -> list[str]:
    """Public: str() of each cell after the scorer's astype(str), a missing one `nan` (pandas 3 keeps
    it missing through astype(str), earlier pandas writes 'nan': the same text). Lenient: as read."""
    if reading is Reading.LENIENT:
        return [str(x) for x in column]
    return [str(x) for x in column.astype(str)]


def _frame(answers: Sequence[QAAnswer]) -> pd.DataFrame:
    rows = [{"id": a.id, "answer_value": a.answer_value, "answer_unit": a.answer_unit,
             "ref_id": format_refs(a.ref_id), ERROR_COLUMN: a.error or ""} for a in answers]
    return pd.DataFrame(rows, columns=[*COLUMNS, ERROR_COLUMN])
