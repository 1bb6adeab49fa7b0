"""The `load:` section of a spec: many requests in flight at once, swept over concurrency or rate.

Three ways to load a server, exactly one per spec:
  concurrency  closed loop: N streams in flight, each sends its next request when the last returns
  rate         open loop: requests arrive at R per second (gamma gaps: burstiness 1 is Poisson),
               whether or not the server keeps up
  sweep        guidellm's: one stream (synchronous), then as many as max_concurrency (the maximum
               throughput), then `rates` open-loop rates spread evenly between the two rates measured
Each value is a step: `requests` measured requests or `duration_s` seconds of them, after a warm-up
that is sent and stored but left out of every statistic.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trbench.config.embeddings_section import EmbeddingsLoad
from trbench.config.errors import FieldRule
from trbench.config.sections import _Strict, _each_within

StepMode = Literal["concurrency", "rate"]
# field -> (lowest, highest, rule, an example of the fix)
_STEP_RULES = {"concurrency": (1, 1024, "concurrency must be 1..1024 streams", "streams in flight, e.g. [1, 2, 4]"),
               "rate": (0, 10_000, "rate must be 0 < requests/s <= 10000", "requests per second, e.g. [0.5, 1, 2]")}


class Slo(_Strict):
    """Service-level objectives per request; goodput counts the ok requests that meet every one given."""

    ttft_ms: float | None = Field(default=None, gt=0, description="time to first token, client clock")
    tpot_ms: float | None = Field(default=None, gt=0, description="time per output token after the first")
    e2e_ms: float | None = Field(default=None, gt=0, description="whole request, client clock")

    def given(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Sweep(_Strict):
    """guidellm's sweep: synchronous, then maximum throughput, then `rates` rates between them."""

    rates: int = Field(default=3, ge=1, le=50, description="open-loop rates between the two measured ends")
    max_concurrency: int = Field(default=16, ge=2, le=1024, description="streams of the maximum-throughput step")


class LoadStep(_Strict):
    """One step of a load sweep, as the runner is given it (the spec's values, one at a time)."""

    label: str  # c4, r0.5, sync, throughput, sweep-r1.2
    mode: StepMode
    concurrency: int | None = None  # closed loop: streams in flight
    rate: float | None = None  # open loop: requests per second


class LoadSpec(_Strict):
    """Load mode: many requests in flight at once. Exactly one of concurrency (closed loop), rate (open
    loop) or sweep, or only embeddings; each value is a step of `requests` measured requests or `duration_s`
    seconds of them, after a warm-up that is stored but left out of every statistic."""

    concurrency: list[int] | None = Field(default=None, description="closed-loop steps: streams in flight")
    rate: list[float] | None = Field(default=None, description="open-loop steps: requests per second")
    burstiness: float = Field(default=1.0, gt=0, le=100, description="gamma shape of the gaps between arrivals: "
                              "1 is Poisson, below 1 burstier, above 1 more even")
    sweep: Sweep | None = None
    requests: int | None = Field(default=None, ge=1, le=1_000_000, description="measured requests per step")
    duration_s: float | None = Field(default=None, gt=0, le=86_400, description="seconds of measured requests per step")
    warmup_requests: int = Field(default=0, ge=0, le=100_000, description="first requests of each step: sent, "
                                 "stored, left out of every statistic")
    warmup_s: float = Field(default=0.0, ge=0, le=3600, description="requests sent in the first seconds of each "
                            "step: sent, stored, left out of every statistic")
    ramp_up_s: float = Field(default=0.0, ge=0, le=3600, description="closed loop: the streams start evenly spread "
                             "over this time; open loop: the rate rises linearly to its value over it")
    max_inflight: int | None = Field(default=None, ge=1, le=1024, description="open loop: at most this many requests "
                                     "in flight; a later arrival waits (its wait is recorded)")
    max_tokens: int | None = Field(default=None, ge=1, le=131_072, description="per request; default: the spec's")
    exact_output: bool = Field(default=True, description="every output max_tokens long where the server can be "
                               "made to ignore end-of-sequence (llama.cpp, vLLM: ignore_eos), so the streams stay "
                               "in step and two identical steps agree; Ollama cannot: the step counts the requests "
                               "that ended early. false: outputs end where the model stops")
    models: list[str] | None = Field(default=None, description="models to load; default: the spec's models")
    slo: Slo = Slo()
    stop_below_good_pct: float | None = Field(default=None, gt=0, le=100, description="stop a cell's steps after "
                                              "one whose good_pct is below this: the server is over-saturated, so the "
                                              "later (heavier) steps are not run; the step records why")
    stop_queue_growth: float | None = Field(default=None, gt=1, le=1_000_000, description="stop a cell's steps after "
                                            "one whose queue p50 is more than this many times the step before's "
                                            "(counted as at least 1 ms): queueing grows without bound")
    embeddings: EmbeddingsLoad | None = Field(default=None, description="the embeddings workload: a step per "
                                              "batch size (trbench/config/embeddings_section.py)")

    @field_validator("concurrency", "rate")
    @classmethod
    def _steps(cls, v: list | None, info: ValidationInfo) -> list | None:
        if v is None:
            return v
        assert info.field_name is not None  # a field validator's info names its field
        low, high, rule, example = _STEP_RULES[info.field_name]
        if not v:
            raise ValueError(f"{info.field_name} lists no steps; fix: give {example}")
        if any(x == 0 for x in v):  # a rate of 0 sends nothing; _each_within's bounds are inclusive
            raise ValueError(f"{rule}, got 0")
        return _each_within(v, low, high, rule)

    @model_validator(mode="after")
    def _one_mode(self) -> LoadSpec:
        modes = [m for m in ("concurrency", "rate", "sweep") if getattr(self, m) is not None]
        if len(modes) > 1 or not (modes or self.embeddings):
            what = "none" if not modes else " and ".join(modes)
            raise FieldRule("concurrency", f"load needs exactly one of concurrency, rate or sweep (or only "
                            f"embeddings), got {what}; fix: keep one, e.g. concurrency: [1, 2, 4]")
        if modes and (self.requests is None) == (self.duration_s is None):
            raise FieldRule("requests", "a load step ends after `requests` measured requests or `duration_s` "
                            "seconds; fix: give exactly one of them")
        if self.burstiness != 1.0 and self.rate is None and self.sweep is None:
            raise FieldRule("burstiness", "burstiness shapes open-loop arrivals only; fix: remove it, or use rate")
        stops = [f for f in ("stop_below_good_pct", "stop_queue_growth") if getattr(self, f) is not None]
        if stops and not modes:
            raise FieldRule(stops[0], f"{stops[0]} stops a cell's load steps, and this section has none (only "
                            "embeddings); fix: remove it, or add concurrency, rate or sweep")
        if self.max_inflight is not None and self.concurrency is not None:
            raise FieldRule("max_inflight", "max_inflight bounds open-loop steps; closed-loop steps have their "
                            "concurrency in flight; fix: remove it, or use rate")
        return self

    def fixed_steps(self) -> list[LoadStep]:
        """The steps known before anything is measured (a sweep's rates follow from its first two); none
        when the section has only the embeddings workload."""
        if self.concurrency is not None:
            return [LoadStep(label=f"c{n}", mode="concurrency", concurrency=n) for n in self.concurrency]
        if self.rate is not None:
            return [LoadStep(label=f"r{_num(r)}", mode="rate", rate=r) for r in self.rate]
        if self.sweep is None:
            return []
        return [LoadStep(label="sync", mode="concurrency", concurrency=1),
                LoadStep(label="throughput", mode="concurrency", concurrency=self.sweep.max_concurrency)]


def sweep_steps(sweep: Sweep, sync_rps: float | None, max_rps: float | None) -> list[LoadStep]:
    """guidellm's rates: `rates` open-loop steps evenly between the synchronous and the maximum
    request rates measured (both ends excluded: they were the first two steps). None when either
    end measured nothing."""
    if not sync_rps or not max_rps:
        return []
    lo, hi = sorted((sync_rps, max_rps))
    rates = [lo + (hi - lo) * (i + 1) / (sweep.rates + 1) for i in range(sweep.rates)]
    return [LoadStep(label=f"sweep-r{_num(round(r, 3))}", mode="rate", rate=round(r, 3)) for r in rates]


def _num(x: float) -> str:
    return f"{x:g}"
