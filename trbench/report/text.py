"""The report's grammar: every generated sentence states its counts with the right plural ("1 run",
"2 runs"), joins its lists as a sentence does ("a, b and c") and states a factor as measured ("6.0x";
"an order of magnitude" only from 10x on). inflect does the English.

It imports nothing of the report, so every report module (findings, load findings, methodology, the
templates' filters) writes its prose with it."""

from __future__ import annotations

from collections.abc import Iterable

import inflect

_EN = inflect.engine()
# a factor is "an order of magnitude" from 10x on; below it the sentence states the factor itself
ORDER_OF_MAGNITUDE = 10.0


def noun(word: str, n: int | float) -> str:
    """The noun for n of it: noun("run", 1) == "run", noun("run", 2) == "runs"."""
    return _EN.plural_noun(word, 1 if n == 1 else 2)


def verb(word: str, n: int | float) -> str:
    """The verb (third person present or past) agreeing with n subjects: verb("is", 2) == "are"."""
    return word if n == 1 else _EN.plural_verb(word, 2)


def count(n: int, word: str) -> str:
    """n and its noun: count(1, "run") == "1 run", count(0, "failed request") == "0 failed requests"."""
    return f"{n} {noun(word, n)}"


def join(items: Iterable[str], conj: str = "and") -> str:
    """A list as a sentence writes it: "a", "a and b", "a, b and c" (no serial comma)."""
    words = [str(i) for i in items]
    return _EN.join(words, conj=conj, final_sep="") if words else ""


def fold(lo: float, hi: float | None = None) -> str:
    """How many times one figure is another, as measured: "6.0x", "5.8-6.1x"; "an order of magnitude" is
    added only where every factor is at least ORDER_OF_MAGNITUDE."""
    hi = lo if hi is None else hi
    span = f"{lo:.1f}x" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}-{hi:.1f}x"
    return f"{span} (an order of magnitude)" if lo >= ORDER_OF_MAGNITUDE else span
