"""The TR matrix spec: what a Technical Report run measures, validated before anything starts.

A bad spec fails with SpecError, whose message is one line naming the field and the fix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from trbench.config.servers import FLAT_FIELDS, SERVER_SETTINGS, EmbeddedServer, Provider, ServerSettings, gather_server, unique
from trbench.data.cells import Cell

Backend = Literal["openai", "ollama"]
# What a TR's TTFT measures: a cold prefill (unique prefix: nothing cached), a cached one (the same
# prompt sent just before) or both, each measured request of a run once per state.
TtftMode = Literal["cold", "cached", "both"]

# A tr_id names a folder under output_dir: one safe path component (no '/', no leading '.' or '-')
TR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SpecError(ValueError):
    """A spec that cannot run; str() is a one-line message naming the field and the fix."""


class _FieldRule(ValueError):
    """A rule across fields, raised with the field the message is about (pydantic places the
    errors of a model validator at the top level)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class _Strict(BaseModel):
    # allow_inf_nan: a NaN passes every range check (each comparison is False), .inf most of them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Grid(_Strict):
    """The settings swept per model; every combination is one matrix cell."""

    num_gpu: list[int] = Field(default=[0], min_length=1, description="GPU layers (Ollama num_gpu, llama.cpp -ngl)")
    num_ctx: list[int] = Field(default=[512], min_length=1, description="context size in tokens")
    temperature: list[float] = Field(default=[0.8], min_length=1)

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


_unique = unique


class OptionSet(_Strict):
    """Per-agent model options; a field left null means the server's own default."""

    num_gpu: int | None = Field(default=None, ge=0, le=999)
    num_ctx: int | None = Field(default=None, ge=128, le=1_048_576)
    temperature: float | None = Field(default=None, ge=0, le=2)


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

    throughput_drop_pct: float = Field(default=25.0, gt=0, lt=100)
    ttft_factor: float = Field(default=3.0, gt=1)

    def describe(self) -> str:
        return (f"an agent is contended when its concurrent decode tok/s is more than {self.throughput_drop_pct:g}% "
                f"below its solo run, or its concurrent TTFT is more than {self.ttft_factor:g}x its solo TTFT; "
                "a run shows contention when any agent is contended")


class MultiAgentSpec(_Strict):
    """Seed 003's dual-instance experiment: collector on instance 0, insight on instance 1."""

    models: list[str] | None = Field(default=None, description="default: the spec's models")
    scenarios: list[Scenario] = Field(default=["baseline_vs_chimera", "chimera_homo"], min_length=1)
    chimera: OptionSet = OptionSet(num_gpu=80, num_ctx=2048, temperature=1.0)
    chimera_alt: OptionSet = OptionSet(num_gpu=60, num_ctx=1024, temperature=0.6)
    defaults: OptionSet = Field(default=OptionSet(), description="'server defaults'; null fields: the server's own")
    runs: int = Field(default=3, ge=1, le=1000)
    # Two, because the first round meets a cold prompt cache, and a cold prefill samples another
    # answer than the cached path does: its follow-up prompt (the report call) is then new, and
    # run 0 would pay a cold prefill the later runs do not (measured: ~290 ms against ~10 ms).
    warmup_rounds: int = Field(default=2, ge=0, le=100,
                               description="each agent's whole workflow, before run 0 of a scenario and after a reload")
    max_tokens: int = Field(default=128, ge=1, le=131_072)
    agents: str = "datasets/agents/tr_agents.yaml"
    contention: ContentionRule = ContentionRule()

    @field_validator("scenarios")
    @classmethod
    def _scen(cls, v: list[str]) -> list[str]:
        return _unique(v)

    def options(self, scenario: str) -> tuple[OptionSet, OptionSet]:
        """(collector, insight) options of a scenario."""
        return {
            "baseline_vs_chimera": (self.defaults, self.chimera),
            "chimera_homo": (self.chimera, self.chimera),
            "chimera_hetero": (self.chimera, self.chimera_alt),
        }[scenario]


class ExecutionSpec(_Strict):
    """How the single-agent matrix uses the machine (seed 000)."""

    mode: Literal["serial", "parallel"] = Field(
        default="serial", description="serial: one model loaded at a time, unloaded between; "
        "parallel: up to max_parallel models at once, one instance each, each cell timed on its own")
    max_parallel: int = Field(default=2, ge=1, le=16)


class OutlierRule(_Strict):
    """|x - median| > k x max(MAD, min_rel_mad x |median|) within a config group (raw MAD)."""

    k: float = Field(default=2.0, gt=0)
    min_rel_mad: float = Field(default=0.05, ge=0, lt=1, description="floor under MAD, as a share of the median: "
                               "with 3-5 runs MAD is often tiny and would flag noise (see trbench/outliers.py)")


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
        return _unique(v) if v else v


class MatrixSpec(_Strict):
    tr_id: str = Field(pattern=TR_ID_PATTERN)
    title: str = ""
    objective: str = ""
    provider: Provider = "embedded"
    backend: Backend = "openai"
    server: ServerSettings = Field(default_factory=EmbeddedServer, description="the provider's own settings "
                                   "(trbench/config/servers.py); kind follows `provider`")
    models: list[str] = Field(min_length=1)
    baseline_model: str | None = None
    grid: Grid = Grid()
    runs: int = Field(default=3, ge=1, le=1000)
    requests_per_run: int = Field(default=3, ge=1, le=10_000)
    warmup_requests: int = Field(default=1, ge=0, le=100)
    min_ok_requests: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=128, ge=1, le=131_072)
    ttft: TtftMode = Field(default="both", description="cold: every measured prompt starts with a unique prefix, so "
                           "nothing is served from the KV cache; cached: each measured prompt is sent once just before "
                           "(a 1-token warm-up, stored, not counted); both: each prompt cold, then again cached")
    prompts: str = "datasets/prompts/single_agent.yaml"
    timeout_s: float = Field(default=300.0, gt=0, description="per request, the whole of it")
    stall_timeout_s: float = Field(default=60.0, gt=0, description="a request whose server sends no byte this "
                                   "long (waiting for the first one included) is cut: error kind 'stall'")
    load_timeout_s: float = Field(default=300.0, gt=0, description="per server (re)load, start or unload")
    seed: int | None = None
    output_dir: str = "outputs"
    single_agent: bool = Field(default=True, description="run the single-agent matrix")
    outliers: OutlierRule = OutlierRule()
    baseline_tr_id: str | None = Field(default=None, pattern=TR_ID_PATTERN, description="a stored TR run (same output_dir) to check "
                                       "this one against for regressions, cell by cell")
    regression_threshold_pct: float = Field(default=10.0, gt=0, lt=1000)
    oom_fallback: list[OptionSet] = Field(
        default_factory=list, description="rungs tried in order when a cell runs out of memory: lower num_gpu, then num_ctx")
    execution: ExecutionSpec = ExecutionSpec()
    telemetry: TelemetrySpec = TelemetrySpec()
    multi_agent: MultiAgentSpec | None = None

    # which server fields a spec gave flat at the top level (the earlier layout): messages name them so
    _flat: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_server(cls, data: Any) -> Any:
        return gather_server(data)[0] if isinstance(data, dict) else data

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        for m in v:
            if not m.strip():
                raise ValueError("model names must not be empty")
        return _unique(v)

    @model_validator(mode="after")
    def _cross_field(self) -> MatrixSpec:
        if self.baseline_model is not None and self.baseline_model not in self.models:
            raise _FieldRule("baseline_model", f"{self.baseline_model!r} is not one of models {self.models}; "
                             "fix: name one of models, or remove it (the first model is the baseline)")
        if self.min_ok_requests is not None and self.min_ok_requests > self.requests_per_run:
            raise _FieldRule("min_ok_requests", f"min_ok_requests ({self.min_ok_requests}) exceeds requests_per_run "
                             f"({self.requests_per_run}); fix: lower min_ok_requests or raise requests_per_run")
        if self.provider == "external" and not self.server.urls:
            raise _FieldRule("server.urls", "provider 'external' needs urls: the base URLs of the running servers; "
                             "fix: list them, e.g. server: {urls: ['http://127.0.0.1:8080']}")
        ma = self.multi_agent
        if ma and ma.models and (stray := [m for m in ma.models if m not in self.models]):
            raise _FieldRule("multi_agent.models", f"{stray} are not in models {self.models} (preflight checks "
                             "those); fix: add them to models, or remove them here")
        for i, rung in enumerate(self.oom_fallback):
            if rung.num_gpu is None and rung.num_ctx is None:
                raise _FieldRule(f"oom_fallback.{i}", f"oom_fallback[{i}] lowers nothing; fix: give num_gpu and/or num_ctx")
        if not self.single_agent and ma is None:
            raise _FieldRule("single_agent", "single_agent is false and there is no multi_agent section: nothing to "
                             "run; fix: set single_agent: true, or add a multi_agent section")
        return self

    # --- derived -------------------------------------------------------------------------

    @property
    def remote_bind(self) -> bool:
        """Whether the servers trbench starts listen beyond this machine (only the embedded engine
        takes the host: the Ollama providers always bind 127.0.0.1)."""
        return isinstance(self.server, EmbeddedServer) and self.server.remote_bind

    def field_name(self, server_field: str) -> str:
        """Where the spec wrote a server field: flat at the top level (earlier specs) or in `server:`."""
        return self._flat.get(server_field) or f"server.{server_field}"

    @property
    def baseline(self) -> str:
        return self.baseline_model or self.models[0]

    @property
    def instance_ports(self) -> list[int]:
        return self.server.instance_ports() if hasattr(self.server, "instance_ports") else []

    @property
    def instance_count(self) -> int:
        """Instances the spec needs: two for the multi-agent runs, max_parallel in parallel mode."""
        parallel = min(self.execution.max_parallel, len(self.models)) if self.execution.mode == "parallel" else 1
        return max(parallel, 2 if self.multi_agent else 1)

    @property
    def multi_agent_models(self) -> list[str]:
        return (self.multi_agent.models or self.models) if self.multi_agent else []

    @property
    def min_ok(self) -> int:
        """Ok measured requests a run needs, per cache state it measures."""
        return self.min_ok_requests or self.requests_per_run

    @property
    def cache_targets(self) -> list[str]:
        """The cache states each measured prompt of a run is sent in, in order."""
        return ["cold", "cached"] if self.ttft == "both" else [self.ttft]

    def cells(self) -> list[Cell]:
        """Cells ordered so that server reloads are fewest: by model, then GPU layers, then context."""
        return [
            Cell(model=m, num_gpu=g, num_ctx=c, temperature=t)
            for m, g, c, t in itertools.product(
                self.models, self.grid.num_gpu, self.grid.num_ctx, self.grid.temperature
            )
        ]

    def resolve_options(self, opts: OptionSet) -> OptionSet:
        """Options as sent: on the embedded engine null fields become its stated defaults."""
        if self.provider != "embedded":
            return opts
        return OptionSet(**{k: v if v is not None else getattr(EMBEDDED_DEFAULTS, k) for k, v in opts.model_dump().items()})

    def cell_hash(self, cell: Cell, prompts_digest: str) -> str:
        """Content hash of everything that shapes one cell's measurement (not its run count),
        so the same cell in two TR runs can be compared."""
        payload = {
            "cell": cell.model_dump(),
            "backend": self.backend,
            "provider": self.provider,
            "max_tokens": self.max_tokens,
            "ttft": self.ttft,
            "prompts": prompts_digest,
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def with_overrides(self, **overrides: Any) -> MatrixSpec:
        """A copy with top-level fields replaced (None means keep), validated again."""
        data = self.model_dump()
        for key, value in overrides.items():
            if value is not None and key in FLAT_FIELDS:  # e.g. the flow's `ports`: into the server section
                data["server"][FLAT_FIELDS[key]] = value
            elif value is not None:
                data[key] = value
        if overrides.get("models") and data.get("baseline_model") not in overrides["models"]:
            data["baseline_model"] = None  # the first of the chosen models becomes the baseline
        spec = _validate(data, source=f"spec {self.tr_id} with overrides")
        spec._flat = dict(self._flat)
        return spec


def _section_model(path: tuple) -> type[BaseModel]:
    """The model class of a nested spec section ('telemetry', 'multi_agent.chimera'...)."""
    if path[:1] == ("server",) and len(path) > 1 and path[1] in SERVER_SETTINGS:
        return SERVER_SETTINGS[path[1]]
    model: type[BaseModel] = MatrixSpec
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


def _format_error(err: ValidationError, source: str, flat: dict[str, str] | None = None) -> str:
    # a misspelt field also reads as a missing one: name the misspelling, it is the fix
    e = min(err.errors(), key=lambda x: x["type"] != "extra_forbidden")
    rule = (e.get("ctx") or {}).get("error")
    loc = e["loc"] + tuple(rule.field.split(".")) if isinstance(rule, _FieldRule) else e["loc"]
    field = ".".join(str(p) for p in _written_at(loc, flat or {})) or "(top level)"
    kind = e["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(f for f in _section_model(e["loc"][:-1]).model_fields if f != "provider")
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
    extra = f" ({len(err.errors()) - 1} more error(s))" if len(err.errors()) > 1 else ""
    return f"{source}: field '{field}': {msg}; fix: {fix}{extra}"


def _validate(data: Any, source: str) -> MatrixSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: the spec must be a YAML mapping of fields, got {type(data).__name__}; "
                        "fix: write one `field: value` per line, as in deployments/quickstart.yaml")
    if "prompt_cache" in data:
        raise SpecError(f"{source}: field 'prompt_cache' was replaced by 'ttft'; fix: write ttft: cached (was allow), "
                        "ttft: cold (was defeat) or ttft: both")
    try:
        data, flat = gather_server(data)
    except ValueError as err:
        raise SpecError(f"{source}: {err}") from None
    try:
        spec = MatrixSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_error(err, source, flat)) from None
    spec._flat = flat
    return spec


def parse_spec(data: Any, source: str = "spec") -> MatrixSpec:
    return _validate(data, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_yaml(p: Path) -> Any:
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise SpecError(f"spec {p}: cannot read the file ({err.strerror}); fix: check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise SpecError(f"spec {p}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); "
                        "fix: save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or getattr(err, "reason", None)
        why = f" ({' '.join(str(problem).split())})" if problem else ""
        fix = "keep one of them" if "appears twice" in why else "check indentation and quoting"
        raise SpecError(f"spec {p}: not valid YAML{where}{why}; fix: {fix}") from None
    except RecursionError:
        raise SpecError(f"spec {p}: not valid YAML (nested too deeply); fix: check the structure") from None
    if data is None:
        raise SpecError(f"spec {p}: the file is empty; fix: give at least tr_id and models, "
                        "see deployments/quickstart.yaml")
    return data


def load_spec(path: str | Path) -> MatrixSpec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec {p}: file not found; fix: give the path of a YAML spec, e.g. deployments/quickstart.yaml")
    return _validate(_read_yaml(p), f"spec {p}")
