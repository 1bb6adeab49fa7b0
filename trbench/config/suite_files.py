"""Suites as data (prompt and agent YAML files): read, validated, and digested, written once.

The digest (sha256 of the bytes that shape what is sent, 16 hex digits) goes into cell hashes and
the manifest, so that a changed suite never compares as the same cell.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def content_digest(*parts: bytes) -> str:
    return "sha256:" + hashlib.sha256(b"".join(parts)).hexdigest()[:16]


def read_suite(path: Path, model: type[M], error: type[ValueError], field: str, not_found_fix: str,
               example: str, detail_lines: int = 1) -> tuple[M, bytes]:
    """The suite at `path` as `model`, with its raw bytes; `error` with one line naming the spec
    field and the fix when the file is missing or not a valid suite."""
    if not path.is_file():
        raise error(f"spec field '{field}': file {path} not found; fix: {not_found_fix}")
    raw = path.read_bytes()
    try:
        return model.model_validate(yaml.safe_load(raw)), raw
    except (yaml.YAMLError, ValidationError) as err:
        detail = " ".join(str(err).splitlines()[:detail_lines])
        raise error(f"spec field '{field}': {path} is not a valid {model.__name__.lower().replace('suite', ' suite')} "
                    f"({detail}); fix: see {example}") from None
