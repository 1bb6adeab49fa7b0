"""What a single-agent run reads of the spec: a small typed object built once from a MatrixSpec
(RunSettings.of), so run/single.py takes what it uses, not the whole spec."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from trbench.config.spec import Backend, MatrixSpec, TtftMode


class RunSettings(BaseModel):
    """A single-agent run: the columns its rows record of how it was measured, its requests and when
    it counts as valid."""

    model_config = ConfigDict(frozen=True)

    provider: str
    backend: Backend
    ttft: TtftMode  # the run's ttft_mode: cold | cached | both
    seed: int | None = None
    max_tokens: int
    requests_per_run: int
    duration_s: float | None = None  # runs bounded by time: prompts are sent until it has passed
    cache_targets: tuple[str, ...]  # per measured prompt, in order: cold, cached or both
    min_ok: int  # ok requests per cache target for a valid run

    @classmethod
    def of(cls, spec: MatrixSpec) -> RunSettings:
        return cls(provider=spec.provider, backend=spec.backend, ttft=spec.ttft, seed=spec.seed,
                   max_tokens=spec.max_tokens, requests_per_run=spec.requests_per_run, duration_s=spec.duration_s,
                   cache_targets=tuple(spec.cache_targets), min_ok=spec.min_ok)
