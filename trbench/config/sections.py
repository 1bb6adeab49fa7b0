"""The sections of a matrix spec besides the server: the grid swept per model, option sets, the
multi-agent experiment, execution, the outlier rule and telemetry. Each is a strict, frozen model;
the layer that runs a section takes the section, not the whole spec."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trbench.config.servers import unique
from trbench.data.cells import KvCacheType


class _Strict(BaseModel):
    # allow_inf_nan: a NaN passes every range check (each comparison is False), .inf most of them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# the grid's server-setting axes (trbench/engines/tuning.py says how each reaches each server)
SERVER_AXES = ("flash_attention", "kv_cache_type", "batch_size", "ubatch_size", "threads", "slots")


class Grid(_Strict):
    """The settings swept per model; every combination is one matrix cell."""

    num_gpu: list[int] = Field(default=[0], min_length=1, description="GPU layers (Ollama num_gpu, llama.cpp -ngl)")
    num_ctx: list[int] = Field(default=[512], min_length=1, description="context size in tokens")
    temperature: list[float] = Field(default=[0.8], min_length=1, description="sampling temperature")
    # Server settings: left out, the server keeps its own default, and the cell's label, key and hash are
    # as before these axes existed. A change of a server-level one between cells restarts the server.
    flash_attention: list[bool] | None = Field(default=None, min_length=1, description="flash attention on/off "
                                               "(llama.cpp flash_attn, OLLAMA_FLASH_ATTENTION); null: the server's default")
    kv_cache_type: list[KvCacheType] | None = Field(
        default=None, min_length=1, description="KV cache element type of K and V: f16, q8_0 or q4_0 (llama.cpp "
        "cache_type_k/v, OLLAMA_KV_CACHE_TYPE). A quantized V cache needs flash attention: with flash_attention "
        "off llama.cpp quantizes K only, Ollama neither; null: f16")
    batch_size: list[int] | None = Field(default=None, min_length=1, description="logical batch in tokens "
                                         "(llama.cpp n_batch, Ollama num_batch per request); null: the server's default")
    ubatch_size: list[int] | None = Field(default=None, min_length=1, description="physical micro-batch in tokens "
                                          "(llama.cpp n_ubatch; embedded engine only); null: the server's default")
    threads: list[int] | None = Field(default=None, min_length=1, description="CPU threads (llama.cpp n_threads, "
                                      "Ollama num_thread per request); null: server.threads or the server's default")
    slots: list[int] | None = Field(default=None, min_length=1, description="requests the server decodes at once "
                                    "(llama.cpp n_parallel, OLLAMA_NUM_PARALLEL); null: server.slots / "
                                    "server.num_parallel")

    @field_validator("flash_attention", "kv_cache_type")
    @classmethod
    def _distinct(cls, v: list | None) -> list | None:
        return unique(v) if v is not None else v

    @field_validator("batch_size", "ubatch_size")
    @classmethod
    def _batch(cls, v: list[int] | None) -> list[int] | None:
        return _each_within(v, 1, 65_536, "batch sizes must be 1..65536 tokens") if v is not None else v

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: list[int] | None) -> list[int] | None:
        return _each_within(v, 1, 512, "threads must be 1..512") if v is not None else v

    @field_validator("slots")
    @classmethod
    def _slots(cls, v: list[int] | None) -> list[int] | None:
        return _each_within(v, 1, 256, "slots must be 1..256") if v is not None else v

    def server_settings(self) -> list[dict]:
        """Every combination of the server-setting axes the grid gives ([{}] when it gives none)."""
        axes = {k: getattr(self, k) for k in SERVER_AXES if getattr(self, k) is not None}
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    @field_validator("num_gpu")
    @classmethod
    def _gpu_layers(cls, v: list[int]) -> list[int]:
        return _each_within(v, 0, 999, "GPU layers must be 0..999")

    @field_validator("num_ctx")
    @classmethod
    def _ctx(cls, v: list[int]) -> list[int]:
        return _each_within(v, 128, 1_048_576, "context size must be 128..1048576 tokens")

    @field_validator("temperature")
    @classmethod
    def _temp(cls, v: list[float]) -> list[float]:
        return _each_within(v, 0, 2, "temperature must be 0..2")


def _each_within(values: list, low: float, high: float, rule: str) -> list:
    for x in values:
        if x < low or x > high:
            raise ValueError(f"{rule}, got {x}")
    return unique(values)



class OptionSet(_Strict):
    """Per-agent model options; a field left null means the server's own default."""

    num_gpu: int | None = Field(default=None, ge=0, le=999, description="GPU layers")
    num_ctx: int | None = Field(default=None, ge=128, le=1_048_576, description="context size in tokens")
    temperature: float | None = Field(default=None, ge=0, le=2, description="sampling temperature")


# What "server defaults" means on the embedded engine, where every setting must be given:
# Ollama's documented defaults (context 4096, all layers that fit on the GPU) and llama.cpp's 0.8.
EMBEDDED_DEFAULTS = OptionSet(num_gpu=999, num_ctx=4096, temperature=0.8)

Scenario = Literal["baseline_vs_chimera", "chimera_homo", "chimera_hetero"]
SCENARIOS: dict[str, str] = {
    "baseline_vs_chimera": "collector on the server's defaults, insight on the chimera options",
    "chimera_homo": "both agents on the chimera options",
    "chimera_hetero": "collector on the chimera options, insight on the second option set (chimera_alt)",
}


class ContentionRule(_Strict):
    """When an agent running beside another counts as contended, against its own solo run."""

    throughput_drop_pct: float = Field(default=25.0, gt=0, lt=100, description="contended when its concurrent "
                                       "decode tok/s is more than this many per cent below its solo run")
    ttft_factor: float = Field(default=3.0, gt=1, description="or when its concurrent TTFT is more than this many "
                               "times its solo TTFT")

    def describe(self) -> str:
        return (f"an agent is contended when its concurrent decode tok/s is more than {self.throughput_drop_pct:g}% "
                f"below its solo run, or its concurrent TTFT is more than {self.ttft_factor:g}x its solo TTFT; "
                "a run shows contention when any agent is contended")


class MultiAgentSpec(_Strict):
    """The dual-instance experiment: collector on instance 0, insight on instance 1."""

    models: list[str] | None = Field(default=None, description="default: the spec's models")
    scenarios: list[Scenario] = Field(default=["baseline_vs_chimera", "chimera_homo"], min_length=1,
                                      description="; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
    chimera: OptionSet = Field(default=OptionSet(num_gpu=80, num_ctx=2048, temperature=1.0),
                               description="the chimera option set")
    chimera_alt: OptionSet = Field(default=OptionSet(num_gpu=60, num_ctx=1024, temperature=0.6),
                                   description="the second option set (chimera_hetero's insight agent)")
    defaults: OptionSet = Field(default=OptionSet(), description="'server defaults'; null fields: the server's own")
    runs: int = Field(default=3, ge=1, le=1000, description="runs per model and scenario")
    # Two, because the first round meets a cold prompt cache, and a cold prefill samples another
    # answer than the cached path does: its follow-up prompt (the report call) is then new, and
    # run 0 would pay a cold prefill the later runs do not (measured: ~290 ms against ~10 ms).
    warmup_rounds: int = Field(default=2, ge=0, le=100,
                               description="each agent's whole workflow, before run 0 of a scenario and after a reload")
    max_tokens: int = Field(default=128, ge=1, le=131_072, description="generated tokens per request")
    agents: str = Field(default="datasets/agents/tr_agents.yaml", description="agent definitions")
    contention: ContentionRule = ContentionRule()

    @field_validator("scenarios")
    @classmethod
    def _scen(cls, v: list[str]) -> list[str]:
        return unique(v)

    def options(self, scenario: str) -> tuple[OptionSet, OptionSet]:
        """(collector, insight) options of a scenario."""
        return {
            "baseline_vs_chimera": (self.defaults, self.chimera),
            "chimera_homo": (self.chimera, self.chimera),
            "chimera_hetero": (self.chimera, self.chimera_alt),
        }[scenario]


class ExecutionSpec(_Strict):
    """How the single-agent matrix uses the machine."""

    mode: Literal["serial", "parallel"] = Field(
        default="serial", description="serial: one model loaded at a time, unloaded between; "
        "parallel: up to max_parallel models at once, one instance each, each cell timed on its own")
    max_parallel: int = Field(default=2, ge=1, le=16, description="parallel mode: models measured at once")


class OutlierRule(_Strict):
    """|x - median| > k x max(MAD, floor x |median|) within a config group (raw MAD); a flagged run is what
    `rerun_flagged` runs again. The floor is per metric family: TTFT on a busy CPU varies by tens of per
    cent from run to run, decode throughput by a few (trbench/measure/outliers.py; measured by
    bench/outlier_calibration.py)."""

    k: float = Field(default=2.0, gt=0, description="how many max(MAD, floor) a run may be off its config's "
                     "median before it is flagged")
    min_rel_mad: float = Field(default=0.05, ge=0, lt=1, description="floor under MAD on throughput figures (decode "
                               "tok/s, multi-agent speedup), as a share of the median: with 3-5 runs MAD is often "
                               "tiny and would flag noise")
    min_rel_mad_ttft: float = Field(default=0.15, ge=0, lt=1, description="floor under MAD on TTFT figures, as a "
                                    "share of the median")
    min_rel_mad_concurrent: float = Field(default=0.4, ge=0, lt=1, description="floor under MAD on each agent's "
                                          "figures measured while both agents run at once (decode and TTFT), as a "
                                          "share of the median: two servers share the cores there, so a healthy "
                                          "run varies by tens of per cent; the multi-agent speedup keeps the "
                                          "throughput floor")


class TelemetrySpec(_Strict):
    """The sampler beside every run (trbench/measure/sampler.py) and the prices its energy is costed at.

    Cost of a run (trbench/measure/energy.py): price_per_gpu_hour wins when both prices are given, since a
    GPU-hour price is the all-in rent of the hardware, its electricity included, and adding the
    kWh price on top would count the power twice; price_per_kwh alone prices the measured GPU
    energy (owned hardware, where electricity is the marginal cost)."""

    enabled: bool = Field(default=True, description="sample GPU and host while each run is measured")
    interval_s: float = Field(default=0.5, ge=0.01, le=60, description="seconds between samples")
    gpu_indices: list[int] | None = Field(
        default=None, description="NVML indices of the GPUs to sample (NVML numbers GPUs as the driver does, "
        "not as CUDA_VISIBLE_DEVICES); null: every GPU NVML sees")
    price_per_kwh: float | None = Field(default=None, gt=0, description="electricity price per kWh of GPU energy")
    price_per_gpu_hour: float | None = Field(default=None, gt=0, description="price of one GPU for one hour; "
                                             "wins over price_per_kwh when both are given")

    @field_validator("gpu_indices")
    @classmethod
    def _gpus(cls, v: list[int] | None) -> list[int] | None:
        for x in v or []:
            if x < 0:
                raise ValueError(f"GPU index must be >= 0, got {x}")
        return unique(v) if v else v
