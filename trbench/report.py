"""The TR report: every number computed from the Parquet files alone, then rendered to Markdown
and to one self-contained HTML page.

build_report() computes (ReportData, no formatting) from a projection of the tables
(trbench.report_data: the columns it uses, numpy arrays indexed by run; a TR of a million requests
reads in seconds, bench/scale.py); trbench.report_tables formats every table
once; render_markdown() and render_html() lay them out (the Jinja2 templates report.md.j2 and
report.html.j2, the HTML one autoescaped); trbench.plots draws the figures; publish() writes
<tr_root>/report/<tr_id>.md, <tr_id>.html and plots/*.png, each atomically; write_report() is
publish() returning the Markdown's path.

Statistics follow metrics.RUN_DEFINITIONS: only measured (not warm-up) requests of status ok
from valid runs, pooled per model x config; CV is over the per-run mean decode_tps of the valid
runs. When a run was re-run (the same model, config and run_index with a higher attempt), only
the latest attempt counts; the superseded ones are counted in the report and left out.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape
from pydantic import BaseModel

from trbench.data.cells import SINGLE_CONFIG_COLUMNS, config_label, latest_attempts
from trbench import metrics, report_compare
from trbench.failures import read_fallbacks, read_instance_failures
from trbench.regression import DEFAULT_THRESHOLD_PCT, RegressionResult, rule_text
from trbench.regression import compare as compare_regression
from trbench.report_findings import Findings, build_findings
from trbench.report_compare import EnergySection, MaPctRow, QuantRow, SampleAnswer, VramRow, WinnerRow
from trbench.report_multi import MultiAgentSection, build_multi_agent
from trbench.report_quality import FlaggedRun, Rerun, flagged_runs, reruns
from trbench.report_tables import (  # noqa: F401 (re-exported: the report's column names and formatters)
    PCT_FIELDS, PCT_HEADERS, RESULT_COLUMNS, cell_text, fmt, fmt_ci, tables, to_markdown)
from trbench.spec import MatrixSpec, parse_spec
from trbench.report_data import RUN_COLUMNS, RequestColumns
from trbench.storage import read_frame, read_manifest

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.md.j2"
HTML_TEMPLATE_NAME = "report.html.j2"
MESSAGE_CHARS = 200

CACHE_MODES = {
    "cold": "every measured prompt starts with a unique prefix, so the server has nothing of it in its KV cache",
    "cached": "every measured prompt is sent once as a 1-token warm-up (stored, not counted), then again, identical",
    "both": "every measured prompt is sent cold (a unique prefix), then again, identical, served from the KV cache",
}

DEFAULT_OBJECTIVE = (
    "Measure each model's single-agent throughput, time to first token, latency and run-to-run consistency, "
    "and its dual-instance multi-agent efficiency and contention, with the architecture and configs held constant; "
    "compare the models against the baseline model.")
QUESTIONS = [
    "Does model choice materially shift single-agent throughput (decode tok/s), TTFT and latency at the same config?",
    "Does model choice change multi-agent efficiency, or does the architecture (two instances, two agents) dominate?",
    "Which configurations fit the GPU memory budget, and what did a model cost in VRAM and, where measured, energy?",
]
CONFIG_KEYS = SINGLE_CONFIG_COLUMNS[1:]  # a config within one model


# --- the computed report ----------------------------------------------------------------------


class Config(BaseModel):
    num_gpu: int
    num_ctx: int
    temperature: float

    @property
    def label(self) -> str:
        return config_label(self.num_gpu, self.num_ctx, self.temperature)

    def key(self) -> tuple[int, int, float]:
        return (self.num_gpu, self.num_ctx, self.temperature)


class CellResult(BaseModel):
    """One model x config: the pooled statistics and the run/request counts."""

    model: str
    config: Config
    n_requests: int  # measured ok requests of valid runs: the pooled sample
    decode_tps_mean: float | None
    decode_tps_p50: float | None
    decode_tps_p95: float | None
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    cv_pct: float | None
    run_means_decode_tps: list[float | None]  # per valid run, in run_index order
    runs: int
    valid_runs: int
    invalid_runs: int
    failed_requests: int  # measured requests with status != ok, in any counted run
    superseded_runs: int = 0
    cell_hashes: list[str] = []  # the runs' content hashes: what a baseline TR run is matched on
    # bootstrap 95% intervals of the medians (metrics.bootstrap_median_ci, two-stage over runs and requests)
    decode_tps_p50_ci: tuple[float, float] | None = None
    e2e_p50_ci: tuple[float, float] | None = None
    # TTFT per cache state (metrics.CACHE_STATES), never pooled: ttft_<state>_{n,p50_ms,p95_ms,p50_ci}
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
    ttft_unknown_n: int = 0
    ttft_unknown_p50_ms: float | None = None
    ttft_unknown_p95_ms: float | None = None
    ttft_unknown_p50_ci: tuple[float, float] | None = None
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
    vram_budget: list[dict] = []


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


class ReportData(BaseModel):
    tr_id: str
    title: str
    objective: str
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
    flagged_runs: list[FlaggedRun] = []
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
    winner_rule: str = report_compare.WINNER_RULE
    ma_pct_of_baseline: list[MaPctRow] = []
    energy: EnergySection = EnergySection(measured=False, note=report_compare.NO_GPU_ENERGY, points=[])
    vram: list[VramRow] = []
    quant: list[QuantRow] = []
    samples: list[SampleAnswer] = []
    regression: RegressionResult | None = None
    regression_note: str = ""
    findings: Findings = Findings(key=[], answers=[], recommendations=[], undecided=[])


# --- helpers ----------------------------------------------------------------------------------


def _none(v: Any) -> Any:
    """pandas' missing values (NaN, NA, NaT) as None."""
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _str(v: Any) -> str | None:
    v = _none(v)
    return None if v is None else str(v)


def _load_manifest(tr_root: Path) -> tuple[dict, str]:
    path = tr_root / "manifest.json"
    if path.is_file():
        return json.loads(path.read_text()), str(path.name)
    for run_file in sorted((tr_root / "runs").glob("model_slug=*/*.parquet")):
        found = read_manifest(run_file)
        if found:
            return found, f"metadata of {run_file.relative_to(tr_root)}"
    return {}, "none found"


def _setup(manifest: dict, manifest_source: str, runs: pd.DataFrame, models: list[str]) -> Setup:
    git = manifest.get("git") or {}
    hw = manifest.get("hardware") or {}
    gpu_names = []
    for g in hw.get("gpus") or []:
        if isinstance(g, dict):
            mem = g.get("memory_total_mib")
            gpu_names.append(f"{g.get('name', '?')}" + (f" ({mem} MiB)" if mem else ""))
        else:
            gpu_names.append(str(g))

    instances = []
    for inst in manifest.get("instances") or []:
        if isinstance(inst, dict):
            instances.append(InstanceInfo(
                name=str(inst.get("name", "?")),
                provider=_str(inst.get("provider")),
                url=_str(inst.get("url") or inst.get("base_url")),
            ))
    if not instances and not runs.empty:  # the data says which instances served the runs
        seen = runs[["instance", "provider", "instance_url"]].drop_duplicates().sort_values("instance")
        instances = [InstanceInfo(name=str(r.instance), provider=_str(r.provider), url=_str(r.instance_url))
                     for r in seen.itertuples()]

    facts = manifest.get("models") or {}
    model_infos = []
    for name in sorted(set(models) | set(facts)):
        f = facts.get(name) or {}
        details = {k: str(f[k]) for k in MODEL_DETAIL_KEYS if f.get(k) is not None and k != "modelfile"}
        details.update({k: str(v) for k, v in (f.get("details") or {}).items()
                        if k in ("family", "parameter_size", "quantization_level")})
        kind = str(f.get("model_kind") or "unknown")
        if kind == "base":
            kind = "base model (no chat template): plain-text completion"
        model_infos.append(ModelInfo(name=name, kind=kind, digest=_str(f.get("digest")), details=details))

    return Setup(
        command=_str(manifest.get("command")),
        commit=_str(git.get("commit")),
        dirty=git.get("dirty"),
        packages={str(k): _str(v) for k, v in (manifest.get("packages") or {}).items()},
        cpu=_str(hw.get("cpu")),
        cores=hw.get("cpu_cores_logical"),
        memory_gib=hw.get("memory_gib"),
        gpus=gpu_names,
        platform=_str(hw.get("platform")),
        python=_str(hw.get("python")),
        instances=instances,
        models=model_infos,
        manifest_source=manifest_source,
        vram_budget=[d for d in manifest.get("vram_budget") or [] if isinstance(d, dict)],
    )


def _baseline(spec: MatrixSpec | None, manifest: dict, models: list[str]) -> tuple[str | None, str]:
    if spec is not None:
        if spec.baseline_model:
            return spec.baseline_model, "the spec's baseline_model"
        return spec.baseline, "the spec's first model, since it names no baseline_model"
    stored = manifest.get("baseline_model") or manifest.get("baseline")
    if not stored and isinstance(manifest.get("spec"), dict):
        stored = manifest["spec"].get("baseline_model")
    if stored:
        return str(stored), "the baseline stored in the manifest"
    if models:
        return sorted(models)[0], "the first model alphabetically, since no spec was given and no baseline is stored"
    return None, "no models in the data"


def _cell_result(model: str, config: Config, cell_runs: pd.DataFrame, superseded: int,
                 reqs: RequestColumns) -> CellResult:
    valid_runs = cell_runs[cell_runs["valid"].astype(bool)].sort_values("run_index")
    rows = reqs.rows(cell_runs["run_id"])
    measured = rows[reqs.measured[rows]]
    ok_measured = measured[reqs.ok[measured]]
    per_run = [r[reqs.measured[r] & reqs.ok[r]] for r in (reqs.rows([rid]) for rid in valid_runs["run_id"])]
    pooled = np.sort(np.concatenate(per_run)) if per_run else np.zeros(0, dtype=np.int64)

    decode_values = reqs.floats("decode_tps", pooled)
    decode = metrics.summarize(decode_values)
    e2e = metrics.summarize(reqs.floats("e2e_ms", pooled))
    run_means = [metrics.mean(reqs.floats("decode_tps", r)) for r in per_run]
    tpj, energy, tpd = report_compare.run_energy(valid_runs)
    styles = sorted(set(cell_runs["prompt_style"].dropna().astype(str)))
    return CellResult(
        **_ttft_by_state(reqs, pooled, per_run),
        decode_client_vs_server_pct=metrics.percentile(
            [(c / v - 1) * 100 for c, v in zip(reqs.floats("decode_tps_client", pooled), decode_values)
             if not math.isnan(c) and v and not math.isnan(v)], 50),
        prompt_style="+".join(styles) or "chat",
        answer_checks=reqs.counts("answer_check", ok_measured),
        model=model,
        config=config,
        n_requests=len(pooled),
        decode_tps_mean=decode.mean,
        decode_tps_p50=decode.p50,
        decode_tps_p95=decode.p95,
        e2e_p50_ms=e2e.p50,
        e2e_p95_ms=e2e.p95,
        cv_pct=metrics.cv_pct(run_means),
        run_means_decode_tps=run_means,
        runs=len(cell_runs),
        valid_runs=len(valid_runs),
        invalid_runs=len(cell_runs) - len(valid_runs),
        failed_requests=int((~reqs.ok[measured]).sum()),
        superseded_runs=superseded,
        cell_hashes=sorted(set(cell_runs["cell_hash"].dropna().astype(str))),
        decode_tps_p50_ci=metrics.bootstrap_median_ci([reqs.values["decode_tps"][r] for r in per_run]),
        e2e_p50_ci=metrics.bootstrap_median_ci([reqs.values["e2e_ms"][r] for r in per_run]),
        run_tokens_per_j=tpj,
        tokens_per_j_p50=metrics.percentile(tpj, 50),
        tokens_per_j_ci=metrics.bootstrap_median_ci(tpj),
        energy_j_p50=metrics.percentile(energy, 50),
        energy_runs=sum(v is not None for v in tpj),
        tokens_per_dollar_p50=metrics.percentile(tpd, 50),
        gpu_mem_used_mib_max=report_compare.gpu_mem_max(valid_runs),
    )


def _ttft_by_state(reqs: RequestColumns, pooled: np.ndarray, per_run: list[np.ndarray]) -> dict[str, Any]:
    """TTFT n, p50, p95 and the p50's interval for each cache state, from the server's own counts."""
    out: dict[str, Any] = {}
    for state in metrics.CACHE_STATES:
        is_state = reqs.equals("cache_state", state)
        s = metrics.summarize(reqs.floats("ttft_ms", pooled[is_state[pooled]]))
        out.update({f"ttft_{state}_n": s.n, f"ttft_{state}_p50_ms": s.p50, f"ttft_{state}_p95_ms": s.p95,
                    f"ttft_{state}_p50_ci": metrics.bootstrap_median_ci(
                        [reqs.values["ttft_ms"][r[is_state[r]]] for r in per_run])})
    return out


def _cache_checks(reqs: RequestColumns, pooled: np.ndarray) -> list[CacheCheck]:
    """Pooled requests per (cache target, cache state), sorted; a null target reads 'none', a null state is left out."""
    (targets, target_labels), (states, state_labels) = reqs.coded["cache_target"], reqs.coded["cache_state"]
    t, st = targets[pooled] + 1, states[pooled]  # target code 0: null
    keep = st >= 0
    n = np.bincount(t[keep] * len(state_labels) + st[keep], minlength=(len(target_labels) + 1) * len(state_labels))
    pairs = {(target_labels[i // len(state_labels) - 1] if i // len(state_labels) else "none",
              state_labels[i % len(state_labels)]): int(n[i]) for i in np.flatnonzero(n)}
    return [CacheCheck(target=k[0], state=k[1], n=v) for k, v in sorted(pairs.items())]


def _config_of(row: Any) -> Config:
    return Config(num_gpu=int(row.num_gpu), num_ctx=int(row.num_ctx), temperature=float(row.temperature))


def _model_order(spec: MatrixSpec | None, models: set[str]) -> list[str]:
    listed = [m for m in spec.models if m in models] if spec is not None else []
    return listed + sorted(models - set(listed))


def _truncate(text: str | None, limit: int = MESSAGE_CHARS) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(v: Any) -> str | None:
    v = _none(v)
    return None if v is None else pd.Timestamp(v).isoformat()


# --- the public API ---------------------------------------------------------------------------


def recorded_spec(manifest: dict) -> MatrixSpec | None:
    """The spec a TR run recorded in its manifest, when it is there and still parses."""
    raw = manifest.get("spec")
    if not isinstance(raw, dict):
        return None
    try:
        return parse_spec(raw, "recorded spec")
    except Exception:  # an older or hand-made manifest: the report falls back on the data
        return None


def build_report(tr_root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
                 threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> ReportData:
    """Everything the report says, computed from the Parquet files (and manifest) under tr_root.

    spec: the TR's spec (title, objective, model order, baseline model); without it the spec recorded
    in the manifest is used where there is one. baseline_root: another TR run's folder to check for
    regressions against (trbench.regression), with threshold_pct."""
    tr_root = Path(tr_root)
    all_runs = read_frame(tr_root, "runs", RUN_COLUMNS)
    reqs = RequestColumns.read(tr_root)  # the columns the statistics read, not the texts and chunk lists
    manifest, manifest_source = _load_manifest(tr_root)
    runs, superseded = latest_attempts(all_runs, SINGLE_CONFIG_COLUMNS)
    given_spec = spec
    if spec is None:
        spec = recorded_spec(manifest)

    data_models = set(all_runs["model"].dropna().astype(str)) | reqs.distinct("model")
    models = _model_order(spec, data_models)
    baseline, baseline_source = _baseline(spec, manifest, models)

    # the model x config cells, each from its counted runs (requests of unfinished runs have no run row)
    cells: list[CellResult] = []
    if not runs.empty:
        configs = sorted({_config_of(r).key() for r in runs.itertuples()})
        for model in models:
            for g, c, t in configs:
                sel = (runs["model"] == model) & (runs["num_gpu"] == g) & (runs["num_ctx"] == c) & (
                    runs["temperature"] == t)
                if not sel.any():
                    continue
                n_superseded = 0
                if not superseded.empty:
                    n_superseded = int(((superseded["model"] == model) & (superseded["num_gpu"] == g)
                                        & (superseded["num_ctx"] == c) & (superseded["temperature"] == t)).sum())
                cfg = Config(num_gpu=int(g), num_ctx=int(c), temperature=float(t))
                cells.append(_cell_result(model, cfg, runs[sel], n_superseded, reqs))

    base_by_config = {cell.config.key(): cell for cell in cells if cell.model == baseline}
    pct_rows = []
    for cell in cells:
        base = base_by_config.get(cell.config.key())
        pct_rows.append(PctRow(
            model=cell.model,
            config=cell.config,
            values={f: metrics.pct_of(getattr(cell, f), getattr(base, f) if base else None) for f in PCT_FIELDS},
        ))

    counted_ids = set(runs["run_id"]) if not runs.empty else set()
    superseded_ids = set(superseded["run_id"]) if not superseded.empty else set()
    failures = []
    for r in (reqs.failed()
              .sort_values(["model", *CONFIG_KEYS, "run_index", "attempt", "request_index"]).itertuples()):
        notes = []
        if bool(r.is_warmup):
            notes.append("warm-up")
        if r.run_id in superseded_ids:
            notes.append("superseded attempt")
        elif r.run_id not in counted_ids:
            notes.append("unfinished run (no run row)")
        failures.append(FailedRequest(
            model=str(r.model), config=_config_of(r), run_id=str(r.run_id), request_index=int(r.request_index),
            is_warmup=bool(r.is_warmup), error_kind=_str(r.error_kind), message=_truncate(_str(r.error_message)),
            note=", ".join(notes),
        ))
    invalid = [
        InvalidRun(model=str(r.model), config=_config_of(r), run_id=str(r.run_id),
                   invalid_reason=_str(r.invalid_reason))
        for r in runs[~runs["valid"].astype(bool)].sort_values(["model", *CONFIG_KEYS, "run_index"]).itertuples()
    ] if not runs.empty else []

    # prompt caching: the mode(s) the runs used and the cached tokens of the pooled requests
    modes = sorted(set(runs["ttft_mode"].dropna().astype(str))) if not runs.empty else []
    if not modes and spec is not None:
        modes = [spec.ttft]
    valid_ids = set(runs.loc[runs["valid"].astype(bool), "run_id"]) if not runs.empty else set()
    pooled = reqs.rows(valid_ids)
    pooled = pooled[reqs.measured[pooled] & reqs.ok[pooled]]
    cached = [v for v in reqs.floats("cached_tokens", pooled) if not math.isnan(v)]
    checks = _cache_checks(reqs, pooled)
    cache = CacheInfo(
        modes=modes,
        descriptions={m: CACHE_MODES.get(m, m) for m in modes},
        cached_tokens_total=int(sum(cached)),
        cached_tokens_reported=bool(cached),
        checks=checks,
        states=[st for st in metrics.CACHE_STATES if any(getattr(c, f"ttft_{st}_n") for c in cells)],
    )

    tr_ids = sorted(set(all_runs["tr_id"].dropna().astype(str))) if not all_runs.empty else []
    tr_id = given_spec.tr_id if given_spec is not None else (tr_ids[0] if tr_ids else tr_root.name)
    setup = _setup(manifest, manifest_source, all_runs, models)
    multi_agent = build_multi_agent(tr_root, models)
    ma_results = multi_agent.results if multi_agent else []
    energy = report_compare.energy_section(cells, setup.gpus)
    winners = report_compare.winner_rows(cells, ma_results, models, energy.measured)
    data = ReportData(
        tr_id=tr_id,
        title=(spec.title if spec is not None and spec.title else f"Technical Report {tr_id}"),
        objective=(spec.objective if spec is not None and spec.objective else DEFAULT_OBJECTIVE),
        setup=setup,
        cache=cache,
        definitions=dict(metrics.DEFINITIONS),
        run_definitions=dict(metrics.RUN_DEFINITIONS),
        first_started_at=_iso(all_runs["started_at"].min()) if not all_runs.empty else None,
        last_started_at=_iso(all_runs["started_at"].max()) if not all_runs.empty else None,
        n_run_files=len(all_runs),
        n_request_rows=reqs.n,
        n_warmup_rows=int(reqs.warmup.sum()),
        baseline_model=baseline,
        baseline_source=baseline_source,
        cells=cells,
        pct_of_baseline=pct_rows,
        failures=failures,
        invalid_runs=invalid,
        multi_agent=multi_agent,
        flagged_runs=flagged_runs(tr_root),
        fallbacks=[{k: r[k] for k in ("model", "from_config", "to_config", "decision")}
                   for r in read_fallbacks(tr_root).to_dict("records")],
        server_failures=[{k: r[k] for k in ("instance", "operation", "model", "error_kind", "error_message")}
                         for r in read_instance_failures(tr_root).to_dict("records")],
        reruns=reruns(tr_root, all_runs),
        questions=list(QUESTIONS),
        statistics=dict(metrics.BOOTSTRAP_DEFINITIONS),
        energy_definitions=dict(getattr(metrics, "ENERGY_DEFINITIONS", {})),
        runs_per_cell=(int(runs.groupby(["model", *CONFIG_KEYS])["run_index"].nunique().max())
                       if not runs.empty else None),
        warmup_per_run=int(runs["n_warmup"].max()) if not runs.empty and runs["n_warmup"].notna().any() else None,
        winners=winners,
        winner_models=[m for m in models if any(m in w.estimates for w in winners)],
        ma_pct_of_baseline=report_compare.ma_pct_rows(ma_results, baseline),
        energy=energy,
        vram=report_compare.vram_rows(setup.vram_budget, cells),
        quant=report_compare.quant_rows(manifest.get("models") or {}, models),
        samples=report_compare.sample_answers(tr_root, cells, reqs, valid_ids),
    )
    data.reproduce = _reproduce(data, tr_root)
    data.methodology = _methodology(data, spec)
    data.findings = build_findings(data)
    if baseline_root is not None:
        baseline_root = Path(baseline_root)
        if not ((baseline_root / "runs").is_dir() or (baseline_root / "ma_runs").is_dir()):
            raise FileNotFoundError(f"no baseline TR data under {baseline_root}")
        data.regression = compare_regression(data, build_report(baseline_root), threshold_pct)
    else:
        data.regression_note = ("No baseline TR run given: nothing compared. Give one with "
                                f"`trbench report {tr_id} --baseline OTHER_TR_ID` (or the report flow's `baseline`).")
    return data


def _cli(command: str | None) -> str:
    """The recorded command with the trbench executable as the README names it (.venv/bin/trbench)."""
    if not command:
        return ".venv/bin/trbench run <spec>   # the command was not recorded"
    argv = command.split()
    if argv and Path(argv[0]).name == "trbench":
        argv[0] = ".venv/bin/trbench"
    return " ".join(argv)


def _reproduce(data: ReportData, tr_root: Path) -> list[str]:
    """The commands that measure and report this TR run again from a fresh clone: the README's setup
    (`make setup`: the venv, trbench and the bundled models), then the recorded command."""
    out = ["git clone <this repository> trbench && cd trbench"]
    if data.setup.commit:
        out.append(f"git checkout {data.setup.commit}")
    out.append("make setup   # README: venv, trbench and the bundled models (make run = setup + the quickstart)")
    out.append(_cli(data.setup.command))
    output_dir = tr_root.parent
    flag = "" if output_dir.name == "outputs" else f" --output-dir {output_dir}"
    out.append(f".venv/bin/trbench report {data.tr_id}{flag}")
    out.append(f".venv/bin/trbench report {data.tr_id}{flag} --baseline OTHER_TR_ID --threshold "
               f"{DEFAULT_THRESHOLD_PCT:g}   # exit code 3 on regressions")
    return out


def _methodology(data: ReportData, spec: MatrixSpec | None) -> list[tuple[str, str]]:
    configs = list(dict.fromkeys(c.config.label for c in data.cells))
    models = list(dict.fromkeys(c.model for c in data.cells))
    matrix = (f"{len(models)} model(s) x {len(configs)} config(s) (GPU layers, context size, temperature): "
              f"{', '.join(configs) or 'none'}; up to {data.runs_per_cell or 0} run(s) per model x config")
    if data.warmup_per_run:
        matrix += f"; up to {data.warmup_per_run} warm-up request(s) per run, stored but never counted"
    items = [
        ("matrix", matrix),
        ("baseline model", f"{data.baseline_model or 'none'} ({data.baseline_source}); normalized tables are "
                           "value / baseline value at the same config or scenario x 100"),
        ("pooling", "statistics per model x config are " + metrics.RUN_DEFINITIONS["per-config statistics"]
         + "; valid run: " + metrics.RUN_DEFINITIONS["valid run"]),
        ("medians and intervals", "every median is shown with a bootstrap 95% interval: "
                                  + metrics.BOOTSTRAP_DEFINITIONS["95% CI of a single-agent median"]),
        ("per-run intervals", metrics.BOOTSTRAP_DEFINITIONS["95% CI of a per-run median"]),
        ("winner by scenario", report_compare.WINNER_RULE),
        ("run-to-run spread", metrics.RUN_DEFINITIONS["cv_pct"]),
        ("outliers", "a run is flagged when |x - median| > k x max(MAD, floor x |median|) within its config "
                     "(raw MAD); flagged configs are run again as a new attempt and the latest attempt counts"),
    ]
    if data.multi_agent:
        items.append(("multi-agent", "collector and insight at once on two instances, then each alone on the same "
                                     "instances (the measured sequential baseline); speedup = sequential wall / "
                                     "concurrent wall, efficiency = speedup / 2 x 100"))
    items.append(("energy", data.energy.note if not data.energy.measured else
                  data.energy.note + "; " + report_compare.FRONTIER_RULE))
    items.append(("regression check", data.regression.rule if data.regression else
                  "against a baseline TR run when one is given: " + rule_text(DEFAULT_THRESHOLD_PCT)))
    return items


# --- rendering --------------------------------------------------------------------------------


class Plot(BaseModel):
    """One figure of the report: a PNG and where it is written (report/plots/<name>.png)."""

    name: str
    title: str
    caption: str
    png: bytes

    @property
    def file(self) -> str:
        return f"plots/{self.name}.png"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


class ReportFiles(BaseModel):
    markdown: Path
    html: Path | None
    plots: list[Path]
    data: ReportData


def _fence(text: str) -> str:
    """A fenced code block that no backtick run inside the text can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _inline(text: str) -> Markup:
    """HTML for prose with `code` spans: everything escaped, then the spans marked up."""
    parts = str(text).split("`")
    out = [str(escape(p)) if i % 2 == 0 else f"<code>{escape(p)}</code>" for i, p in enumerate(parts)]
    return Markup("".join(out))


def _environment(html: bool = False) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=html,  # the HTML escapes every value it did not mark safe itself (model output included)
    )
    env.filters["fmt"] = fmt
    env.filters["ci"] = fmt_ci
    env.filters["cell"] = cell_text
    env.filters["md"] = to_markdown
    env.filters["fence"] = _fence
    env.filters["inline"] = _inline
    return env


class _Plots(dict):
    """Plots by name; a plot that was not drawn reads as None in the templates."""

    def __getattr__(self, name: str) -> Plot | None:
        return self.get(name)


def _context(data: ReportData, plots: list[Plot] | None) -> dict:
    return {"data": data, "t": tables(data), "plots": _Plots({p.name: p for p in plots or []}),
            "sample_chars": report_compare.SAMPLE_CHARS}


def render_markdown(data: ReportData, plots: list[Plot] | None = None) -> str:
    """The report as Markdown; plots (when given) are linked as report/plots/<name>.png."""
    return _environment().get_template(TEMPLATE_NAME).render(**_context(data, plots))


def render_html(data: ReportData, plots: list[Plot] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, plots as data: URIs), autoescaped."""
    return _environment(html=True).get_template(HTML_TEMPLATE_NAME).render(**_context(data, plots))


def _write_atomic(path: Path, payload: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    if isinstance(payload, bytes):
        tmp.write_bytes(payload)
    else:
        tmp.write_text(payload, encoding="utf-8")
    os.replace(tmp, path)


def publish(tr_root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
            threshold_pct: float = DEFAULT_THRESHOLD_PCT, html: bool = True, plots: bool = True) -> ReportFiles:
    """Build the report and write report/<tr_id>.md, report/<tr_id>.html and report/plots/*.png
    (each file temp + rename)."""
    tr_root = Path(tr_root)
    data = build_report(tr_root, spec, baseline_root, threshold_pct)
    figures: list[Plot] = []
    if plots:
        from trbench.plots import render_plots  # matplotlib: only when plotting

        figures = render_plots(data)
    folder = tr_root / "report"
    plot_paths = []
    for fig in figures:
        path = folder / fig.file
        _write_atomic(path, fig.png)
        plot_paths.append(path)
    md_path = folder / f"{data.tr_id}.md"
    _write_atomic(md_path, render_markdown(data, figures))
    html_path = None
    if html:
        html_path = folder / f"{data.tr_id}.html"
        _write_atomic(html_path, render_html(data, figures))
    return ReportFiles(markdown=md_path, html=html_path, plots=plot_paths, data=data)


def write_report(tr_root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
                 threshold_pct: float = DEFAULT_THRESHOLD_PCT, html: bool = True, plots: bool = True) -> Path:
    """Build and render the report; returns the Markdown's path, tr_root/report/<tr_id>.md (the HTML
    and the plots are written beside it)."""
    return publish(tr_root, spec, baseline_root, threshold_pct, html=html, plots=plots).markdown
