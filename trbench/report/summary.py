"""The report's statistics as data for other tools: report/summary.json and report/summary.csv.

One SummaryRecord per workload x model x config x metric x statistic, taken from the built report
(ReportData): every number is the one the report shows, computed once by build_report and its section
modules, never again here. A record names its metric by a stable id (decode_tps, ttft_cold_ms,
speedup, goodput_rps ...) and its definition by `<catalog>.<key>`, a key of one of the definition
tables the report prints (metrics.DEFINITIONS as "request", RUN_DEFINITIONS as "run", ...); the JSON
file carries those texts under "definitions". docs/summary.schema.json is SummaryFile's JSON Schema
(`python -m trbench.report.summary` writes it; tests/test_summary.py fails when it drifts), docs/summary.md
says how to read the files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trbench.data.atomic import write_text_atomic
from trbench.data.rows import LOAD_LATENCIES, LOAD_PCTS
from trbench.measure import embedding_metrics, metrics
from trbench.measure.load_metrics import LOAD_DEFINITIONS
from trbench.report.embeddings_table import latest_steps
from trbench.report.load_results import batched_prefills
from trbench.report.models import CellResult, ReportData

SCHEMA_VERSION = 1
JSON_FILE = "summary.json"
CSV_FILE = "summary.csv"

Workload = Literal["single_agent", "multi_agent", "suites", "load", "embeddings", "synthetic"]
Statistic = Literal["median", "mean", "stddev", "p90", "p95", "p99", "min", "max", "value"]
ConfigValue = str | int | float | bool | None

# the report's workload names (outline.WORKLOADS) as the summary spells them
WORKLOADS: dict[str, Workload] = {"single": "single_agent", "multi": "multi_agent", "suites": "suites",
                                  "load": "load", "embeddings": "embeddings"}

# what the quality suites' figures mean (their scoring is docs/qa-scoring.md, their scenarios docs/scenarios.md)
SUITE_DEFINITIONS: dict[str, str] = {
    "qa_overall": "WattBot QA score: 0.75 x value accuracy + 0.15 x reference overlap + 0.10 x NA recall "
    "(docs/qa-scoring.md)",
    "value_accuracy": "share of answerable questions whose value matches the truth (docs/qa-scoring.md)",
    "ref_overlap": "Jaccard overlap of the cited and the true document ids, averaged over questions "
    "(docs/qa-scoring.md)",
    "na_recall": "share of unanswerable questions answered as such (docs/qa-scoring.md)",
    "unit_match": "share of questions whose unit matches the truth; reported, not weighed (docs/qa-scoring.md)",
    "json_parse_rate": "share of a scenario's requests whose answer parses as JSON (docs/scenarios.md)",
    "schema_valid_rate": "share of a scenario's requests whose answer meets its JSON Schema (docs/scenarios.md)",
    "route_accuracy": "share of a router scenario's requests routed as expected (docs/scenarios.md)",
    "sane_rate": "share of a scenario's answers that pass the answer check (docs/scenarios.md)",
    "latency_ms": "request sent -> whole answer received, client clock, over the scenario's or QA suite's ok "
    "requests",
    "output_tokens": "generated tokens as the server counts them, mean over the ok requests",
}

# catalog name -> the definition table it names, as the report prints them
CATALOGS: dict[str, dict[str, str]] = {
    "request": metrics.DEFINITIONS,
    "run": metrics.RUN_DEFINITIONS,
    "statistics": metrics.BOOTSTRAP_DEFINITIONS,
    "multi_agent": metrics.MULTI_AGENT_DEFINITIONS,
    "energy": metrics.ENERGY_DEFINITIONS,
    "load": LOAD_DEFINITIONS,
    "embeddings": embedding_metrics.DEFINITIONS,
    "suites": SUITE_DEFINITIONS,
}
_SINGLE_CI = "statistics.95% CI of a single-agent median"
_PER_RUN_CI = "statistics.95% CI of a per-run median"


class SummaryRecord(BaseModel):
    """One statistic of one metric for one model x config of one workload, as the report shows it."""

    model_config = ConfigDict(extra="forbid")

    tr_id: str
    workload: Workload
    model: str
    config: str = Field(description="the config label: gpu<num_gpu>_ctx<num_ctx>_temp<temperature> (single agent, "
                        "load), the scenario (multi agent, suites), 'qa' (QA suite), the embeddings step or "
                        "llama-bench's test name (synthetic: pp512, tg128 @ d4096)")
    config_values: dict[str, ConfigValue] = Field(description="the settings the config label stands for")
    metric: str = Field(description="stable metric id, e.g. decode_tps, ttft_cold_ms, e2e_ms, speedup, goodput_rps")
    statistic: Statistic = Field(description="what `value` is of the metric's values: median (p50), mean, stddev "
                                 "(sample standard deviation), a percentile, min, max, or value (a figure computed "
                                 "once, e.g. a rate over a step)")
    value: float | None = Field(description="the number; null where the report says n/a")
    ci_low: float | None = Field(description="bootstrap 95% interval of a median, low end")
    ci_high: float | None = Field(description="bootstrap 95% interval of a median, high end")
    ci_definition: str | None = Field(description="definition id of the interval; null: none")
    n: int | None = Field(description="how many values the statistic is over (see n_of); null where not counted")
    n_of: Literal["requests", "runs", "questions"] | None = Field(description="what n counts")
    unit: str = Field(description="e.g. tok/s, ms, %, req/s, x (a ratio), 1 (a share or a score)")
    definition: str = Field(description="definition id '<catalog>.<key>': the text is under the file's definitions")

    @field_validator("value", "ci_low", "ci_high", mode="before")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        """A missing number (None, NaN, pandas' NA) is null: JSON has no NaN."""
        if v is None or isinstance(v, str):
            return v
        return None if pd.isna(v) or (isinstance(v, float) and math.isinf(v)) else v


class SummaryFile(BaseModel):
    """report/summary.json: the records and the definitions their ids name. Every field of a record is
    written, null included, so the schema requires each (a reader never guesses a default)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    tr_id: str
    definitions: dict[str, str] = Field(description="definition id -> its text, for every id the records name")
    records: list[SummaryRecord]


# CSV columns, in order: the record's fields, config_values as JSON text
CSV_COLUMNS = list(SummaryRecord.model_fields)


# --- the records, workload by workload --------------------------------------------------------------------


class _Out:
    """Collects the records of one TR."""

    def __init__(self, tr_id: str) -> None:
        self.tr_id = tr_id
        self.records: list[SummaryRecord] = []

    def add(self, workload: Workload, model: str, config: str, values: dict[str, ConfigValue], metric: str,
            statistic: Statistic, value: Any, n: int | None, n_of: Literal["requests", "runs", "questions"] | None,
            unit: str, definition: str, ci: tuple[float, float] | None = None, ci_definition: str | None = None
            ) -> None:
        self.records.append(SummaryRecord(
            tr_id=self.tr_id, workload=workload, model=model, config=config, config_values=values, metric=metric,
            statistic=statistic, value=value, ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
            ci_definition=ci_definition if ci else None, n=n, n_of=n_of, unit=unit, definition=definition))


def _single(out: _Out, cells: list[CellResult], states: list[str]) -> None:
    for c in cells:
        cfg = c.config
        values: dict[str, ConfigValue] = {"num_gpu": cfg.num_gpu, "num_ctx": cfg.num_ctx, "temperature": cfg.temperature}
        if cfg.server_settings:  # only where the grid set one: records from before the axes match these
            values["server_settings"] = cfg.server_settings

        def add(metric: str, statistic: Statistic, value: Any, n: int | None, n_of: Any, unit: str, definition: str,
                ci: tuple[float, float] | None = None, ci_definition: str = _SINGLE_CI) -> None:
            out.add("single_agent", c.model, cfg.label, values, metric, statistic, value, n, n_of, unit, definition,
                    ci, ci_definition)

        n = c.n_requests
        add("decode_tps", "mean", c.decode_tps_mean, n, "requests", "tok/s", "request.decode_tps")
        add("decode_tps", "median", c.decode_tps_p50, n, "requests", "tok/s", "request.decode_tps", c.decode_tps_p50_ci)
        add("decode_tps", "p95", c.decode_tps_p95, n, "requests", "tok/s", "request.decode_tps")
        add("prefill_tps", "median", c.prefill_tps_p50, n, "requests", "tok/s", "request.prefill_tps",
            c.prefill_tps_p50_ci)
        add("prefill_tps_client", "median", c.prefill_tps_client_p50, n, "requests", "tok/s",
            "request.prefill_tps_client")
        for st in states:  # TTFT is per cache state, never pooled
            sn = getattr(c, f"ttft_{st}_n")
            add(f"ttft_{st}_ms", "median", getattr(c, f"ttft_{st}_p50_ms"), sn, "requests", "ms", "request.ttft_ms",
                getattr(c, f"ttft_{st}_p50_ci"))
            add(f"ttft_{st}_ms", "p95", getattr(c, f"ttft_{st}_p95_ms"), sn, "requests", "ms", "request.ttft_ms")
        add("e2e_ms", "median", c.e2e_p50_ms, n, "requests", "ms", "request.e2e_ms", c.e2e_p50_ci)
        add("e2e_ms", "p95", c.e2e_p95_ms, n, "requests", "ms", "request.e2e_ms")
        add("cv_pct", "value", c.cv_pct, c.valid_runs, "runs", "%", "run.cv_pct")
        add("decode_client_vs_server_pct", "median", c.decode_client_vs_server_pct, n, "requests", "%",
            "request.decode_tps_client")
        if c.energy_runs:  # energy only where telemetry measured it
            add("tokens_per_j", "median", c.tokens_per_j_p50, c.energy_runs, "runs", "tok/J", "energy.tokens_per_j",
                c.tokens_per_j_ci, _PER_RUN_CI)
            add("energy_j", "median", c.energy_j_p50, c.energy_runs, "runs", "J", "energy.energy_j")
            if c.tokens_per_dollar_p50 is not None:
                add("tokens_per_dollar", "median", c.tokens_per_dollar_p50, c.energy_runs, "runs", "tok/currency unit",
                    "energy.tokens_per_dollar")
        if c.reasoning_requests:  # the reasoning split only where some request streamed reasoning first
            add("reasoning_requests", "value", c.reasoning_requests, n, "requests", "1", "request.reasoning_tokens")
            for st, ttfat in c.ttfat_p50_ms_by_state.items():
                add(f"ttfat_{st}_ms", "median", ttfat, getattr(c, f"ttft_{st}_n"), "requests", "ms", "request.ttfat_ms")
            for metric, median, unit in (("reasoning_tokens", c.reasoning_tokens_p50, "tokens"),
                                        ("answer_tokens", c.answer_tokens_p50, "tokens"),
                                        ("decode_tps_reasoning", c.decode_tps_reasoning_p50, "tok/s"),
                                        ("decode_tps_answer", c.decode_tps_answer_p50, "tok/s")):
                add(metric, "median", median, n, "requests", unit, f"request.{metric}")
        if c.gpu_mem_used_mib_max is not None:
            add("gpu_mem_used_mib", "max", c.gpu_mem_used_mib_max, c.valid_runs, "runs", "MiB",
                "energy.gpu_mem_used_mib_max")


# multi-agent agent figures: "<role>_<phase>_<metric>" (multi_agent.AGENT_FIELDS) -> (unit, definition)
_AGENT_UNITS = {"decode_tps": ("tok/s", "multi_agent.agent decode tok/s"), "ttft_ms": ("ms", "multi_agent.agent TTFT")}


def _multi(out: _Out, data: ReportData) -> None:
    if data.multi_agent is None:
        return
    for r in data.multi_agent.results:
        values: dict[str, ConfigValue] = {"scenario": r.scenario}

        def add(metric: str, statistic: Statistic, value: Any, unit: str, definition: str,
                ci: tuple[float, float] | None = None) -> None:
            out.add("multi_agent", r.model, r.scenario, values, metric, statistic, value, r.valid_runs, "runs", unit,
                    definition, ci, _PER_RUN_CI)

        add("speedup", "mean", r.speedup_mean, "x", "multi_agent.speedup")
        add("speedup", "median", r.speedup_p50, "x", "multi_agent.speedup", r.speedup_p50_ci)
        add("speedup", "min", r.speedup_min, "x", "multi_agent.speedup")
        add("efficiency_pct", "mean", r.efficiency_mean, "%", "multi_agent.efficiency_pct")
        add("efficiency_pct", "median", r.efficiency_p50, "%", "multi_agent.efficiency_pct", r.efficiency_p50_ci)
        add("efficiency_pct", "min", r.efficiency_min, "%", "multi_agent.efficiency_pct")
        add("concurrent_wall_s", "mean", r.concurrent_wall_s_mean, "s", "multi_agent.concurrent_wall_s")
        add("sequential_wall_s", "mean", r.sequential_wall_s_mean, "s", "multi_agent.sequential_wall_s")
        for key, value in r.agents.items():
            unit, definition = next(u for m, u in _AGENT_UNITS.items() if key.endswith(m))
            add(key, "mean", value, unit, definition)
        add("delta_decode_tps", "mean", r.delta_decode_tps, "tok/s", "multi_agent.deltas")
        add("delta_ttft_ms", "mean", r.delta_ttft_ms, "ms", "multi_agent.deltas")


# load step figures beside the latencies: field -> (unit, definition key, n counts the measured or the ok requests)
_LOAD_RATES: dict[str, tuple[str, str]] = {
    "offered_rps": ("req/s", "offered_rps"), "request_rps": ("req/s", "request_rps"),
    "output_tps": ("tok/s", "output_tps"), "goodput_rps": ("req/s", "goodput_rps"), "good_pct": ("%", "goodput_rps"),
    "error_rate_pct": ("%", "error_rate_pct")}
# prompt tokens per second beside the step's latencies: field -> definition key (medians over the ok requests)
_LOAD_PREFILL = {"prefill_tps_p50": "prefill_tps", "prefill_tps_client_p50": "prefill_tps"}
_PERCENTILES: dict[int, Statistic] = {50: "median", 90: "p90", 95: "p95", 99: "p99"}
_LOAD_CI = "load.p50 interval"


_LOAD_LATENCY_DEFINITION = {"queue": "load.queue_ms", "itl": "request.itl_ms", "ttft": "request.ttft_ms",
                            "tpot": "request.tpot_ms", "e2e": "request.e2e_ms", "prefill": "request.prefill_ms"}


# a step's energy and telemetry figures (metrics.ENERGY_DEFINITIONS): stored column -> (metric, statistic, unit);
# each written only where the step measured it
_STEP_ENERGY: dict[str, tuple[str, Statistic, str]] = {
    "energy_j": ("energy_j", "value", "J"), "j_per_token": ("j_per_token", "value", "J/token"),
    "tokens_per_j": ("tokens_per_j", "value", "tok/J"), "j_per_text": ("j_per_text", "value", "J/text"),
    "j_per_input_token": ("j_per_input_token", "value", "J/token"),
    "gpu_power_w_mean": ("gpu_power_w", "mean", "W"), "gpu_util_pct_mean": ("gpu_util_pct", "mean", "%"),
    "gpu_mem_used_mib_max": ("gpu_mem_used_mib", "max", "MiB"), "cpu_pct_mean": ("cpu_pct", "mean", "%"),
    "server_rss_mib_max": ("server_rss_mib", "max", "MiB")}
_ENERGY_KEY = {"j_per_input_token": "j_per_text"}  # defined together


def _step_energy(out: _Out, workload: Workload, model: str, label: str, values: dict[str, ConfigValue],
                 step: dict[str, Any]) -> None:
    for field, (metric, statistic, unit) in _STEP_ENERGY.items():
        value = step.get(field)
        if value is not None and not pd.isna(value):
            out.add(workload, model, label, values, metric, statistic, value, None, None, unit,
                    f"energy.{_ENERGY_KEY.get(field, field)}")


def _load(out: _Out, data: ReportData) -> None:
    if data.load is None:
        return
    for s in data.load.steps:
        values: dict[str, ConfigValue] = {"config": s.config, "step_index": s.step_index, "step_label": s.step_label,
                                          "mode": s.mode, "concurrency": s.concurrency, "rate": s.rate,
                                          "slots": s.slots, "max_queue": s.max_queue, "max_tokens": s.max_tokens,
                                          "valid": s.valid}
        label = f"{s.config} {s.step_label}"
        for field, (unit, key) in _LOAD_RATES.items():
            out.add("load", s.model, label, values, field, "value", getattr(s, field), s.n_requests, "requests", unit,
                    f"load.{key}")
        out.add("load", s.model, label, values, "n_ended_early", "value", s.n_ended_early, s.n_ok, "requests", "1",
                "load.n_ended_early")
        out.add("load", s.model, label, values, "output_share", "median", s.output_share_p50, s.n_ok, "requests", "1",
                "load.output_share")
        out.add("load", s.model, label, values, "output_share", "min", s.output_share_min, s.n_ok, "requests", "1",
                "load.output_share")
        for field, key in _LOAD_PREFILL.items():
            out.add("load", s.model, label, values, field.removesuffix("_p50"), "median", getattr(s, field), s.n_ok,
                    "requests", "tok/s", f"load.{key}")
        for m in LOAD_LATENCIES:
            for p in LOAD_PCTS:
                ci = s.p50_ci(m) if p == 50 else None
                out.add("load", s.model, label, values, f"{m}_ms", _PERCENTILES[p], getattr(s, f"{m}_ms_p{p}"), s.n_ok,
                        "requests", "ms", _LOAD_LATENCY_DEFINITION[m], ci, _LOAD_CI if ci else None)
        _step_energy(out, "load", s.model, label, values, s.model_dump())
    for b in batched_prefills(data.load):
        out.add("load", b.model, f"{b.config} {b.step_label}", {"config": b.config, "step_label": b.step_label,
                                                               "concurrency": b.concurrency, "slots": b.slots},
                "batched_prefill_wait_ms", "value", b.wait_ms, None, None, "ms", "load.batched prefill wait")
    for summary in data.load.summaries:
        model, config = summary.model, summary.config
        values = {"config": config}
        out.add("load", model, config, values, "saturation_rps", "value", summary.saturation_rps, None, None, "req/s",
                "load.saturation point")
        out.add("load", model, config, values, "goodput_rps", "max", summary.best_goodput_rps, None, None, "req/s",
                "load.goodput_rps")
        out.add("load", model, config, values, "output_tps", "max", summary.peak_output_tps, None, None, "tok/s",
                "load.output_tps")


def _embeddings(out: _Out, data: ReportData) -> None:
    if data.load is None or not data.load.embedding_steps:
        return
    for r in latest_steps(pd.DataFrame(data.load.embedding_steps)).to_dict("records"):
        values: dict[str, ConfigValue] = {"instance": r["instance"], "batch_size": int(r["batch_size"]),
                                          "concurrency": int(r["concurrency"]), "slo_ms": r["slo_ms"]}
        label = f"{r['instance']} batch{int(r['batch_size'])}_conc{int(r['concurrency'])}"
        n = int(r["n_requests"])

        def add(metric: str, statistic: Statistic, value: Any, unit: str, key: str) -> None:
            out.add("embeddings", str(r["model"]), label, values, metric, statistic, value, n, "requests", unit,
                    f"embeddings.{key}")

        add("texts_per_s", "value", r["texts_per_s"], "texts/s", "texts_per_s")
        add("tokens_per_s", "value", r["tokens_per_s"], "tok/s", "tokens_per_s")
        add("latency_ms", "median", r["latency_p50_ms"], "ms", "latency")
        add("latency_ms", "p95", r["latency_p95_ms"], "ms", "latency")
        add("latency_ms", "p99", r["latency_p99_ms"], "ms", "latency")
        add("within_slo_pct", "value", r["within_slo_pct"], "%", "within_slo_pct")
        _step_energy(out, "embeddings", str(r["model"]), label, values, r)


def _suites(out: _Out, data: ReportData) -> None:
    if data.suites is None:
        return
    for r in data.suites.scenarios:
        values: dict[str, ConfigValue] = {"scenario": r["scenario"], "json_mode": bool(r["json_mode"])}
        n = int(r["requests"])
        for metric in ("json_parse_rate", "schema_valid_rate", "route_accuracy", "sane_rate"):
            out.add("suites", r["model"], r["scenario"], values, metric, "value", r[metric], n, "requests", "1",
                    f"suites.{metric}")
        out.add("suites", r["model"], r["scenario"], values, "output_tokens", "mean", r["output_tokens_mean"], n,
                "requests", "tokens", "suites.output_tokens")
        for p in (50, 95, 99):
            out.add("suites", r["model"], r["scenario"], values, "latency_ms", _PERCENTILES[p], r[f"latency_ms_p{p}"],
                    n, "requests", "ms", "suites.latency_ms")
    for r in data.suites.qa:
        values = {"suite": "qa", "kind": r["kind"]}
        n = int(r["questions"])
        for metric, key in (("qa_overall", "overall"), ("value_accuracy", "value_accuracy"),
                            ("ref_overlap", "ref_overlap"), ("na_recall", "na_recall"), ("unit_match", "unit_match")):
            out.add("suites", r["model"], "qa", values, metric, "value", r[key], n, "questions", "1",
                    f"suites.{metric}")
        for p in (50, 95):
            out.add("suites", r["model"], "qa", values, "latency_ms", _PERCENTILES[p], r[f"latency_ms_p{p}"], n,
                    "questions", "ms", "suites.latency_ms")
        out.add("suites", r["model"], "qa", values, "output_tokens", "mean", r["output_tokens_mean"], n, "questions",
                "tokens", "suites.output_tokens")


def _parts(out: _Out, data: ReportData) -> None:
    """The figures registered workloads' own sections show (their section's numbers, not recomputed)."""
    for part in data.workload_parts:
        for f in part.figures:
            out.records.append(SummaryRecord(
                tr_id=out.tr_id, workload=part.workload, model=f.model, config=f.config, config_values=f.config_values,
                metric=f.metric, statistic=f.statistic, value=f.value, ci_low=f.ci[0] if f.ci else None,
                ci_high=f.ci[1] if f.ci else None, ci_definition=f.ci_definition if f.ci else None, n=f.n,
                n_of=f.n_of, unit=f.unit, definition=f.definition))


def definition_text(definition: str) -> str:
    """The text of a definition id '<catalog>.<key>' (a KeyError for an id no table holds)."""
    catalog, _, key = definition.partition(".")
    return CATALOGS[catalog][key]


def build_summary(data: ReportData) -> SummaryFile:
    """The records of a built report, in report order: single agent, suites, multi agent, load, embeddings,
    then the registered workloads' own sections (only the workloads the TR measured)."""
    out = _Out(data.tr_id)
    present = set(data.workloads)
    if "single" in present:
        _single(out, data.cells, data.cache.states)
    if "suites" in present:
        _suites(out, data)
    if "multi" in present:
        _multi(out, data)
    if "load" in present:
        _load(out, data)
    if "embeddings" in present:
        _embeddings(out, data)
    _parts(out, data)
    ids = sorted({i for r in out.records for i in (r.definition, r.ci_definition) if i is not None})
    return SummaryFile(schema_version=SCHEMA_VERSION, tr_id=data.tr_id, definitions={i: definition_text(i) for i in ids}, records=out.records)


# --- the files ------------------------------------------------------------------------------------------


def json_text(summary: SummaryFile) -> str:
    return summary.model_dump_json(indent=2) + "\n"


def _csv_rows(summary: SummaryFile) -> Iterator[list[Any]]:
    for r in summary.records:
        row = r.model_dump()
        row["config_values"] = json.dumps(r.config_values, sort_keys=True)
        yield ["" if row[c] is None else row[c] for c in CSV_COLUMNS]


def csv_text(summary: SummaryFile) -> str:
    """One line per record, the columns of CSV_COLUMNS; config_values as JSON text, a null as an empty cell,
    floats as Python writes them (repr: they read back to the same double)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_rows(summary))
    return buffer.getvalue()


def write_summary(folder: Path, data: ReportData) -> tuple[Path, Path]:
    """Write folder/summary.json and folder/summary.csv (each atomically); returns their paths."""
    summary = build_summary(data)
    json_path, csv_path = Path(folder) / JSON_FILE, Path(folder) / CSV_FILE
    write_text_atomic(json_path, json_text(summary))
    write_text_atomic(csv_path, csv_text(summary))
    return json_path, csv_path


def schema_text() -> str:
    """docs/summary.schema.json: SummaryFile's JSON Schema."""
    return json.dumps(SummaryFile.model_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
