"""trbench's grammar: every generated sentence states its counts with the right plural ("1 run",
"2 runs"), joins its lists as a sentence does ("a, b and c") and states a factor as measured ("6.0x";
"an order of magnitude" only from 10x on).

Its nouns and verbs are trbench's own small vocabulary (run, model, cell, regression, is,
has, fits ...), so English's regular rules are written here: inflect, which knows every irregular
noun, takes 3.5 s to import (its type-checking decorators), a third of a short TR's whole fixed cost.

It imports nothing of trbench, so every layer writes its prose with it: the report's findings,
methodology and templates' filters, the CLI's lines and the spec's error messages."""

from __future__ import annotations

from collections.abc import Iterable

_PLURAL_VERBS = {"is": "are", "was": "were", "has": "have", "does": "do"}
# a factor is "an order of magnitude" from 10x on; below it the sentence states the factor itself
ORDER_OF_MAGNITUDE = 10.0


def noun(word: str, n: int | float) -> str:
    """The noun for n of it: noun("run", 1) == "run", noun("run", 2) == "runs"."""
    if n == 1:
        return word
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


def verb(word: str, n: int | float) -> str:
    """The verb (third person present or past) agreeing with n subjects: verb("is", 2) == "are"."""
    if n == 1:
        return word
    if word in _PLURAL_VERBS:
        return _PLURAL_VERBS[word]
    if word.endswith(("sses", "shes", "ches", "xes", "oes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def count(n: int, word: str) -> str:
    """n and its noun: count(1, 'run') == "1 run", count(0, 'failed request') == "0 failed requests"."""
    return f"{n} {noun(word, n)}"


def join(items: Iterable[str], conj: str = "and") -> str:
    """A list as a sentence writes it: "a", "a and b", "a, b and c" (no serial comma)."""
    words = [str(i) for i in items]
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conj} {words[-1]}"


def fold(lo: float, hi: float | None = None) -> str:
    """How many times one figure is another, as measured: "6.0x", "5.8-6.1x"; "an order of magnitude" is
    added only where every factor is at least ORDER_OF_MAGNITUDE."""
    hi = lo if hi is None else hi
    span = f"{lo:.1f}x" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}-{hi:.1f}x"
    return f"{span} (an order of magnitude)" if lo >= ORDER_OF_MAGNITUDE else span
