"""A majority vote across models' QA predictions for the same questions, scored like a model.
The rule (docs/qa-scoring.md, "Ensemble vote"): failed answers do not vote; equal answers (after
trbench's lenient normalization of both and the tolerance; every blank is one answer; an answer
that cannot be read is equal to none) are one group; the largest
group wins, ties to the group whose first vote comes earliest in the models' order; the ensemble
answers that group's first value, its voters' most common unit and the union of their ref ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from trbench.suites.lenient_rules import canon_unit, value_matches
from trbench.suites.qa_score import UNREADABLE, QAAnswer

NO_VOTE = "no model's answer could be read"


def majority_vote(predictions: Mapping[str, Sequence[QAAnswer]],
                  question_ids: Sequence[str] | None = None) -> list[QAAnswer]:
    """The ensemble's answer to each question (`question_ids`, or every id the models answered, in
    order of first appearance). `predictions` maps each model to its answers; its order breaks ties."""
    by_model = [{p.id: p for p in answers} for answers in predictions.values()]
    if question_ids is None:
        question_ids = list(dict.fromkeys(p.id for answers in predictions.values() for p in answers))
    return [vote(qid, [m[qid] for m in by_model if qid in m]) for qid in question_ids]


def vote(question_id: str, answers: Sequence[QAAnswer]) -> QAAnswer:
    """One question's ensemble answer from the models' answers, in the models' order."""
    groups: list[list[QAAnswer]] = []
    for a in (a for a in answers if a.error is None):
        group = next((g for g in groups if _same(g[0], a)), None)
        if group is None:
            groups.append([a])
        else:
            group.append(a)
    if not groups:
        return QAAnswer(id=question_id, answer_value="", error=NO_VOTE)
    # max() keeps the first of equal keys: the group whose first vote came earliest
    winners = max(groups, key=len)
    units = Counter(canon_unit(a.answer_unit) for a in winners)
    top = max(units.values())
    unit = next(a.answer_unit for a in winners if units[canon_unit(a.answer_unit)] == top)
    refs = sorted(set().union(*(a.refs for a in winners)))
    return QAAnswer(id=question_id, answer_value=winners[0].answer_value, answer_unit=unit, ref_id=tuple(refs))


def _same(a: QAAnswer, b: QAAnswer) -> bool:
    if a.blank or b.blank:
        return a.blank and b.blank
    # both ways: a range truth takes a number inside it, but a number is not a range
    try:
        return value_matches(a.answer_value, b.answer_value) and value_matches(b.answer_value, a.answer_value)
    except UNREADABLE:
        return False
