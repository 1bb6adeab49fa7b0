"""What the final state counts of each measured run and step (trbench.tr.outcome reads them): its
id, whether it is valid and why not, and the figures the message names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, field_validator


RUN_COLUMNS = ("run_id", "model", "valid", "n_ok", "n_errors", "invalid_reason", "decode_tps_p50", "error_kinds")
"""The columns of a run row that its outcome holds."""


class RunOutcome(BaseModel):
    """A single-agent run (n_ok, n_errors, decode_tps_p50, error_kinds) or a multi-agent run (speedup,
    contention)."""

    run_id: str
    model: str
    valid: bool
    invalid_reason: str | None = None
    n_ok: int | None = None
    n_errors: int | None = None
    decode_tps_p50: float | None = None
    error_kinds: list[str] = []  # the kinds of its failed requests (out-of-memory, connect, ...)
    speedup: float | None = None
    contention: bool | None = None

    @field_validator("error_kinds", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> Any:
        """A row that never measured (a multi-agent or a not-run row) may hold none."""
        return [] if v is None else v

    @classmethod
    def of_run(cls, row: Mapping[str, Any]) -> RunOutcome:
        """What the final state counts of a single-agent run row."""
        return cls.model_validate({k: row[k] for k in RUN_COLUMNS})

    @classmethod
    def of_multi_run(cls, row: Mapping[str, Any]) -> RunOutcome:
        """What the final state counts of a multi-agent run row."""
        return cls(run_id=row["run_id"], model=row["model"], valid=row["valid"], invalid_reason=row["invalid_reason"],
                   speedup=row.get("speedup"), contention=row.get("contention"))


class StepOutcome(BaseModel):
    """A load step."""

    run_id: str
    valid: bool
    invalid_reason: str | None = None

    @classmethod
    def of_step(cls, row: Mapping[str, Any]) -> StepOutcome:
        return cls(run_id=row["run_id"], valid=row["valid"], invalid_reason=row["invalid_reason"])


class EmbeddingsOutcome(BaseModel):
    """An embeddings step: how many of its requests were answered."""

    run_id: str
    n_ok: int

    @classmethod
    def of_step(cls, row: Mapping[str, Any]) -> EmbeddingsOutcome:
        return cls(run_id=row["run_id"], n_ok=row["n_ok"])


class SuiteOutcome(BaseModel):
    """A quality suite run: its requests and how many of them failed."""

    run_id: str
    requests: int
    errors: int
