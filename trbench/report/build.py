"""build_report(): every number the report says, computed from the Parquet files alone.

It reads a projection of the tables (trbench.report.data: the columns it uses, numpy arrays indexed
by run; a TR of a million requests reads in seconds, bench/scale.py) and returns a ReportData
(trbench.report.models), no formatting. Each section beyond the cells is built by its own module:
compare (winners, energy, VRAM, quantization, samples), multi (multi-agent), quality (flagged runs,
re-runs), findings; methodology writes the methodology and the commands that reproduce the TR.

Statistics follow metrics.RUN_DEFINITIONS: only measured (not warm-up) requests of status ok
from valid runs, pooled per model x config; CV is over the per-run mean decode_tps of the valid
runs. When a run was re-run (the same model, config and run_index with a higher attempt), only
the latest attempt counts; the superseded ones are counted in the report and left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from trbench.config.spec import MatrixSpec, OutlierRule, parse_spec
from trbench.config.questions_section import Question
from trbench.data.cells import SINGLE_CONFIG_COLUMNS, latest_attempts, with_harness
from trbench.data.environment import GitState, Hardware, InstanceDescription, Manifest
from trbench.data.model_facts import ModelFacts
from trbench.data.failures import read_fallbacks, read_instance_failures
from trbench.data.store import read_frame, read_manifest
from trbench.measure import metrics
from trbench.measure.outliers import read_flags
from trbench.report.regression import DEFAULT_THRESHOLD_PCT, RegressionResult, TrSettings
from trbench.report.regression import compare as compare_regression
from trbench.report import cross_model, reasoning
from trbench.report.data import RUN_COLUMNS, RequestColumns
from trbench.report.findings import build_findings
from trbench.report.harness import build_harness_section, main_harness, of_harness
from trbench.report.load_results import build_load
from trbench.report.models import (
    CACHE_MODES, CONFIG_KEYS, MESSAGE_CHARS, MODEL_DETAIL_KEYS, CacheCheck, CacheInfo, CellResult, Config,
    FailedRequest, InstanceInfo, InvalidRun, Measured, ModelInfo, PctRow, ReportData, Setup, WorkloadPart)
from trbench.report.questions import default_objective, questions
from trbench.report.spec_questions import answer
from trbench.report.summary import build_summary
from trbench.report.multi_agent import build_multi_agent
from trbench.report.reruns import flagged_runs, outlier_rule_text, reruns
from trbench.report.answer_quality import build_suites_section
from trbench.report.tables import PCT_FIELDS
from trbench.report.methodology import methodology, reproduce
from trbench.prose.english import count


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


def _load_manifest(tr_root: Path) -> tuple[Manifest, str]:
    path = tr_root / "manifest.json"
    if path.is_file():
        return Manifest.lenient(json.loads(path.read_text())), str(path.name)
    for run_file in sorted((tr_root / "runs").glob("model_slug=*/*.parquet")):
        found = read_manifest(run_file)
        if found.recorded():
            return found, f"metadata of {run_file.relative_to(tr_root)}"
    return Manifest(), "none found"


def _model_info(name: str, f: ModelFacts) -> ModelInfo:
    details = {k: str(v) for k in MODEL_DETAIL_KEYS if (v := f.value(k)) is not None and k != "modelfile"}
    if f.details is not None:
        details.update({k: str(v) for k, v in f.details.recorded().items()
                        if k in ("family", "parameter_size", "quantization_level")})
    kind = str(f.model_kind or "unknown")
    if kind == "base":
        kind = "base model (no chat template): plain-text completion"
    return ModelInfo(name=name, kind=kind, digest=f.digest, details=details)


def _setup(manifest: Manifest, manifest_source: str, runs: pd.DataFrame, models: list[str]) -> Setup:
    git = manifest.git or GitState()
    hw = manifest.hardware or Hardware()
    instances = [InstanceInfo(name=inst.name, provider=inst.provider, url=inst.address) for inst in manifest.instances]
    if not instances and not runs.empty:  # the data says which instances served the runs
        seen = runs[["instance", "provider", "instance_url"]].drop_duplicates().sort_values("instance")
        instances = [InstanceInfo(name=str(r.instance), provider=_str(r.provider), url=_str(r.instance_url))
                     for r in seen.itertuples()]
    facts = manifest.models
    return Setup(
        command=manifest.command,
        commit=git.commit,
        dirty=git.dirty,
        packages=dict(manifest.packages),
        cpu=hw.cpu,
        cores=hw.cpu_cores_logical,
        memory_gib=hw.memory_gib,
        gpus=[g.describe() for g in hw.gpus],
        platform=hw.platform,
        python=hw.python,
        instances=instances,
        models=[_model_info(name, facts.get(name) or ModelFacts()) for name in sorted(set(models) | set(facts))],
        manifest_source=manifest_source,
        vram_budget=list(manifest.vram_budget),
    )


def _baseline(spec: MatrixSpec | None, manifest: Manifest, models: list[str]) -> tuple[str | None, str]:
    if spec is not None:
        if spec.baseline_model:
            return spec.baseline_model, "the spec's baseline_model"
        return spec.baseline, "the spec's first model, since it names no baseline_model"
    stored = manifest.baseline_model or manifest.baseline
    if not stored and manifest.spec is not None:
        stored = manifest.spec.get("baseline_model")
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
    uncached = ~(reqs.equals("cache_state", "cached") | reqs.equals("cache_state", "cached_asked"))
    prefill_runs = [r[uncached[r]] for r in per_run]  # metrics.PREFILL_RATE_STATES: a cached prefill is no rate
    prefill = metrics.summarize(reqs.floats("prefill_tps", pooled[uncached[pooled]]))
    prefill_client = metrics.summarize(reqs.floats("prefill_tps_client", pooled[uncached[pooled]]))
    tpj, energy, tpd = cross_model.run_energy(valid_runs)
    styles = sorted(set(cell_runs["prompt_style"].dropna().astype(str)))
    return CellResult(
        **_ttft_by_state(reqs, pooled, per_run),
        **reasoning.cell_figures(reqs, pooled),
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
        prefill_tps_p50=prefill.p50,
        prefill_tps_p50_ci=metrics.bootstrap_median_ci([reqs.values["prefill_tps"][r] for r in prefill_runs]),
        prefill_tps_client_p50=prefill_client.p50,
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
        gpu_mem_used_mib_max=cross_model.gpu_mem_max(valid_runs),
    )


def _model_cells(model: str, runs: pd.DataFrame, reqs: RequestColumns) -> list[CellResult]:
    """One model's cells from these runs (one harness's, for report/harness.py)."""
    runs = with_harness(runs)
    return [_cell_result(model, Config(num_gpu=int(g), num_ctx=int(c), temperature=float(t), server_settings=str(s)),
                         frame, 0, reqs)
            for (g, c, t, s), frame in runs.groupby(["num_gpu", "num_ctx", "temperature", "server_settings"], sort=True)]


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
    settings = getattr(row, "server_settings", "")
    return Config(num_gpu=int(row.num_gpu), num_ctx=int(row.num_ctx), temperature=float(row.temperature),
                  server_settings=settings if isinstance(settings, str) else "")


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


def recorded_spec(manifest: Manifest) -> MatrixSpec | None:
    """The spec a TR run recorded in its manifest, when it is there and still parses."""
    raw = manifest.spec
    if raw is None:
        return None
    try:
        return parse_spec(raw, "recorded spec")
    except Exception:  # an older or hand-made manifest: the report falls back on the data
        return None


@dataclass
class _Sources:
    """What every section is built from: the run rows (all attempts, the counted ones and the superseded
    ones), the request columns, the manifest and the spec (given, else recorded), the models in report
    order and the baseline model."""

    root: Path
    all_runs: pd.DataFrame
    runs: pd.DataFrame
    superseded: pd.DataFrame
    reqs: RequestColumns
    manifest: Manifest
    manifest_source: str
    given_spec: MatrixSpec | None
    spec: MatrixSpec | None
    models: list[str]
    baseline: str | None
    baseline_source: str

    @property
    def valid_ids(self) -> set:
        return set(self.runs.loc[self.runs["valid"].astype(bool), "run_id"]) if not self.runs.empty else set()


def _read(tr_root: Path, given_spec: MatrixSpec | None) -> _Sources:
    all_runs = read_frame(tr_root, "runs", RUN_COLUMNS)
    reqs = RequestColumns.read(tr_root)  # the columns the statistics read, not the texts and chunk lists
    manifest, manifest_source = _load_manifest(tr_root)
    runs, superseded = latest_attempts(all_runs, SINGLE_CONFIG_COLUMNS)
    main = main_harness(tr_root)  # the main sections show one harness; report/harness.py sets them side by side
    runs, superseded = of_harness(runs, main), of_harness(superseded, main)
    spec = given_spec if given_spec is not None else recorded_spec(manifest)
    data_models = (set(all_runs["model"].dropna().astype(str)) | reqs.distinct("model")
                   | set(read_frame(tr_root, "load_steps", ["model"])["model"].dropna().astype(str)))
    models = _model_order(spec, data_models)
    baseline, baseline_source = _baseline(spec, manifest, models)
    return _Sources(tr_root, all_runs, runs, superseded, reqs, manifest, manifest_source, given_spec, spec, models,
                    baseline, baseline_source)


def _title(src: _Sources, workloads: list[str]) -> dict[str, Any]:
    """tr_id, title and objective (the spec's; else one that names only what was measured)."""
    spec = src.spec
    tr_ids = sorted(set(src.all_runs["tr_id"].dropna().astype(str))) if not src.all_runs.empty else []
    tr_id = src.given_spec.tr_id if src.given_spec is not None else (tr_ids[0] if tr_ids else src.root.name)
    return {"tr_id": tr_id,
            "title": spec.title if spec is not None and spec.title else f"Technical Report {tr_id}",
            "objective": spec.objective if spec is not None and spec.objective else default_objective(workloads)}


def _measured(src: _Sources, cells: list[CellResult], multi_agent, suites, load) -> list[Measured]:
    """The workloads in the data, each with what it holds, in report order (sections.WORKLOADS)."""
    out = []
    if cells:
        n_runs = sum(c.runs for c in cells)
        out.append(Measured(workload="single", title="Single agent", summary=(
            f"{count(n_runs, 'run')} of {count(len(cells), 'model x config cell')} "
            f"({sum(c.valid_runs for c in cells)} valid), {count(src.reqs.n, 'request row')} of which "
            f"{int(src.reqs.warmup.sum())} warm-up")))
    if suites is not None:
        names = sorted({str(r["scenario"]) for r in suites.scenarios}) + (["qa"] if suites.qa else [])
        out.append(Measured(workload="suites", title="Quality suites", summary=", ".join(names) or "none scored"))
    if multi_agent is not None:
        res = multi_agent.results
        out.append(Measured(workload="multi", title="Multi-agent", summary=(
            f"{count(sum(r.runs for r in res), 'run')} of {count(len(res), 'model x scenario cell')} "
            f"({sum(r.valid_runs for r in res)} valid)")))
    if load is not None and load.steps:
        out.append(Measured(workload="load", title="Load", summary=(
            f"{count(len(load.steps), 'step')} ({sum(s.valid for s in load.steps)} valid), "
            f"{count(sum(s.n_requests or 0 for s in load.steps), 'measured request')}")))
    if load is not None and load.embedding_steps:
        steps = load.embedding_steps
        out.append(Measured(workload="embeddings", title="Embeddings", summary=(
            f"{count(len(steps), 'step')}, {count(sum(int(s['n_requests'] or 0) for s in steps), 'measured request')}")))
    return out


def _coverage(src: _Sources) -> dict[str, Any]:
    """What the data holds: when it was measured, how many files and rows, runs per cell."""
    all_runs, runs = src.all_runs, src.runs
    return {
        "first_started_at": _iso(all_runs["started_at"].min()) if not all_runs.empty else None,
        "last_started_at": _iso(all_runs["started_at"].max()) if not all_runs.empty else None,
        "n_run_files": len(all_runs),
        "n_request_rows": src.reqs.n,
        "n_warmup_rows": int(src.reqs.warmup.sum()),
        "runs_per_cell": (int(runs.groupby(["model", *CONFIG_KEYS])["run_index"].nunique().max())
                          if not runs.empty else None),
        "warmup_per_run": (int(runs["n_warmup"].max()) if not runs.empty and runs["n_warmup"].notna().any()
                           else None),
    }


def _prompt_caching(src: _Sources, cells: list[CellResult]) -> CacheInfo:
    """The mode(s) the runs used and the cached tokens of the pooled requests."""
    runs, reqs = src.runs, src.reqs
    modes = sorted(set(runs["ttft_mode"].dropna().astype(str))) if not runs.empty else []
    if not modes and src.spec is not None:
        modes = [src.spec.ttft]
    pooled = reqs.rows(src.valid_ids)
    pooled = pooled[reqs.measured[pooled] & reqs.ok[pooled]]
    cached = [v for v in reqs.floats("cached_tokens", pooled) if not math.isnan(v)]
    return CacheInfo(
        modes=modes,
        descriptions={m: CACHE_MODES.get(m, m) for m in modes},
        cached_tokens_total=int(sum(cached)),
        cached_tokens_reported=bool(cached),
        checks=_cache_checks(reqs, pooled),
        states=[st for st in metrics.CACHE_STATES if any(getattr(c, f"ttft_{st}_n") for c in cells)],
    )


def _server(instance: InstanceDescription, packages: dict[str, str | None]) -> str:
    """The server software of an instance and its version where the manifest records it: the embedded
    engine is llama.cpp through the xllamacpp package; another provider's version only where its
    instance record carries one."""
    if instance.provider == "embedded":
        return f"llama.cpp (xllamacpp {packages.get('xllamacpp') or 'version not recorded'})"
    version = instance.version
    return f"{instance.provider or '?'} {version}" if version else f"{instance.provider or '?'} (version not recorded)"


def _tr_settings(src: _Sources, cells: list[CellResult], multi_agent, load, workloads: list[str]) -> TrSettings:
    """What the TR measured and under which settings: from the data where it holds them, else from the
    recorded spec (max_tokens, backend, prompts and seed are only there) and the manifest (server, hardware)."""
    spec, runs = src.spec, src.runs
    ma = multi_agent.results if multi_agent else []
    steps = load.steps if load else []

    def distinct(values) -> list[str]:
        return sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})

    def of_runs(column: str) -> list:
        return list(runs[column].dropna()) if not runs.empty and column in runs else []

    single = bool(cells)
    hardware = src.manifest.hardware
    return TrSettings(
        workloads=[w for w in workloads if w in ("single", "multi", "load")],
        models=distinct([c.model for c in cells] + [r.model for r in ma] + [s.model for s in steps]),
        configs=distinct([c.config.label for c in cells] + [s.config for s in steps]),
        provider=distinct(of_runs("provider") + [i.provider for i in _setup_instances(src)]),
        backend=distinct([spec.backend] if spec is not None else []),
        server=distinct([_server(i, src.manifest.packages) for i in src.manifest.instances]),
        max_tokens=distinct(([spec.max_tokens] if spec is not None and single else []) + [s.max_tokens for s in steps]),
        ttft=distinct(of_runs("ttft_mode")),
        prompts=distinct([spec.prompts] if spec is not None and (single or steps) else []),
        seed=distinct([spec.seed] if spec is not None else []),
        harness=distinct(of_runs("harness")),
        multi_agent_scenarios=distinct([r.scenario for r in ma]),
        load_steps=distinct([s.step_label for s in steps]),
        server_slots=distinct([s.slots for s in steps]),
        server_queue=distinct([s.max_queue for s in steps]),
        gpus=distinct([g.describe() for g in hardware.gpus] if hardware is not None else []),
        cpu=distinct([hardware.cpu] if hardware is not None else []),
    )


def _setup_instances(src: _Sources) -> list[InstanceInfo]:
    return [InstanceInfo(name=i.name, provider=i.provider, url=None) for i in src.manifest.instances]


def _definitions(workloads: list[str]) -> dict[str, Any]:
    """The appendix: what each metric and statistic means, and the questions the report answers."""
    return {"definitions": dict(metrics.DEFINITIONS), "run_definitions": dict(metrics.RUN_DEFINITIONS),
            "statistics": dict(metrics.BOOTSTRAP_DEFINITIONS),
            "energy_definitions": dict(getattr(metrics, "ENERGY_DEFINITIONS", {})), "questions": questions(workloads)}


# per-request metrics the appendix defines only where the report shows them: metric ids -> whether it does
_SHOWN_WHERE: list[tuple[tuple[str, ...], Callable[[ReportData], bool]]] = [
    (("ttfat_ms", "reasoning_tokens", "answer_tokens", "decode_tps_reasoning", "decode_tps_answer"),
     lambda d: reasoning.any_reasoning(d.cells)),
    (("tpot_ms", "itl_ms"), lambda d: d.load is not None),
    (("stopped_early",), lambda d: d.compared_across_tools),
    (("input_exact",), lambda d: any(p.workload == "synthetic" for p in d.workload_parts)),
]


def shown_definitions(data: ReportData) -> dict[str, str]:
    """The per-request definitions of the metrics this report shows (the full list: docs/how-it-works.md)."""
    hidden = {m for ids, shown in _SHOWN_WHERE if not shown(data) for m in ids}
    return {k: v for k, v in data.definitions.items() if k not in hidden}


def _results(src: _Sources) -> list[CellResult]:
    """The model x config cells, each from its counted runs (requests of unfinished runs have no run row)."""
    runs, superseded = src.runs, src.superseded
    if runs.empty:
        return []
    runs = with_harness(runs)
    superseded = with_harness(superseded) if not superseded.empty else superseded
    cells = []
    configs = sorted({_config_of(r).key() for r in runs.itertuples()})
    for model in src.models:
        for g, c, t, s in configs:
            sel = (runs["model"] == model) & (runs["num_gpu"] == g) & (runs["num_ctx"] == c) & (
                runs["temperature"] == t) & (runs["server_settings"] == s)
            if not sel.any():
                continue
            n_superseded = 0
            if not superseded.empty:
                n_superseded = int(((superseded["model"] == model) & (superseded["num_gpu"] == g)
                                    & (superseded["num_ctx"] == c) & (superseded["temperature"] == t)
                                    & (superseded["server_settings"] == s)).sum())
            cfg = Config(num_gpu=int(g), num_ctx=int(c), temperature=float(t), server_settings=s)
            cells.append(_cell_result(model, cfg, runs[sel], n_superseded, src.reqs))
    return cells


def _pct_of_baseline(cells: list[CellResult], baseline: str | None) -> list[PctRow]:
    base_by_config = {cell.config.key(): cell for cell in cells if cell.model == baseline}
    rows = []
    for cell in cells:
        base = base_by_config.get(cell.config.key())
        rows.append(PctRow(model=cell.model, config=cell.config, values={
            f: metrics.pct_of(getattr(cell, f), getattr(base, f) if base else None) for f in PCT_FIELDS}))
    return rows


def _cross_model(src: _Sources, cells: list[CellResult], setup: Setup, multi_agent, smoke: bool) -> dict[str, Any]:
    """Winners (none in a setup check), multi-agent % of baseline, the efficiency frontier, VRAM and
    quantization, sample answers."""
    ma_results = multi_agent.results if multi_agent else []
    energy = cross_model.energy_section(cells, setup.gpus)
    winners = cross_model.winner_rows(cells, ma_results, src.models, energy.measured)
    if smoke:
        winners = [w.model_copy(update={"winner": "n/a", "reason": cross_model.SMOKE_NO_WINNER}) for w in winners]
    return {
        "winners": winners,
        "winner_models": [m for m in src.models if any(m in w.estimates for w in winners)],
        "ma_pct_of_baseline": cross_model.ma_pct_rows(ma_results, src.baseline),
        "energy": energy,
        "vram": cross_model.vram_rows(setup.vram_budget, cells),
        "quant": cross_model.quant_rows(src.manifest.models, src.models),
        "samples": cross_model.sample_answers(src.root, cells, src.reqs, src.valid_ids),
    }


def _outliers_and_reruns(src: _Sources) -> dict[str, Any]:
    flags = read_flags(src.root)
    rule = src.spec.outliers if src.spec is not None else OutlierRule()
    return {"flagged_runs": flagged_runs(flags), "outlier_rule": outlier_rule_text(rule, flags),
            "reruns": reruns(src.root, src.all_runs)}


def _failures(src: _Sources) -> dict[str, Any]:
    """Failed requests, server failures, out-of-memory fallbacks and invalid runs."""
    runs = src.runs
    counted_ids = set(runs["run_id"]) if not runs.empty else set()
    superseded_ids = set(src.superseded["run_id"]) if not src.superseded.empty else set()
    failed = []
    for r in (src.reqs.failed()
              .sort_values(["model", *CONFIG_KEYS, "run_index", "attempt", "request_index"]).itertuples()):
        notes = []
        if bool(r.is_warmup):
            notes.append("warm-up")
        if r.run_id in superseded_ids:
            notes.append("superseded attempt")
        elif r.run_id not in counted_ids:
            notes.append("unfinished run (no run row)")
        failed.append(FailedRequest(
            model=str(r.model), config=_config_of(r), run_id=str(r.run_id), request_index=int(r.request_index),
            is_warmup=bool(r.is_warmup), error_kind=_str(r.error_kind), message=_truncate(_str(r.error_message)),
            note=", ".join(notes),
        ))
    invalid = [
        InvalidRun(model=str(r.model), config=_config_of(r), run_id=str(r.run_id),
                   invalid_reason=_str(r.invalid_reason))
        for r in runs[~runs["valid"].astype(bool)].sort_values(["model", *CONFIG_KEYS, "run_index"]).itertuples()
    ] if not runs.empty else []
    return {
        "failures": failed,
        "invalid_runs": invalid,
        "fallbacks": [{k: r[k] for k in ("model", "from_config", "to_config", "decision")}
                      for r in read_fallbacks(src.root).to_dict("records")],
        "server_failures": [{k: r[k] for k in ("instance", "operation", "model", "error_kind", "error_message")}
                            for r in read_instance_failures(src.root).to_dict("records")],
    }


def _regression(data: ReportData, baseline_root: Path | None, threshold_pct: float) -> None:
    """The comparison against a baseline TR run, where one is given (the report has no such section without)."""
    if baseline_root is None:
        return
    baseline_root = Path(baseline_root)
    if not any((baseline_root / t).is_dir() for t in ("runs", "ma_runs", "load_steps")):
        raise FileNotFoundError(f"no baseline TR data under {baseline_root}")
    data.regression = compare_regression(data, build_report(baseline_root), threshold_pct)


def build_report(tr_root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
                 threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> ReportData:
    """Everything the report says, computed from the Parquet files (and manifest) under tr_root,
    section by section in report order.

    spec: the TR's spec (title, objective, model order, baseline model); without it the spec recorded
    in the manifest is used where there is one. baseline_root: another TR run's folder to check for
    regressions against (trbench.report.regression), with threshold_pct."""
    src = _read(Path(tr_root), spec)
    setup = _setup(src.manifest, src.manifest_source, src.all_runs, src.models)
    cells = _results(src)
    multi_agent = build_multi_agent(src.root, src.models, main_harness(src.root))
    suites = build_suites_section(src.root, cells)
    load = build_load(src.root, src.models)
    measured = _measured(src, cells, multi_agent, suites, load)
    workloads = [m.workload for m in measured]
    smoke = bool(src.spec is not None and src.spec.smoke)
    data = ReportData(
        **_title(src, workloads),
        measured=measured,
        smoke=smoke,
        setup=setup,
        cache=_prompt_caching(src, cells),
        **_coverage(src),
        baseline_model=src.baseline,
        baseline_source=src.baseline_source,
        cells=cells,
        pct_of_baseline=_pct_of_baseline(cells, src.baseline),
        multi_agent=multi_agent,
        **_cross_model(src, cells, setup, multi_agent, smoke),
        **_outliers_and_reruns(src),
        **_failures(src),
        **_definitions([] if smoke else workloads),  # a setup check answers no question
        suites=suites,
        load=load,
        settings=_tr_settings(src, cells, multi_agent, load, workloads),
    )
    data.mock = any(i.provider == "mock" for i in setup.instances)
    data.workload_parts = workload_parts(src.root)
    if not workloads and data.workload_parts and not (src.spec is not None and src.spec.objective):
        data.objective = "Measure " + ", ".join(p.title for p in data.workload_parts) + "."
    data.harness = build_harness_section(src.root, latest_attempts(src.all_runs, SINGLE_CONFIG_COLUMNS)[0], src.reqs,
                                         src.models, lambda m, r: _model_cells(m, r, src.reqs))
    data.definitions = shown_definitions(data)
    data.reproduce = reproduce(data, src.root)
    data.methodology = methodology(data, src.spec)
    data.findings = build_findings(data)
    if src.spec is not None and src.spec.questions and not smoke:
        _answer_spec_questions(data, src.spec.questions)
    _regression(data, baseline_root, threshold_pct)
    return data


def _answer_spec_questions(data: ReportData, asked: list[Question]) -> None:
    """The spec's own questions replace the workloads' defaults, each answered from the summary's figures."""
    summary = build_summary(data)
    data.questions = [q.ask for q in asked]
    data.findings.answers = [(q.ask, answer(q, summary)) for q in asked]


def workload_parts(root: Path) -> list[WorkloadPart]:
    """The sections registered workloads write themselves, from the stored tables (the built-in
    workloads' sections are the templates' own)."""
    from trbench.workloads import WORKLOADS

    parts = [(w.name, w.report_section(root)) for w in WORKLOADS]
    return [WorkloadPart(workload=name, title=p.title, markdown=p.markdown, figures=p.figures)
            for name, p in parts if p is not None]


def compare_tr(tr_root: Path, baseline_root: Path,
               threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> RegressionResult:
    """Build both reports from their Parquet data and compare them cell by cell. Where the report is
    built anyway, build_report(baseline_root=...) does this inside it (ReportData.regression): the TR
    flow reads it from there and calls this only when its report could not be built."""
    return compare_regression(build_report(Path(tr_root)), build_report(Path(baseline_root)), threshold_pct)
