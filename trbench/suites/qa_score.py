"""WattBot-style QA scoring: one question's components and their aggregate.

overall = 0.75 x value_accuracy + 0.15 x ref_overlap + 0.10 x na_recall, where
- value_accuracy: share of questions whose answer_value matches; an unanswerable question scores 1
  here whatever was answered (the public scorer: "nothing expected");
- ref_overlap: mean Jaccard of the predicted and true ref_id sets;
- na_recall: share of the truly unanswerable questions answered blank (none: 1).
The unit is compared too (unit_match) but weighs nothing, as in the public scorer.

How a cell is read is the `Reading`: by default the public WattBot scorer's (wattbot_rules, so
that scores reproduce that scorer's), or trbench's lenient one (lenient_rules). docs/qa-scoring.md
states each rule and each difference. A cell neither reading can read scores 0 on its component
and is counted (`unreadable`): no cell stops a scoring run.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict

from trbench.suites import lenient_rules, wattbot_rules

BLANK = "is_blank"
WEIGHTS = {"value": 0.75, "ref": 0.15, "na": 0.10}

# what reading a hostile cell can raise: a literal nested too deep (RecursionError, MemoryError, or
# SyntaxError from Python's parser), an unhashable set literal such as {[]} (TypeError), a number
# beyond the float range (OverflowError), an int too long to convert (ValueError)
UNREADABLE = (ValueError, TypeError, OverflowError, RecursionError, MemoryError, SyntaxError)

T = TypeVar("T")


class Reading(enum.StrEnum):
    PUBLIC = "public"  # the public WattBot scorer's reading (the default)
    LENIENT = "lenient"  # trbench's more forgiving reading (`trbench score --lenient`)


class Rules(Protocol):
    def is_blank(self, cell: str, /) -> bool: ...
    def value_matches(self, truth: str, pred: str, /) -> bool: ...
    def ref_overlap(self, truth: str | tuple[str, ...], pred: str | tuple[str, ...], /) -> float: ...
    def unit_matches(self, truth: str, pred: str, /) -> bool: ...


RULES: dict[Reading, Rules] = {Reading.PUBLIC: wattbot_rules, Reading.LENIENT: lenient_rules}  # type: ignore[dict-item]


class QAAnswer(BaseModel):
    """One question's answer as WattBot's CSV writes it: the truth, or a model's prediction.
    `error` marks a prediction that could not be read (a non-JSON answer, a failed request)."""

    model_config = ConfigDict(frozen=True)
    id: str
    answer_value: str = BLANK
    answer_unit: str = ""
    ref_id: str | tuple[str, ...] = ()
    error: str | None = None

    @property
    def blank(self) -> bool:
        """An abstention, read leniently (how ensemble votes are grouped)."""
        return self.error is None and lenient_rules.is_blank(self.answer_value)

    @property
    def refs(self) -> frozenset[str]:
        """The ref ids, read leniently (how ensemble refs are united)."""
        return lenient_rules.canon_refs(self.ref_id)


class QuestionScore(BaseModel):
    id: str
    na_question: bool  # the truth is blank
    value: float  # 1 or 0
    ref: float  # Jaccard in [0, 1]
    marked_blank: bool  # the prediction said blank
    unit_match: bool
    error: str | None = None
    unreadable: tuple[str, ...] = ()  # the columns whose cells could not be read (scored 0)


class QAScore(BaseModel):
    n: int
    n_na: int
    value_accuracy: float
    ref_overlap: float
    na_recall: float
    unit_match: float
    overall: float
    failed: int  # predictions that could not be read (scored 0 on every component)
    unreadable: int = 0  # cells that could not be read, each scored 0 on its component


def score_question(truth: QAAnswer, pred: QAAnswer | None, reading: Reading = Reading.PUBLIC) -> QuestionScore:
    """One question's components; a missing or failed prediction earns nothing."""
    rules = RULES[reading]
    na_question = rules.is_blank(truth.answer_value)
    if pred is None or pred.error is not None:
        return QuestionScore(id=truth.id, na_question=na_question, value=0.0, ref=0.0, marked_blank=False,
                             unit_match=False, error="no prediction" if pred is None else pred.error)
    bad: list[str] = []
    value = 1.0 if na_question else float(_read(
        lambda: rules.value_matches(truth.answer_value, pred.answer_value), False, "answer_value", bad))
    ref = _read(lambda: rules.ref_overlap(truth.ref_id, pred.ref_id), 0.0, "ref_id", bad)
    unit = _read(lambda: rules.unit_matches(truth.answer_unit, pred.answer_unit), False, "answer_unit", bad)
    return QuestionScore(id=truth.id, na_question=na_question, value=value, ref=ref,
                         marked_blank=rules.is_blank(pred.answer_value), unit_match=unit, unreadable=tuple(bad))


def aggregate(rows: Sequence[QuestionScore]) -> QAScore:
    """Means over the rows. pandas computes them, as in the public scorer, so that the figures
    agree to the last bit (a float sum depends on the summation order)."""
    if not rows:
        raise ValueError("no questions to score; fix: give at least one question")
    na_rows = [r for r in rows if r.na_question]
    value, ref = _mean([r.value for r in rows]), _mean([r.ref for r in rows])
    na = _mean([r.marked_blank for r in na_rows]) if na_rows else 1.0
    overall = WEIGHTS["value"] * value + WEIGHTS["ref"] * ref + WEIGHTS["na"] * na
    return QAScore(n=len(rows), n_na=len(na_rows), value_accuracy=value, ref_overlap=ref, na_recall=na,
                   unit_match=_mean([r.unit_match for r in rows]), overall=overall,
                   failed=sum(r.error is not None for r in rows), unreadable=sum(len(r.unreadable) for r in rows))


def score_answers(truth: Sequence[QAAnswer], predictions: Sequence[QAAnswer],
                  reading: Reading = Reading.PUBLIC) -> tuple[QAScore, list[QuestionScore]]:
    """The truth questions scored against the predictions with their ids. A truth question without
    a prediction is left out in the public reading (the scorer joins the two files on id) and is a
    failure in the lenient one (leaving hard questions out must not raise a score)."""
    by_id = {p.id: p for p in predictions}
    asked = truth if reading is Reading.LENIENT else [t for t in truth if t.id in by_id]
    rows = [score_question(t, by_id.get(t.id), reading) for t in asked]
    return aggregate(rows), rows


def _read(fn: Callable[[], T], default: T, column: str, bad: list[str]) -> T:
    try:
        return fn()
    except UNREADABLE:
        bad.append(column)
        return default


def _mean(values: Sequence[float | bool]) -> float:
    return float(pd.Series(values, dtype="float64").mean())
