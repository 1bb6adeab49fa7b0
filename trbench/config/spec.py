"""The TR matrix spec: what a Technical Report run measures, validated before anything starts.

A bad spec fails with SpecError, whose message is one line naming the field and the fix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from trbench.config.errors import FieldRule, SpecError, format_error
from trbench.config.load_section import LoadSpec
from trbench.config.multi_turn_section import MultiTurnSpec
from trbench.config.questions_section import Question
from trbench.config.synthetic_section import SyntheticSpec
from trbench.config.sections import (
    EMBEDDED_DEFAULTS,
    SCENARIOS,
    ContentionRule,
    ExecutionSpec,
    Grid,
    MultiAgentSpec,
    OptionSet,
    SERVER_AXES,
    OutlierRule,
    Scenario,
    TelemetrySpec,
    _Strict,
)
from trbench.config.servers import FLAT_FIELDS, EmbeddedServer, ExternalServer, Provider, ServerSettings, gather_server, unique
from trbench.config.spec_file import read_yaml
from trbench.config.suites_section import QA_MIN_CTX, SuitesSpec
from trbench.data import remote
from trbench.data.cells import DEFAULT_HARNESS, Cell, Harness

# the names callers import from here (the sections, the error and the cell live in their own modules)
__all__ = ["Cell", "ContentionRule", "EMBEDDED_DEFAULTS", "ExecutionSpec", "Grid", "MatrixSpec", "MultiAgentSpec",
           "OptionSet", "OutlierRule", "SCENARIOS", "Scenario", "SpecError", "TelemetrySpec", "load_spec", "parse_spec"]

Backend = Literal["openai", "ollama"]
# Who sends the requests: trbench's Python client, or an external runner (docs/runner-contract.md)
# What a TR's TTFT measures: a cold prefill (unique prefix: nothing cached), a cached one (the same
# prompt sent just before) or both, each measured request of a run once per state.
TtftMode = Literal["cold", "cached", "both"]

# runs end after this many measured requests unless the spec bounds them by duration_s
DEFAULT_REQUESTS_PER_RUN = 3

# the tr_ids of mock-provider TRs, and only theirs (MatrixSpec._keep_mock_apart)
MOCK_TR_PREFIX = "mock"

# A tr_id names a folder under output_dir: one safe path component (no '/', no leading '.' or '-')
TR_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class MatrixSpec(_Strict):
    """What a TR run measures: the models, the servers, the settings swept, and the workloads."""

    tr_id: str = Field(pattern=TR_ID_PATTERN, description="name of the TR run and of its folder under output_dir; "
                       "the same tr_id resumes")
    title: str = Field(default="", description="name of the TR run, for the report")
    objective: str = Field(default="", description="purpose of the TR run, for the report")
    provider: Provider = Field(default="embedded", description="who starts the servers: embedded (llama.cpp via "
                               "xllamacpp, bundled models), external (servers you run, at server.urls), ollama-docker "
                               "(ollama/ollama containers), ollama-process (`ollama serve` per port), mock (canned "
                               "answers: tests the harness, never a model)")
    backend: Backend = Field(default="openai", description="wire protocol: openai (SSE /v1/chat/completions) or "
                             "ollama (NDJSON /api/chat)")
    server: ServerSettings = Field(default_factory=EmbeddedServer, description="the provider's own settings "
                                   "(trbench/config/servers.py); kind follows `provider`")
    models: list[str] = Field(min_length=1, description="Ollama-style model names, e.g. smollm2:135m")
    baseline_model: str | None = Field(default=None, description="the model results are also shown as % of; "
                                       "null: the first of models")
    grid: Grid = Grid()
    runs: int = Field(default=3, ge=1, le=1000, description="runs per cell")
    requests_per_run: int = Field(default=DEFAULT_REQUESTS_PER_RUN, ge=1, le=10_000, description="measured requests "
                                  "per run, per cache state (ttft)")
    duration_s: float | None = Field(default=None, gt=0, le=86_400, description="bound each run by time instead of "
                                     "requests_per_run: after its warm-ups it sends prompts (each in every ttft cache "
                                     "state) until this many seconds have passed, and records how many it sent")
    warmup_requests: int = Field(default=1, ge=0, le=100, description="requests per cell after each server load: "
                                 "stored with is_warmup, left out of every statistic")
    min_ok_requests: int | None = Field(default=None, ge=1, description="ok measured requests (per cache state) a run "
                                        "needs to be valid; null: requests_per_run (1 for runs bounded by duration_s)")
    max_tokens: int = Field(default=128, ge=1, le=131_072, description="generated tokens per request (Ollama "
                            "num_predict)")
    ttft: TtftMode = Field(default="both", description="cold: every measured prompt starts with a unique prefix, so "
                           "nothing is served from the KV cache; cached: each measured prompt is sent once just before "
                           "(a 1-token warm-up, stored, not counted); both: each prompt cold, then again cached. "
                           "Each request records its cache state from the server's own counts; TTFT is reported per "
                           "state, never pooled (replaces prompt_cache)")
    prompts: str = Field(default="datasets/prompts/single_agent.yaml", description="prompt suite of the "
                         "single-agent matrix")
    timeout_s: float = Field(default=300.0, gt=0, description="per request, the whole of it")
    stall_timeout_s: float = Field(default=60.0, gt=0, description="a request whose server sends no byte this "
                                   "long (waiting for the first one included) is cut: error kind 'stall'")
    load_timeout_s: float = Field(default=300.0, gt=0, description="per server (re)load, start or unload")
    seed: int | None = Field(default=None, description="sampling seed sent with every request; null: none")
    output_dir: str = Field(default="outputs", description="where each TR run's folder (<tr_id>/) is written: a "
                            "folder, or a URL of object storage (s3://bucket/prefix, gs://, az://, file://; "
                            "docs/object-storage.md), credentials from the environment, never in the URL")
    single_agent: bool = Field(default=True, description="run the single-agent matrix")
    harness: list[Harness] = Field(default=["python"], min_length=1, description="who sends the requests: trbench's "
                                   "Python client, or the Rust runner (runners/rust, docs/runner-contract.md); "
                                   "both: every run of every cell once per harness, interleaved on the same server. "
                                   "A spec asking for a runner that is not built fails validation")
    outliers: OutlierRule = OutlierRule()
    baseline_tr_id: str | None = Field(default=None, pattern=TR_ID_PATTERN, description="a stored TR run (same output_dir) to check "
                                       "this one against for regressions, cell by cell")
    regression_threshold_pct: float = Field(default=10.0, gt=0, lt=1000, description="a cell more than this many "
                                            "per cent worse than in baseline_tr_id is a regression")
    oom_fallback: list[OptionSet] = Field(
        default_factory=list, description="rungs tried in order when a cell runs out of memory: lower num_gpu, then num_ctx")
    execution: ExecutionSpec = ExecutionSpec()
    telemetry: TelemetrySpec = TelemetrySpec()
    multi_agent: MultiAgentSpec | None = None
    suites: SuitesSpec | None = Field(default=None, description="quality suites beside the speed matrix "
                                      "(trbench/config/suites_section.py): scenarios, QA")
    load: LoadSpec | None = Field(default=None, description="load mode: concurrency or rate steps "
                                  "(trbench/config/load_section.py)")
    multi_turn: MultiTurnSpec | None = Field(default=None, description="multi-turn conversations whose history "
                                             "grows turn by turn (trbench/config/multi_turn_section.py)")
    questions: list[Question] = Field(default_factory=list, description="questions the report answers from the data "
                                      "(trbench/config/questions_section.py); none: the defaults of the workloads "
                                      "measured")
    synthetic: SyntheticSpec | None = Field(default=None, description="exact-length prompts and outputs per "
                                            "prompt_tokens x output_tokens x depth, llama-bench's pp/tg view "
                                            "(trbench/config/synthetic_section.py, docs/synthetic.md)")
    smoke: bool = Field(default=False, description="set by `trbench run --smoke` on the cut spec it runs: the TR "
                        "is a setup check, and its report says pass or fail, names no winner and states no finding")

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
        return unique(v)

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, v: str) -> str:
        if remote.is_url(v) and (problem := remote.url_problem(v)) is not None:
            raise ValueError(problem)
        return v

    @field_validator("harness")
    @classmethod
    def _harness(cls, v: list[str]) -> list[str]:
        return unique(v)  # a harness named twice is measured once

    @model_validator(mode="after")
    def _cross_field(self) -> MatrixSpec:
        if self.baseline_model is not None and self.baseline_model not in self.models:
            raise FieldRule("baseline_model", f"{self.baseline_model!r} is not one of models {self.models}; "
                             "fix: name one of models, or remove it (the first model is the baseline)")
        if self.duration_s is not None and self.requests_per_run != DEFAULT_REQUESTS_PER_RUN:
            raise FieldRule("duration_s", "a run ends after requests_per_run measured requests or after duration_s "
                            "seconds; fix: give one of them")
        if self.min_ok_requests is not None and self.duration_s is None and self.min_ok_requests > self.requests_per_run:
            raise FieldRule("min_ok_requests", f"min_ok_requests ({self.min_ok_requests}) exceeds requests_per_run "
                             f"({self.requests_per_run}); fix: lower min_ok_requests or raise requests_per_run")
        if self.provider == "external" and not (isinstance(self.server, ExternalServer) and self.server.urls):
            raise FieldRule("server.urls", "provider 'external' needs urls: the base URLs of the running servers; "
                             "fix: list them, e.g. server: {urls: ['http://127.0.0.1:8080']}")
        ma = self.multi_agent
        if ma and ma.models and (stray := [m for m in ma.models if m not in self.models]):
            raise FieldRule("multi_agent.models", f"{stray} are not in models {self.models} (preflight checks "
                             "those); fix: add them to models, or remove them here")
        for i, rung in enumerate(self.oom_fallback):
            if rung.num_gpu is None and rung.num_ctx is None:
                raise FieldRule(f"oom_fallback.{i}", f"oom_fallback[{i}] lowers nothing; fix: give num_gpu and/or num_ctx")
        self._check_suites()
        self._check_server_axes()
        self._keep_mock_apart()
        if (not self.single_agent and ma is None and self.load is None and self.synthetic is None
                and self.multi_turn is None):
            raise FieldRule("single_agent", "single_agent is false and there is no multi_agent, load, synthetic or "
                            "multi_turn section: nothing to run; fix: set single_agent: true, or add one of those "
                            "sections")
        emb = self.load.embeddings if self.load else None
        if emb and emb.model and emb.model not in self.models:
            raise FieldRule("load.embeddings.model", f"{emb.model!r} is not in models {self.models} (preflight checks "
                             "those); fix: add it to models, or remove it here (the first model is used)")
        if self.load and self.load.models and (stray := [m for m in self.load.models if m not in self.models]):
            raise FieldRule("load.models", f"{stray} are not in models {self.models} (preflight checks "
                             "those); fix: add them to models, or remove them here")
        self._check_synthetic()
        mt = self.multi_turn
        if mt and mt.models and (stray := [m for m in mt.models if m not in self.models]):
            raise FieldRule("multi_turn.models", f"{stray} are not in models {self.models} (preflight checks "
                             "those); fix: add them to models, or remove them here")
        return self

    def _check_synthetic(self) -> None:
        syn = self.synthetic
        if syn is None:
            return
        if syn.models and (stray := [m for m in syn.models if m not in self.models]):
            raise FieldRule("synthetic.models", f"{stray} are not in models {self.models} (preflight checks those); "
                            "fix: add them to models, or remove them here")
        if syn.longest() > (ctx := min(self.grid.num_ctx)):
            raise FieldRule("synthetic.depth", f"depth + prompt_tokens + output_tokens reach {syn.longest()} tokens, "
                            f"over grid.num_ctx {ctx}; fix: raise grid.num_ctx to at least {syn.longest()}, or "
                            "shorten the lengths")

    def _check_server_axes(self) -> None:
        """Server settings only where trbench starts the server and can set them."""
        given = [a for a in SERVER_AXES if getattr(self.grid, a) is not None]
        if not given:
            return
        if self.provider in ("external", "mock"):
            raise FieldRule(f"grid.{given[0]}", f"grid.{given[0]} is a server setting, and provider {self.provider!r} "
                            "runs servers trbench does not configure; fix: remove it, or use provider embedded, "
                            "ollama-docker or ollama-process")
        if self.provider.startswith("ollama") and self.grid.ubatch_size is not None:
            raise FieldRule("grid.ubatch_size", "Ollama has no micro-batch setting (only num_batch); fix: remove "
                            "grid.ubatch_size, or use provider embedded")
        kv = self.grid.kv_cache_type or []
        if any(t != "f16" for t in kv) and self.grid.flash_attention is None:
            raise FieldRule("grid.kv_cache_type", f"a quantized KV cache ({', '.join(t for t in kv if t != 'f16')}) "
                            "quantizes V only with flash attention on, and grid.flash_attention leaves it to the "
                            "server; fix: add flash_attention: [true] (or [false, true] to compare)")
        ub, b = self.grid.ubatch_size, self.grid.batch_size
        if ub and b and max(ub) > min(b):
            raise FieldRule("grid.ubatch_size", f"ubatch_size {max(ub)} exceeds batch_size {min(b)}: the micro-batch "
                            "is a part of the batch; fix: keep every ubatch_size <= every batch_size")

    def _keep_mock_apart(self) -> None:
        """A mock TR (canned answers, no model) never shares a folder, a resume or a baseline with a
        real one: its tr_id starts with 'mock' and no other provider's does, and it has no baseline."""
        mock_id = self.tr_id.lower().startswith(MOCK_TR_PREFIX)
        if self.provider == "mock" and not mock_id:
            raise FieldRule("tr_id", f"provider mock measures the harness, not a model, and its TR is kept apart: its "
                            f"tr_id must start with '{MOCK_TR_PREFIX}'; fix: e.g. tr_id: {MOCK_TR_PREFIX}-{self.tr_id}")
        if self.provider != "mock" and mock_id:
            raise FieldRule("tr_id", f"tr_ids starting with '{MOCK_TR_PREFIX}' are kept for provider mock (its runs "
                            "would mix with this one's on a resume); fix: choose another tr_id")
        if self.provider == "mock" and self.baseline_tr_id:
            raise FieldRule("baseline_tr_id", "a mock TR is not compared with a stored TR (its figures are canned); "
                            "fix: remove baseline_tr_id")

    def _check_suites(self) -> None:
        su = self.suites
        if su is None:
            return
        if su.models and (stray := [m for m in su.models if m not in self.models]):
            raise FieldRule("suites.models", f"{stray} are not in models {self.models} (preflight checks those); "
                            "fix: add them to models, or remove them here")
        if su.qa and self.suites_num_ctx < QA_MIN_CTX:
            where = "suites.num_ctx" if su.num_ctx else "grid.num_ctx"
            raise FieldRule("suites.num_ctx", f"the QA prompt (its retrieved documents) needs a context of at least "
                            f"{QA_MIN_CTX} tokens, {where} gives {self.suites_num_ctx}; fix: set suites.num_ctx: "
                            f"{QA_MIN_CTX}")

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
    def api_key_env(self) -> str | None:
        """The environment variable holding the servers' API key (external servers only), or None."""
        return self.server.api_key_env if isinstance(self.server, ExternalServer) else None

    @property
    def baseline(self) -> str:
        return self.baseline_model or self.models[0]

    @property
    def instance_ports(self) -> list[int]:
        return self.server.instance_ports() if hasattr(self.server, "instance_ports") else []

    @property
    def lanes(self) -> int:
        """Single-agent runs measured at the same time: up to max_parallel in parallel mode, else one."""
        return min(self.execution.max_parallel, len(self.models)) if self.execution.mode == "parallel" else 1

    @property
    def shared_lanes(self) -> bool:
        """Whether a run shares the GPUs and host with other lanes' runs (what its telemetry covers)."""
        return self.single_agent and self.lanes > 1

    @property
    def instance_count(self) -> int:
        """Instances the spec needs: two for the multi-agent runs, max_parallel in parallel mode."""
        return max(self.lanes, 2 if self.multi_agent else 1)

    @property
    def load_models(self) -> list[str]:
        return (self.load.models or self.models) if self.load else []

    @property
    def multi_agent_models(self) -> list[str]:
        return (self.multi_agent.models or self.models) if self.multi_agent else []

    @property
    def suite_models(self) -> list[str]:
        return (self.suites.models or self.models) if self.suites and self.suites.names else []

    @property
    def suites_num_ctx(self) -> int:
        """The context the suites run at: suites.num_ctx, else the grid's largest."""
        return (self.suites.num_ctx if self.suites else None) or max(self.grid.num_ctx)

    @property
    def min_ok(self) -> int:
        """Ok measured requests a run needs, per cache state it measures."""
        return self.min_ok_requests or (1 if self.duration_s is not None else self.requests_per_run)

    @property
    def cache_targets(self) -> list[str]:
        """The cache states each measured prompt of a run is sent in, in order."""
        return ["cold", "cached"] if self.ttft == "both" else [self.ttft]

    def cells(self) -> list[Cell]:
        """Cells ordered so that server reloads are fewest: by model, then GPU layers, then context, then
        server settings; temperature, per request, varies fastest."""
        return [
            Cell(model=m, num_gpu=g, num_ctx=c, temperature=t, **settings)
            for m, g, c, settings, t in itertools.product(
                self.models, self.grid.num_gpu, self.grid.num_ctx, self.grid.server_settings(), self.grid.temperature
            )
        ]

    def resolve_options(self, opts: OptionSet) -> OptionSet:
        """Options as sent: on the embedded engine null fields become its stated defaults."""
        if self.provider != "embedded":
            return opts
        return OptionSet(**{k: v if v is not None else getattr(EMBEDDED_DEFAULTS, k) for k, v in opts.model_dump().items()})

    def cell_hash(self, cell: Cell, prompts_digest: str, harness: str = DEFAULT_HARNESS) -> str:
        """Content hash of everything that shapes one cell's measurement (not its run count),
        so the same cell in two TR runs can be compared."""
        payload = {
            "cell": cell.model_dump(exclude_none=True),  # settings left out: the hash of the cell before them
            "backend": self.backend,
            "provider": self.provider,
            "max_tokens": self.max_tokens,
            "ttft": self.ttft,
            "prompts": prompts_digest,
            "seed": self.seed,
            **harness_key(harness),
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
        if overrides.get("models") and (data.get("suites") or {}).get("models"):
            kept = [m for m in data["suites"]["models"] if m in overrides["models"]]
            data["suites"]["models"] = kept or None  # none of them chosen: the suites run on the chosen models
        spec = _validate(data, source=f"spec {self.tr_id} with overrides")
        spec._flat = dict(self._flat)
        return spec


def harness_key(harness: str) -> dict:
    """What a content hash adds for the harness: nothing for the Python client (the hashes of TR
    runs from before the harness existed stay comparable), else its name."""
    return {} if harness == DEFAULT_HARNESS else {"harness": harness}


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
        raise SpecError(format_error(err, MatrixSpec, source, flat)) from None
    spec._flat = flat
    return spec


def parse_spec(data: Any, source: str = "spec") -> MatrixSpec:
    return _validate(data, source)


def load_spec(path: str | Path) -> MatrixSpec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec {p}: file not found; fix: give the path of a YAML spec, e.g. deployments/quickstart.yaml")
    return _validate(read_yaml(p), f"spec {p}")
