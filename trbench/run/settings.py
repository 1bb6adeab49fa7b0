"""What the runners read of the spec: small typed objects built once from a MatrixSpec (of()), so
run/single.py and run/multi.py take what they use, not the whole spec."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from trbench.config.sections import ContentionRule
from trbench.config.spec import Backend, MatrixSpec, TtftMode


class _RunIdentity(BaseModel):
    """What every run row records of how it was measured."""

    model_config = ConfigDict(frozen=True)

    provider: str
    backend: Backend
    ttft: TtftMode  # the run's ttft_mode: cold | cached | both
    seed: int | None = None


def _identity(spec: MatrixSpec) -> dict:
    return {"provider": spec.provider, "backend": spec.backend, "ttft": spec.ttft, "seed": spec.seed}


class RunSettings(_RunIdentity):
    """A single-agent run: its requests and when it counts as valid."""

    max_tokens: int
    requests_per_run: int
    cache_targets: tuple[str, ...]  # per measured prompt, in order: cold, cached or both
    min_ok: int  # ok requests per cache target for a valid run

    @classmethod
    def of(cls, spec: MatrixSpec) -> RunSettings:
        return cls(**_identity(spec), max_tokens=spec.max_tokens, requests_per_run=spec.requests_per_run,
                   cache_targets=tuple(spec.cache_targets), min_ok=spec.min_ok)


class MultiRunSettings(_RunIdentity):
    """A multi-agent run: its agents' answer length and when an agent counts as contended."""

    max_tokens: int
    contention: ContentionRule

    @classmethod
    def of(cls, spec: MatrixSpec) -> MultiRunSettings:
        if spec.multi_agent is None:
            raise ValueError("the spec has no multi_agent section")
        return cls(**_identity(spec), max_tokens=spec.multi_agent.max_tokens, contention=spec.multi_agent.contention)
