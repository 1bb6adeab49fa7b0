"""The public WattBot scorer's reading of one question's cells (KohakuRAG_UI `scripts/score.py`,
the competition's Kaggle metric): what `trbench score` and the QA suite use by default.

Each cell is text as that scorer sees it: the CSV read with pandas' defaults, then str() of each
cell, so a cell pandas reads as missing (empty, `NA`, `N/A`, `null`, ...) is the text `nan` and is
not blank (qa_csv.read_answers does that reading). The rules, as that scorer decides them:
- blank: `is_blank`, `na`, `n/a`, empty (any case, edge whitespace ignored), or the refusal phrase;
- value: the truth is taken as written; the prediction is normalized (yes/no, thousands commas,
  a hedge, a magnitude suffix, a range); then list, range, number (float() and math.isclose with
  1e-3 relative and absolute) or text (stripped, lowercased) comparison;
- unit: stripped and lowercased, compared as text (weighs 0);
- ref: a cell starting with `[` is read as JSON once every `'` is turned into `"`; any other
  cell, or a list JSON cannot read, is one id (the whole cell); `is_blank` is the id `is_blank`.
A cell where that scorer itself fails (a magnitude or range beyond the float range) raises
OverflowError here; the caller scores it 0 and counts it (qa_score).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TypeGuard

BLANK = "is_blank"
TOL = 1e-3  # relative and absolute, for numbers, list items and range bounds

_BLANK_TOKENS = frozenset({"", "na", "n/a", BLANK})
_REFUSAL = "unable to answer with confidence based on the provided documents"
_TRUE, _FALSE = frozenset({"true", "yes"}), frozenset({"false", "no"})
_MAGNITUDE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
# the suffix letters are listed, not matched case-insensitively: re.IGNORECASE would also take the
# Kelvin sign for k, which the scorer does not
_MAG_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([KkMmBbTt])$")
_RANGE_RE = re.compile(r"^(?:from\s+)?(-?[\d.]+)\s*(?:[-–—]|to)\s*(-?[\d.]+)$", re.IGNORECASE)
_HEDGE_RE = re.compile(r"^(?:(?:(?:more|less|greater|fewer)\s+than|approximately|about|around|over|under|nearly"
                       r"|roughly|up\s+to|at\s+least|at\s+most)\s+|[~≈><]\s*)", re.IGNORECASE)
# what the scorer's JSON reading can raise on a cell: a syntax error, or nesting too deep to parse
_JSON_FAILURES = (ValueError, RecursionError, MemoryError)


def is_blank(cell: str) -> bool:
    text = cell.strip().lower()
    return text in _BLANK_TOKENS or text.startswith(_REFUSAL)


def ref_cell(refs: Sequence[str]) -> str:
    """The ref_id cell trbench writes for a list of ids: `['a', 'b']`, none: `is_blank`."""
    return repr(list(refs)) if refs else BLANK


def ref_ids(cell: str | Sequence[str]) -> frozenset[str]:
    """The ids of a ref_id cell (a list of ids is read as the cell `ref_cell` writes for it)."""
    text = (cell if isinstance(cell, str) else ref_cell(cell)).strip()
    if not text:
        return frozenset()
    if text.startswith("["):
        items = _json_list(text)
        if items is not None:
            return frozenset(_item_text(x).strip().lower() for x in items)
    return frozenset({text.lower()})


def ref_overlap(truth: str | Sequence[str], pred: str | Sequence[str]) -> float:
    """Jaccard of the two id sets; both empty: 1, one empty: 0."""
    a, b = ref_ids(truth), ref_ids(pred)
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def unit_matches(truth: str, pred: str) -> bool:
    return truth.strip().lower() == pred.strip().lower()


def normalize_prediction(cell: str) -> str:
    """The scorer's normalization of a predicted answer_value (the truth is never normalized):
    yes/true -> 1, no/false -> 0, thousands commas dropped where a number is left, a leading hedge
    dropped, a magnitude suffix expanded (2B -> 2000000000), a range (80-90, 80 to 90) -> [80,90].
    Raises OverflowError for a magnitude or range bound beyond the float range."""
    s = cell.strip()
    if not s or is_blank(s):
        return s
    if s.lower() in _TRUE:
        return "1"
    if s.lower() in _FALSE:
        return "0"
    s = _without_commas(s)
    hedge = _HEDGE_RE.match(s)
    if hedge:
        s = _without_commas(s[hedge.end():].strip())
    mag = _MAG_RE.match(s)
    if mag:
        return _int_text(float(mag.group(1)) * _MAGNITUDE[mag.group(2).lower()])
    rng = _RANGE_RE.match(s)
    if rng:
        a, b = _number(rng.group(1)), _number(rng.group(2))
        if a is not None and b is not None:
            lo, hi = (a, b) if a <= b else (b, a)
            return f"[{_int_text(lo)},{_int_text(hi)}]"
    return s


def value_matches(truth: str, pred: str) -> bool:
    """answer_value equality as the scorer decides it; the truth must not be blank."""
    p = normalize_prediction(pred)
    t_items, p_items = _listish(truth), _listish(p)
    if t_items is not None:
        if p_items is not None:
            return _lists_match(t_items, p_items)
        # a two-number truth list is a range: one number inside it matches
        if len(t_items) == 2 and _all_numbers(t_items):
            x = _number(p)
            lo, hi = sorted(t_items)
            return x is not None and lo - TOL <= x <= hi + TOL
        return False
    tn, pn = _number(truth), _number(p)
    if tn is not None and pn is not None:
        return math.isclose(tn, pn, rel_tol=TOL, abs_tol=TOL)
    return truth.strip().lower() == p.strip().lower()


# --- helpers --------------------------------------------------------------------------------


def _number(s: str) -> float | None:
    """float()'s reading, as the scorer uses it: `nan`, `inf`, `1_000` and edge spaces included."""
    try:
        return float(s)
    except ValueError:
        return None


def _without_commas(s: str) -> str:
    bare = s.replace(",", "")
    return bare if _number(bare) is not None else s


def _int_text(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)


def _item_text(x: object) -> str:
    return "" if x is None else str(x)


def _json_list(text: str) -> list | None:
    try:
        parsed = json.loads(text.replace("'", '"'))
    except _JSON_FAILURES:
        return None
    return parsed if isinstance(parsed, list) else None


def _listish(cell: str) -> list[float | str] | None:
    """`[a, b]`: JSON (else split on commas), each item a float where float() reads it, else
    lowercased text; `{a, b}`: the sorted set of its stripped, lowercased terms; else None."""
    s = cell.strip()
    if s.startswith("[") and s.endswith("]"):
        items = _json_list(s)
        if items is None:
            items = [t.strip() for t in s[1:-1].split(",")]
        out: list[float | str] = []
        for item in items:
            t = _item_text(item).strip()
            n = _number(t)
            out.append(n if n is not None else t.lower())
        return out
    if s.startswith("{") and s.endswith("}"):
        return sorted({t.strip().lower() for t in s[1:-1].split(",") if t.strip()})
    return None


def _lists_match(a: list[float | str], b: list[float | str]) -> bool:
    """Order-insensitive; all-number lists item by item within the tolerance, others as text."""
    if _all_numbers(a) and _all_numbers(b):
        return len(a) == len(b) and all(math.isclose(x, y, rel_tol=TOL, abs_tol=TOL)
                                        for x, y in zip(sorted(a), sorted(b)))
    return sorted(_item_text(v).strip().lower() for v in a) == sorted(_item_text(v).strip().lower() for v in b)


def _all_numbers(items: list[float | str]) -> TypeGuard[list[float]]:
    return all(isinstance(v, float) for v in items)
