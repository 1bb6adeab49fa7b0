"""trbench's lenient reading of WattBot cells (`trbench score --lenient`): more forgiving than the
public scorer (wattbot_rules) where a cell is spelled in a way that scorer reads literally. Where
the two differ, docs/qa-scoring.md lists each difference.

- blank: the same tokens as the scorer, but every cell is read as text, so an empty cell is blank;
- value: both sides normalized (the truth too), numbers read as finite floats;
- unit: a blank unit (`is_blank`, empty) equals an empty one;
- ref: `is_blank`, an empty cell, `[]` and blank items are the empty set; a cell is read as a
  Python literal (else split on commas), so a bare `a, b` is two ids.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable
from typing import TypeGuard

BLANK = "is_blank"
REL_TOL = 1e-3  # ±0.1 % relative
ABS_TOL = 1e-3  # the scorer's absolute fallback: 0 vs 0.0004 still matches

# what the scorer reads as "no answer": these tokens, and its refusal phrase
_BLANK_TOKENS = {"", "na", "n/a", BLANK}
_REFUSAL = "unable to answer with confidence based on the provided documents"

_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}
_MAGNITUDE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_MAG_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([kmbt])$", re.IGNORECASE)
_RANGE_RE = re.compile(r"^(?:from\s+)?(-?[\d.]+)\s*(?:[-–—]|to)\s*(-?[\d.]+)$", re.IGNORECASE)
_HEDGE_RE = re.compile(r"^(?:(?:more|less|greater|fewer)\s+than|approximately|about|around|over|under|nearly"
                       r"|roughly|up\s+to|at\s+least|at\s+most)\s+|^[~≈<>]\s*", re.IGNORECASE)


def is_blank(value: object) -> bool:
    text = _text(value).lower()
    return text in _BLANK_TOKENS or text.startswith(_REFUSAL)


def canon_unit(unit: object) -> str:
    text = _text(unit).lower()
    return "" if is_blank(text) else text  # a truth file writes is_blank where an answer leaves it empty


def unit_matches(truth: object, pred: object) -> bool:
    return canon_unit(truth) == canon_unit(pred)


def canon_refs(ref: object) -> frozenset[str]:
    """A ref_id cell (`['a', 'b']`, `["a"]`, `a`, `a, b`, `is_blank`) or a list as a set of
    lowercased ids; is_blank, an empty cell and an empty list are the empty set."""
    if isinstance(ref, (list, tuple, set, frozenset)):
        items: Iterable[object] = ref
    else:
        text = _text(ref)
        if is_blank(text):
            return frozenset()
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = text.strip("[]").split(",")
        items = parsed if isinstance(parsed, (list, tuple, set)) else [parsed]
    return frozenset(t for t in (_text(i).lower() for i in items) if not is_blank(t))


def normalize_value(raw: object) -> str:
    """The scorer's normalization of an answer_value: True/yes -> 1, False/no -> 0, thousands
    commas dropped, a hedge ("about", "~", "at least") dropped, a magnitude suffix expanded
    (2B -> 2000000000), a range ("80-90", "80 to 90") written as [80,90]. Applied to both sides."""
    s = _text(raw)
    if is_blank(s):
        return s
    if s.lower() in _TRUE:
        return "1"
    if s.lower() in _FALSE:
        return "0"
    s = _drop_commas(s)
    hedge = _HEDGE_RE.match(s)
    if hedge:
        s = _drop_commas(s[hedge.end():].strip())
    mag = _MAG_RE.match(s)
    if mag:
        return _fmt(float(mag.group(1)) * _MAGNITUDE[mag.group(2).lower()])
    rng = _RANGE_RE.match(s)
    if rng and _number(rng.group(1)) is not None and _number(rng.group(2)) is not None:
        lo, hi = sorted((float(rng.group(1)), float(rng.group(2))))
        return f"[{_fmt(lo)},{_fmt(hi)}]"
    return s


def value_matches(truth: object, pred: object) -> bool:
    """answer_value equality as the scorer decides it; the truth must not be blank."""
    t, p = normalize_value(truth), normalize_value(pred)
    t_list, p_list = _listish(t), _listish(p)
    if t_list is not None:
        if p_list is not None:
            return _lists_match(t_list, p_list)
        x = _number(p)
        # a two-number truth is a range: one number inside it (absolute tolerance) matches
        if len(t_list) == 2 and _all_numbers(t_list) and x is not None:
            lo, hi = sorted(t_list)
            return lo - ABS_TOL <= x <= hi + ABS_TOL
        return False
    tn, pn = _number(t), _number(p)
    if tn is not None and pn is not None:
        return math.isclose(tn, pn, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return t.lower() == p.lower()


def ref_overlap(truth: object, pred: object) -> float:
    a, b = canon_refs(truth), canon_refs(pred)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# --- helpers --------------------------------------------------------------------------------


def _text(x: object) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).strip()


def _number(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _drop_commas(s: str) -> str:
    bare = s.replace(",", "")
    return bare if _number(bare) is not None else s


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)


def _listish(s: str) -> list[float | str] | None:
    """`[a, b]`: numbers as floats, text lowercased; `{a, b}`: a sorted set of terms; else None."""
    if s.startswith("[") and s.endswith("]"):
        try:
            parsed = ast.literal_eval(s)
            items = list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]
        except (ValueError, SyntaxError):
            items = s[1:-1].split(",")
        out: list[float | str] = []
        for item in items:
            t = _text(item)
            n = _number(t)
            out.append(n if n is not None else t.lower())
        return out
    if s.startswith("{") and s.endswith("}"):
        return sorted({t.strip().lower() for t in s[1:-1].split(",") if t.strip()})
    return None


def _lists_match(a: list[float | str], b: list[float | str]) -> bool:
    """Order-insensitive; numbers within the tolerance."""
    if _all_numbers(a) and _all_numbers(b):
        return len(a) == len(b) and all(math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)
                                        for x, y in zip(sorted(a), sorted(b)))
    return sorted(_text(v).lower() for v in a) == sorted(_text(v).lower() for v in b)


def _all_numbers(items: list[float | str]) -> TypeGuard[list[float]]:
    return all(isinstance(v, float) for v in items)
