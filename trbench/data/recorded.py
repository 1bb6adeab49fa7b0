"""The base of what a TR run records as JSON (the manifest and what it holds): declared fields, read
leniently, written back key for key.

A record keeps exactly the keys it was given: `recorded()` dumps the fields that were set (a key
the writer left out stays out) and any key it does not declare, so the JSON, and the manifest's
digest over it, are what the dict it replaced gave. Reading a file written by another version
(`lenient`) never fails: a key whose value no longer validates is dropped (the field takes its
default), an unknown key is kept."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

_MAX_DROPS = 1000  # a file with more broken values than this reads as empty


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Remove the deepest part of `data` that `loc` names (a union member's name in the path is not a
    key: the value above it goes); False when nothing could be removed."""
    parent: Any = None
    key: int | str | None = None
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, key, node = node, part, node[part]
        else:
            break
    if parent is None or key is None:
        return False
    del parent[key]  # type: ignore[arg-type]
    return True


def _copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


class Recorded(BaseModel):
    """A record as written to JSON: unknown keys kept, unset fields left out of the dump."""

    model_config = ConfigDict(extra="allow")

    def recorded(self) -> dict[str, Any]:
        """The record as its JSON holds it: the keys it was made or read with, no defaults added."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def lenient(cls, raw: object) -> Self:
        """A record read from a file of any version: what does not validate is left out (see the module doc)."""
        if not isinstance(raw, dict):
            return cls()
        data = _copy(raw)
        for _ in range(_MAX_DROPS):
            try:
                return cls.model_validate(data)
            except ValidationError as err:
                if not any(_drop(data, e["loc"]) for e in err.errors()):
                    break
        return cls()
