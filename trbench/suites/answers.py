"""A model's answer text read as the JSON it was asked for: the whole answer, stripped, may sit in
one Markdown code fence (```json ... ``` or ``` ... ```); prose around the JSON makes it unreadable."""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL)


def parse_json_answer(text: str) -> tuple[object | None, str | None]:
    """(the parsed value, None), or (None, a short reason) when the answer is not one JSON value."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        return None, "empty answer"
    try:
        return json.loads(body), None
    except json.JSONDecodeError as err:
        return None, f"not JSON ({err.msg} at char {err.pos}): {_preview(text)}"


def _preview(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")
