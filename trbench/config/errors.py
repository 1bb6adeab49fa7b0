"""A spec that cannot run, and the one-line message that says so: the field as the spec wrote it
and the fix. The section models raise _FieldRule for rules across fields; pydantic's errors are
turned into SpecError's line here."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from trbench.config.servers import SERVER_SETTINGS
from trbench.prose import count


class SpecError(ValueError):
    """A spec that cannot run; str() is a one-line message naming the field and the fix."""


class FieldRule(ValueError):
    """A rule across fields, raised with the field the message is about (pydantic places the
    errors of a model validator at the top level)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _section_model(root: type[BaseModel], path: tuple) -> type[BaseModel]:
    """The model class of a nested spec section ('telemetry', 'multi_agent.chimera'...) under root."""
    if path[:1] == ("server",) and len(path) > 1 and path[1] in SERVER_SETTINGS:
        return SERVER_SETTINGS[path[1]]
    model = root
    for part in path:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            break
        inner = [a for a in typing.get_args(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif inner:
            model = inner[0]
        else:
            break
    return model


def _written_at(loc: tuple, flat: dict[str, str]) -> tuple:
    """A field's place as the spec wrote it: without the provider tag pydantic puts after 'server',
    and flat where the spec gave a server field flat."""
    if loc[:1] == ("server",) and len(loc) > 1 and loc[1] in SERVER_SETTINGS:
        loc = loc[:1] + loc[2:]
    if loc[:1] == ("server",) and len(loc) > 1 and loc[1] in flat:
        loc = (flat[loc[1]],) + loc[2:]
    return loc


def format_error(err: ValidationError, root: type[BaseModel], source: str, flat: dict[str, str] | None = None) -> str:
    """SpecError's line for a ValidationError of the model root (MatrixSpec) read from source."""
    # a misspelt field also reads as a missing one: name the misspelling, it is the fix
    e = min(err.errors(), key=lambda x: x["type"] != "extra_forbidden")
    rule = (e.get("ctx") or {}).get("error")
    loc = e["loc"] + tuple(rule.field.split(".")) if isinstance(rule, FieldRule) else e["loc"]
    field = ".".join(str(p) for p in _written_at(loc, flat or {})) or "(top level)"
    kind = e["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(f for f in _section_model(root, e["loc"][:-1]).model_fields if f != "provider")
        fix = f"remove it or fix its spelling (allowed: {allowed})"
    elif kind == "missing":
        fix = "add it"
    elif kind == "string_pattern_mismatch":
        fix = "use letters, digits, '_', '.' and '-' only (at most 64)"
    elif kind == "literal_error":
        fix = "use one of the values above"
    elif kind == "finite_number":
        fix = "use a finite number (not .nan or .inf)"
    else:
        fix = "change the value"
    msg, _, own_fix = e["msg"].removeprefix("Value error, ").partition("; fix: ")  # a validator may name its fix
    fix = own_fix or fix
    if kind == "finite_number":
        msg += f", got {e['input']}"
    extra = f" ({count(len(err.errors()) - 1, 'more error')})" if len(err.errors()) > 1 else ""
    return f"{source}: field '{field}': {msg}; fix: {fix}{extra}"
