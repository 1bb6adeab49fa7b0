"""The questions a spec asks of its TR (spec `questions:`), each about one figure the TR's summary
holds, answered by the report from the data or with why the data cannot decide:

    questions:
      - ask: Does SmolLM2 decode faster than Gemma at both context sizes?
        metric: decode_tps          # a figure id of summary.json (docs/summary.md)
        across: models              # compare the models at each config (or: configs, per model)

A spec without questions gets the defaults of the workloads it measures (trbench.report.questions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trbench.config.errors import FieldRule

SummaryWorkload = Literal["single_agent", "multi_agent", "suites", "load", "embeddings", "synthetic"]
Better = Literal["higher", "lower"]
QuestionStatistic = Literal["median", "mean", "p90", "p95", "p99", "min", "max", "value"]

# the figures a question may name: summary.json's metric ids, per workload, with which way is better
# (a figure with no better way, such as output tokens, is not askable: it has no leader)
ASKABLE: dict[str, dict[SummaryWorkload, Better]] = {
    "decode_tps": {"single_agent": "higher", "synthetic": "higher"},
    "prefill_tps": {"single_agent": "higher", "load": "higher", "synthetic": "higher"},
    "prefill_tps_client": {"single_agent": "higher", "load": "higher"},
    "ttft_cold_ms": {"single_agent": "lower"},
    "ttft_cached_ms": {"single_agent": "lower"},
    "e2e_ms": {"single_agent": "lower", "load": "lower"},
    "ttfat_cold_ms": {"single_agent": "lower"},
    "ttfat_cached_ms": {"single_agent": "lower"},
    "decode_tps_reasoning": {"single_agent": "higher"},
    "decode_tps_answer": {"single_agent": "higher"},
    "cv_pct": {"single_agent": "lower"},
    "tokens_per_j": {"single_agent": "higher"},
    "energy_j": {"single_agent": "lower"},
    "tokens_per_dollar": {"single_agent": "higher"},
    "gpu_mem_used_mib": {"single_agent": "lower"},
    "speedup": {"multi_agent": "higher"},
    "efficiency_pct": {"multi_agent": "higher"},
    "concurrent_wall_s": {"multi_agent": "lower"},
    "sequential_wall_s": {"multi_agent": "lower"},
    "delta_decode_tps": {"multi_agent": "higher"},
    "delta_ttft_ms": {"multi_agent": "lower"},
    "request_rps": {"load": "higher"},
    "output_tps": {"load": "higher"},
    "goodput_rps": {"load": "higher"},
    "good_pct": {"load": "higher"},
    "error_rate_pct": {"load": "lower"},
    "saturation_rps": {"load": "higher"},
    "queue_ms": {"load": "lower"},
    "itl_ms": {"load": "lower"},
    "ttft_ms": {"load": "lower"},
    "tpot_ms": {"load": "lower"},
    "prefill_ms": {"load": "lower"},
    "batched_prefill_wait_ms": {"load": "lower"},
    "texts_per_s": {"embeddings": "higher"},
    "tokens_per_s": {"embeddings": "higher"},
    "latency_ms": {"embeddings": "lower", "suites": "lower"},
    "within_slo_pct": {"embeddings": "higher"},
    "json_parse_rate": {"suites": "higher"},
    "schema_valid_rate": {"suites": "higher"},
    "route_accuracy": {"suites": "higher"},
    "sane_rate": {"suites": "higher"},
    "qa_overall": {"suites": "higher"},
    "value_accuracy": {"suites": "higher"},
    "ref_overlap": {"suites": "higher"},
    "na_recall": {"suites": "higher"},
}

# the workload a question means when it names none, for a figure that was one workload's alone before
# another workload had it: a spec written then still asks what it asked
DEFAULT_OWNER: dict[str, SummaryWorkload] = {"decode_tps": "single_agent"}


class Question(BaseModel):
    """One question of the spec: which figure it is about, and what is compared."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ask: str = Field(min_length=1, max_length=300, description="the question as the report prints it")
    metric: str = Field(description="the figure it is about: a metric id of summary.json, e.g. decode_tps, "
                        "ttft_cold_ms, efficiency_pct, goodput_rps, qa_overall (docs/summary.md)")
    workload: SummaryWorkload | None = Field(default=None, description="the workload whose figure it is; null: the "
                                             "only workload with that metric id (needed for e2e_ms, latency_ms and "
                                             "prefill_tps), or single_agent for decode_tps")
    across: Literal["models", "configs"] = Field(default="models", description="models: which model leads at each "
                                                 "config; configs: which config leads for each model")
    statistic: QuestionStatistic | None = Field(default=None, description="which statistic of the figure; null: "
                                                "its median where the report gives one, else its single value")
    better: Better | None = Field(default=None, description="which way is better; null: the figure's own "
                                  "(higher for rates and scores, lower for times)")

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in ASKABLE:
            raise ValueError(f"{v!r} is not a figure a question can ask about; use one of {sorted(ASKABLE)}")
        return v

    @model_validator(mode="after")
    def _workload(self) -> Question:
        owners = ASKABLE[self.metric]
        if self.workload is None and len(owners) > 1 and self.metric not in DEFAULT_OWNER:
            raise FieldRule("workload", f"{self.metric} is a figure of {' and '.join(owners)}: name one as workload")
        if self.workload is not None and self.workload not in owners:
            raise FieldRule("workload", f"{self.metric} is not a figure of {self.workload}; it is one of "
                            f"{' and '.join(owners)}")
        return self

    @property
    def of_workload(self) -> SummaryWorkload:
        if self.workload is not None:
            return self.workload
        return DEFAULT_OWNER.get(self.metric, next(iter(ASKABLE[self.metric])))

    @property
    def better_way(self) -> Better:
        return self.better or ASKABLE[self.metric][self.of_workload]
