"""What the report says, as data: the computed report (ReportData and its parts, no formatting),
its figures (Plot) and the files publish() writes (ReportFiles)."""

from __future__ import annotations

import base64
from pathlib import Path

from pydantic import BaseModel

from trbench.data.budget_record import BudgetRecord
from trbench.data.cells import SINGLE_CONFIG_COLUMNS, config_label
from trbench.data.rows import UNVERIFIED_STATES
from trbench.report.regression import RegressionResult, TrSettings
from trbench.report import cross_model
from trbench.measure.figure import Figure
from trbench.report.cross_model import EnergySection, MaPctRow, QuantRow, SampleAnswer, VramRow, WinnerRow
from trbench.report.findings import Findings
from trbench.report.harness import HarnessSection
from trbench.report.answer_quality import SuitesSection
from trbench.report.load_results import LoadSection
from trbench.report.multi_agent import MultiAgentSection
from trbench.report.reruns import FlaggedRun, OutlierRuleText, Rerun

MESSAGE_CHARS = 200

CACHE_MODES = {
    "cold": "every measured prompt starts with a unique prefix, so the server has nothing of it in its KV cache",
    "cached": "every measured prompt is sent once as a 1-token warm-up (stored, not counted), then again, identical",
    "both": "every measured prompt is sent cold (a unique prefix), then again, identical, served from the KV cache",
}

CONFIG_KEYS = SINGLE_CONFIG_COLUMNS[1:]  # a config within one model


# --- the computed report ----------------------------------------------------------------------


class Config(BaseModel):
    num_gpu: int
    num_ctx: int
    temperature: float
    server_settings: str = ""  # the server settings the grid set (cells.settings_text); '' for none

    @property
    def label(self) -> str:
        return config_label(self.num_gpu, self.num_ctx, self.temperature, self.server_settings)

    def key(self) -> tuple[int, int, float, str]:
        return (self.num_gpu, self.num_ctx, self.temperature, self.server_settings)


class _TtftByState(BaseModel):
    """TTFT per cache state (CACHE_STATES), never pooled: ttft_<state>_{n,p50_ms,p95_ms,p50_ci}, state by state
    (tests/test_rows.py holds the fields to CACHE_STATES)."""

    ttft_cold_n: int = 0
    ttft_cold_p50_ms: float | None = None
    ttft_cold_p95_ms: float | None = None
    ttft_cold_p50_ci: tuple[float, float] | None = None
    ttft_partial_n: int = 0
    ttft_partial_p50_ms: float | None = None
    ttft_partial_p95_ms: float | None = None
    ttft_partial_p50_ci: tuple[float, float] | None = None
    ttft_cached_n: int = 0
    ttft_cached_p50_ms: float | None = None
    ttft_cached_p95_ms: float | None = None
    ttft_cached_p50_ci: tuple[float, float] | None = None
    ttft_cold_asked_n: int = 0
    ttft_cold_asked_p50_ms: float | None = None
    ttft_cold_asked_p95_ms: float | None = None
    ttft_cold_asked_p50_ci: tuple[float, float] | None = None
    ttft_cached_asked_n: int = 0
    ttft_cached_asked_p50_ms: float | None = None
    ttft_cached_asked_p95_ms: float | None = None
    ttft_cached_asked_p50_ci: tuple[float, float] | None = None
    ttft_unknown_n: int = 0
    ttft_unknown_p50_ms: float | None = None
    ttft_unknown_p95_ms: float | None = None
    ttft_unknown_p50_ci: tuple[float, float] | None = None


class CellResult(_TtftByState):
    """One model x config: the pooled statistics and the run/request counts; TTFT per cache state
    comes from _TtftByState."""

    model: str
    config: Config
    n_requests: int  # measured ok requests of valid runs: the pooled sample
    decode_tps_mean: float | None
    decode_tps_p50: float | None
    decode_tps_p95: float | None
    # prompt tokens per second (metrics.DEFINITIONS['prefill_tps'], '_client') over the uncached prefills
    prefill_tps_p50: float | None = None
    prefill_tps_p50_ci: tuple[float, float] | None = None
    prefill_tps_client_p50: float | None = None
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    cv_pct: float | None
    run_means_decode_tps: list[float | None]  # per valid run, in run_index order
    runs: int
    valid_runs: int
    invalid_runs: int
    failed_requests: int  # measured requests with status != ok, in any counted run
    superseded_runs: int = 0
    cell_hashes: list[str] = []  # the runs' content hashes (baselines are matched on config values: matching.py)
    # bootstrap 95% intervals of the medians (metrics.bootstrap_median_ci, two-stage over runs and requests)
    decode_tps_p50_ci: tuple[float, float] | None = None
    e2e_p50_ci: tuple[float, float] | None = None
    prompt_style: str = "chat"  # completion: a base model driven as plain text
    # median per-request (decode_tps_client - decode_tps) / decode_tps x 100: the client clock against the server's
    decode_client_vs_server_pct: float | None = None
    answer_checks: dict[str, int] = {}  # answer_check value -> measured ok requests of the counted runs
    # energy and memory, per valid run, where the run table has them (telemetry)
    run_tokens_per_j: list[float | None] = []
    tokens_per_j_p50: float | None = None
    tokens_per_j_ci: tuple[float, float] | None = None
    energy_j_p50: float | None = None
    energy_runs: int = 0
    tokens_per_dollar_p50: float | None = None
    gpu_mem_used_mib_max: float | None = None
    # reasoning streamed before the answer (report/reasoning.py), medians over the pooled requests;
    # time to the first answer token per cache state, as TTFT is
    reasoning_requests: int = 0  # pooled requests whose stream carried reasoning
    ttfat_p50_ms_by_state: dict[str, float] = {}
    reasoning_tokens_p50: float | None = None
    answer_tokens_p50: float | None = None
    decode_tps_reasoning_p50: float | None = None
    decode_tps_answer_p50: float | None = None


class PctRow(BaseModel):
    """A CellResult's numbers as % of the baseline model's at the same config (None: no baseline value)."""

    model: str
    config: Config
    values: dict[str, float | None]


class FailedRequest(BaseModel):
    model: str
    config: Config
    run_id: str
    request_index: int
    is_warmup: bool
    error_kind: str | None
    message: str | None  # truncated to MESSAGE_CHARS
    note: str = ""  # warm-up / superseded attempt / unfinished run: not in the failed-request counts


class InvalidRun(BaseModel):
    model: str
    config: Config
    run_id: str
    invalid_reason: str | None


class InstanceInfo(BaseModel):
    name: str
    provider: str | None
    url: str | None


class ModelInfo(BaseModel):
    name: str
    kind: str = "unknown"  # instruct (has a chat template) | base (driven as plain-text completion)
    digest: str | None
    details: dict[str, str] = {}


class Setup(BaseModel):
    command: str | None
    commit: str | None
    dirty: bool | None
    packages: dict[str, str | None]
    cpu: str | None
    cores: int | None
    memory_gib: float | None
    gpus: list[str]
    platform: str | None
    python: str | None
    instances: list[InstanceInfo]
    models: list[ModelInfo]
    manifest_source: str
    vram_budget: list[BudgetRecord] = []


# Model facts worth a reader's eye; the manifest keeps them all.
MODEL_DETAIL_KEYS = ["source", "file", "size_bytes", "architecture", "quantization", "params_b", "context_length",
                     "block_count", "head_count_kv", "parameters", "modelfile"]


class CacheCheck(BaseModel):
    """How many measured ok requests aimed at a cache state got which, by the server's own counts."""

    target: str
    state: str
    n: int


class CacheInfo(BaseModel):
    modes: list[str]  # ttft modes seen in the data (or the spec's when there is no data)
    descriptions: dict[str, str]
    cached_tokens_total: int  # over the measured ok requests of valid runs
    cached_tokens_reported: bool  # False when no request carried a cached_tokens value
    checks: list[CacheCheck] = []
    states: list[str] = []  # the cache states measured, in metrics.CACHE_STATES order

    @property
    def unverified(self) -> bool:
        """Whether some TTFT figure is by the state asked for, the server having sent no cache count."""
        return any(st in UNVERIFIED_STATES for st in self.states)

    @property
    def all_confirmed(self) -> str:
        """The sentence that stands for the asked-against-reported table when the server's counts confirmed
        every request's state as asked; empty where some request got another state or went unconfirmed."""
        if not self.checks or any(c.target != c.state for c in self.checks):
            return ""
        parts = ", ".join(f"{c.target} {c.n}" for c in self.checks)
        return f"The server's own counts confirmed every measured request's cache state as asked ({parts})."


class Measured(BaseModel):
    """One workload the TR measured, as the report's header states it."""

    workload: str  # sections.WORKLOADS
    title: str
    summary: str  # what the data holds of it: counts


class WorkloadPart(BaseModel):
    """A registered workload's own section (trbench.workloads.protocol.ReportPart), after the Load section."""

    workload: str  # its name (Workload.name)
    title: str
    markdown: str
    figures: list[Figure] = []  # the numbers the section shows, for the summary records


class ReportData(BaseModel):
    tr_id: str
    title: str
    objective: str
    measured: list[Measured] = []  # the workloads in the data, in report order; nothing else is spoken of
    smoke: bool = False  # a setup check (`trbench run --smoke`): pass or fail, no winners, no findings
    setup: Setup
    cache: CacheInfo
    definitions: dict[str, str]
    run_definitions: dict[str, str]
    first_started_at: str | None
    last_started_at: str | None
    n_run_files: int
    n_request_rows: int
    n_warmup_rows: int
    baseline_model: str | None
    baseline_source: str
    cells: list[CellResult]
    pct_of_baseline: list[PctRow]
    failures: list[FailedRequest]
    invalid_runs: list[InvalidRun]
    multi_agent: MultiAgentSection | None = None
    load: LoadSection | None = None  # load mode's steps (report/load_results.py); None when none was measured
    harness: HarnessSection | None = None  # Python vs Rust (report/harness.py); None with one harness
    flagged_runs: list[FlaggedRun] = []
    outlier_rule: OutlierRuleText | None = None  # the rule and its expected false-alarm rate (report/reruns.py)
    fallbacks: list[dict] = []
    server_failures: list[dict] = []  # failed start/unload/stop/health operations on an instance
    reruns: list[Rerun] = []
    questions: list[str] = []
    methodology: list[tuple[str, str]] = []
    statistics: dict[str, str] = {}
    energy_definitions: dict[str, str] = {}
    reproduce: list[str] = []
    runs_per_cell: int | None = None
    warmup_per_run: int | None = None
    winners: list[WinnerRow] = []
    winner_models: list[str] = []
    winner_rule: str = cross_model.WINNER_RULE
    ma_pct_of_baseline: list[MaPctRow] = []
    energy: EnergySection = EnergySection(measured=False, note=cross_model.NO_GPU_ENERGY, points=[])
    vram: list[VramRow] = []
    quant: list[QuantRow] = []
    samples: list[SampleAnswer] = []
    regression: RegressionResult | None = None
    settings: TrSettings = TrSettings()  # what the TR measured and under which settings: named where two TRs differ
    findings: Findings = Findings(key=[], answers=[], recommendations=[], undecided=[])
    suites: SuitesSection | None = None  # the quality suites, where the TR ran any
    mock: bool = False  # the TR ran on the mock provider: canned answers, the harness measured
    workload_parts: list[WorkloadPart] = []  # registered workloads' own sections, in registry order

    @property
    def workloads(self) -> list[str]:
        return [m.workload for m in self.measured]

    @property
    def compared_across_tools(self) -> bool:
        """Whether the report shows figures readers set beside other tools' (load steps, llama-bench's view):
        then its appendix maps every name; otherwise it points to the page that does."""
        return self.load is not None or any(p.workload == "synthetic" for p in self.workload_parts)

    @property
    def vram_unchecked(self) -> str:
        """The sentence that stands for the budget table when no GPU was visible: every configuration ran, none
        checked against a budget, so the table would hold only the estimates; empty where a GPU was seen."""
        if not self.vram or self.setup.gpus:
            return ""
        said = "No GPU was visible, so no VRAM budget applied and every configuration ran"
        estimates = [f"{e:.3f}" for e in sorted(r.estimate_gib for r in self.vram if r.estimate_gib is not None)]
        if not estimates:
            return said + "."
        if estimates[0] == estimates[-1]:
            return f"{said}; trbench's estimate was {estimates[0]} GiB for every configuration."
        return f"{said}; trbench's estimates were {estimates[0]} to {estimates[-1]} GiB per configuration."

    @property
    def present(self) -> set[str]:
        """What the report holds, in the names sections.Section.needs uses."""
        facts = {"vram": bool(self.vram or self.quant), "energy": self.energy.measured,
                 "baseline": self.regression is not None}
        return set(self.workloads) | {name for name, held in facts.items() if held}


# --- helpers ----------------------------------------------------------------------------------


class Plot(BaseModel):
    """One figure of the report: a PNG and where it is written (report/plots/<name>.png), or, where its
    section has data but nothing to draw, no PNG and the reason the report prints instead."""

    name: str
    title: str
    caption: str = ""
    alt: str = ""  # what the figure shows, for a reader who cannot see it
    png: bytes | None = None
    reason: str = ""  # why there is no figure (png None)
    width_px: int = 0  # the size the page shows it at, in CSS pixels (the PNG has more: plots.PIXEL_RATIO)
    height_px: int = 0

    @property
    def file(self) -> str:
        return f"plots/{self.name}.png"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png or b"").decode("ascii")


class ReportFiles(BaseModel):
    markdown: Path
    html: Path | None
    plots: list[Path]
    data: ReportData
    summary_json: Path | None = None  # the statistics for other tools (report/summary.py)
    summary_csv: Path | None = None
    appendix_markdown: Path | None = None  # <tr_id>-appendix.md: the detail tables and definitions
    appendix_html: Path | None = None

