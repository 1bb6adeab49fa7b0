"""The report against a planted dataset: every number recomputed independently from the Parquet rows."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from trbench.data.environment import Manifest
from trbench.measure import metrics
from trbench.validation.checks import REPORT_SECTIONS
from trbench.report import (SECTIONS, build_report, render_appendix_html, render_appendix_markdown, render_html,
                            render_markdown, write_report)
from trbench.config.spec import MatrixSpec
from trbench.data.store import RUN_SCHEMA, REQUEST_SCHEMA, write_run
from tests.test_report_publish import md_table_after

TR_ID = "TRtest"
MODELS = ["beta-model", "alpha-model"]  # not alphabetical: the baseline rule must pick alpha-model
CONFIGS = [(0, 512, 0.8), (80, 1024, 0.8)]
RUNS = 3
REQUESTS = 4
WARMUP_EXTREME = 1_000_000.0  # a warm-up value that would dominate every statistic it got into
INVALID = ("beta-model", CONFIGS[1], 1)  # model, config, run_index of the invalid run
FAILED = ("alpha-model", CONFIGS[0], 2, 1)  # model, config, run_index, measured request of the failed request
FAIL_KIND = "http_5xx"
FAIL_MESSAGE = "server exploded: " + "x" * 300  # longer than the 200-character limit
MANIFEST = {
    "command": "trbench run deployments/test.yaml",
    "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
    "packages": {"pandas": "3.0.0", "pyarrow": "20.0.0"},
    "hardware": {"cpu": "Planted CPU 9000", "cpu_cores_logical": 2, "memory_gib": 7.5, "gpus": []},
    "instances": [{"name": "embedded-0", "provider": "embedded", "url": "http://127.0.0.1:18434"}],
    "models": {"alpha-model": {"digest": "sha256:aaaa"}, "beta-model": {"digest": "sha256:bbbb"}},
}

RESULT_HEADERS = ["decode tok/s mean", "decode tok/s p50", "decode tok/s p95", "TTFT cold p50 ms", "TTFT cold p95 ms",
                  "TTFT cached p50 ms", "TTFT cached p95 ms", "e2e p50 ms", "e2e p95 ms", "CV %"]
RESULT_FIELDS = ["decode_tps_mean", "decode_tps_p50", "decode_tps_p95", "ttft_cold_p50_ms", "ttft_cold_p95_ms",
                 "ttft_cached_p50_ms", "ttft_cached_p95_ms", "e2e_p50_ms", "e2e_p95_ms", "cv_pct"]


def _label(cfg: tuple[int, int, float]) -> str:
    return f"gpu{cfg[0]}_ctx{cfg[1]}_temp{cfg[2]:g}"


def _plant(root: Path) -> None:
    rng = np.random.default_rng(7)
    started = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for mi, model in enumerate(MODELS):
        for cfg in CONFIGS:
            g, c, t = cfg
            for run_index in range(RUNS):
                run_id = f"{model}_{_label(cfg)}_r{run_index:02d}_a1"
                keys = {
                    "tr_id": TR_ID, "run_id": run_id, "attempt": 1, "cell_hash": f"h{mi}{g}{c}",
                    "model": model, "provider": "embedded", "backend": "openai", "instance": "embedded-0",
                    "instance_url": "http://127.0.0.1:18434", "num_gpu": g, "num_ctx": c, "temperature": t,
                    "ttft_mode": "both", "run_index": run_index,
                }
                rows = []
                warmups = 1 if run_index == 0 else 0
                for i in range(warmups + REQUESTS):
                    warm = i < warmups
                    failed = (model, cfg, run_index, i - warmups) == FAILED
                    base_tps = 50.0 + 20 * mi + g / 10
                    ok = not failed
                    # measured prompts alternate cold (a 100-200 ms prefill) and cached (5-20 ms), as ttft: both
                    cold = (i - warmups) % 2 == 0
                    ttft = float(rng.uniform(100, 200) if cold else rng.uniform(5, 20))
                    rows.append({
                        **keys, "request_index": i, "is_warmup": warm, "prompt_id": f"p{i}",
                        "sent_at": started, "status": "ok" if ok else "error",
                        "error_kind": None if ok else FAIL_KIND, "error_message": None if ok else FAIL_MESSAGE,
                        "ttft_ms": WARMUP_EXTREME if warm else (ttft if ok else None),
                        "cache_target": None if warm else ("cold" if cold else "cached"),
                        "cache_state": "cold" if warm or cold else "cached",
                        "e2e_ms": WARMUP_EXTREME if warm else float(rng.uniform(500, 3000)),
                        "decode_tps": WARMUP_EXTREME if warm else (base_tps + float(rng.normal(0, 5)) if ok else None),
                        "output_tokens": 64 if ok else None,
                        "cached_tokens": 1000 if warm else (10 if ok else None),
                    })
                valid = (model, cfg, run_index) != INVALID
                if not valid:  # an invalid run whose numbers would also skew every statistic
                    for r in rows:
                        if not r["is_warmup"]:
                            r["decode_tps"], r["ttft_ms"], r["e2e_ms"] = 1e-3, 9e5, 9e5
                measured = [r for r in rows if not r["is_warmup"]]
                run_row = {
                    **keys, "started_at": started + dt.timedelta(minutes=len(list(root.rglob("*.parquet")))),
                    "wall_s": 1.0, "n_requests": len(measured), "n_warmup": warmups,
                    "n_ok": sum(r["status"] == "ok" for r in measured),
                    "n_errors": sum(r["status"] != "ok" for r in measured), "min_ok_requests": REQUESTS - 1,
                    "valid": valid, "invalid_reason": None if valid else "planted: instance restarted mid-run",
                }
                write_run(root, run_row, rows, Manifest.lenient(MANIFEST))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tr") / TR_ID
    _plant(root)
    return root


@pytest.fixture(scope="module")
def report_path(planted: Path) -> Path:
    return write_report(planted)


@pytest.fixture(scope="module")
def text(report_path: Path) -> str:
    return report_path.read_text()


@pytest.fixture(scope="module")
def appendix(report_path: Path) -> str:
    """The appendix written beside the report: the detail tables and definitions."""
    return report_path.with_name(f"{TR_ID}-appendix.md").read_text()


# --- an independent recomputation: pyarrow.dataset + numpy, no trbench code --------------------


def _frame(root: Path, table: str) -> pd.DataFrame:
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pandas()


def _expected(root: Path) -> dict[tuple[str, str], dict[str, float]]:
    reqs, runs = _frame(root, "requests"), _frame(root, "runs")
    out = {}
    for (model, g, c, t), cell_runs in runs.groupby(["model", "num_gpu", "num_ctx", "temperature"]):
        valid_ids = cell_runs.loc[cell_runs["valid"], "run_id"]
        r = reqs[reqs["run_id"].isin(cell_runs["run_id"])]
        measured = r[~r["is_warmup"]]
        pooled = measured[(measured["status"] == "ok") & measured["run_id"].isin(valid_ids)]
        tps, e2e = (pooled[k].dropna().to_numpy() for k in ("decode_tps", "e2e_ms"))
        cold = pooled.loc[pooled["cache_state"] == "cold", "ttft_ms"].to_numpy()
        cached = pooled.loc[pooled["cache_state"] == "cached", "ttft_ms"].to_numpy()
        run_means = pooled.groupby("run_id")["decode_tps"].mean().to_numpy()
        out[(model, f"gpu{g}_ctx{c}_temp{t:g}")] = {
            "decode tok/s mean": tps.mean(),
            "decode tok/s p50": np.percentile(tps, 50),
            "decode tok/s p95": np.percentile(tps, 95),
            "TTFT cold p50 ms": np.percentile(cold, 50),
            "TTFT cold p95 ms": np.percentile(cold, 95),
            "TTFT cached p50 ms": np.percentile(cached, 50),
            "TTFT cached p95 ms": np.percentile(cached, 95),
            "TTFT cold n": len(cold),
            "TTFT cached n": len(cached),
            "e2e p50 ms": np.percentile(e2e, 50),
            "e2e p95 ms": np.percentile(e2e, 95),
            "CV %": run_means.std(ddof=1) / run_means.mean() * 100,
            "n": len(pooled),
            "valid": int(cell_runs["valid"].sum()),
            "runs": len(cell_runs),
            "failed": int((measured["status"] != "ok").sum()),
            "invalid": int((~cell_runs["valid"]).sum()),
        }
    return out


def _table(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table under the heading line `heading`, as dicts keyed by header; a wide
    table's parts (back to back, each repeating the key columns) joined row by row."""
    return md_table_after(text, heading)


# --- the tests ---------------------------------------------------------------------------------


def test_report_written_at_tr_root_report_tr_id(planted: Path, report_path: Path) -> None:
    assert report_path == planted / "report" / f"{TR_ID}.md"
    assert report_path.is_file()
    assert not list(report_path.parent.glob(".*.tmp"))
    assert f"`{TR_ID}`" in report_path.read_text()


def test_planted_data_is_what_the_test_expects(planted: Path) -> None:
    reqs, runs = _frame(planted, "requests"), _frame(planted, "runs")
    assert len(runs) == len(MODELS) * len(CONFIGS) * RUNS
    assert (~runs["valid"]).sum() == 1
    assert (reqs["status"] != "ok").sum() == 1
    assert (reqs["is_warmup"] & (reqs["decode_tps"] == WARMUP_EXTREME)).sum() == len(MODELS) * len(CONFIGS)


def test_results_table_matches_independent_recomputation(planted: Path, text: str, appendix: str) -> None:
    expected = _expected(planted)
    rows = _table(appendix, "## Single-agent tables")
    assert {(r["model"], r["config"]) for r in rows} == set(expected)
    assert len(rows) == len(MODELS) * len(CONFIGS)
    for row in rows:
        exp = expected[(row["model"], row["config"])]
        for header in RESULT_HEADERS:
            assert row[header] == f"{exp[header]:.1f}", (row["model"], row["config"], header)
        assert row["n"] == str(exp["n"])
        assert row["TTFT cold n"] == str(exp["TTFT cold n"]) and row["TTFT cached n"] == str(exp["TTFT cached n"])
        assert "TTFT p50 ms" not in row and "TTFT partial p50 ms" not in row  # no pooled TTFT, no empty states
        assert row["valid runs / runs"] == f"{exp['valid']} / {exp['runs']}"
        assert row["failed requests"] == str(exp["failed"])
        assert row["invalid runs"] == str(exp["invalid"])


def test_report_data_matches_recomputation_to_full_precision(planted: Path) -> None:
    expected = _expected(planted)
    data = build_report(planted)
    fields = dict(zip(RESULT_HEADERS, RESULT_FIELDS))
    assert len(data.cells) == len(expected)
    for cell in data.cells:
        exp = expected[(cell.model, cell.config.label)]
        for header, field in fields.items():
            assert getattr(cell, field) == pytest.approx(exp[header], rel=1e-12), (cell.model, field)


def test_warmup_and_invalid_rows_excluded(planted: Path, text: str, appendix: str) -> None:
    data = build_report(planted)
    for cell in data.cells:
        for v in (cell.decode_tps_mean, cell.decode_tps_p95, cell.ttft_cold_p95_ms, cell.ttft_cached_p95_ms,
                  cell.e2e_p95_ms):
            assert v < 10_000, (cell.model, cell.config.label, v)  # warm-up values are 1e6, invalid-run 9e5
        assert cell.decode_tps_p50 > 1  # invalid-run decode_tps is 1e-3
    bad = next(c for c in data.cells if (c.model, c.config.label) == (INVALID[0], _label(INVALID[1])))
    assert (bad.valid_runs, bad.runs, bad.invalid_runs) == (RUNS - 1, RUNS, 1)
    assert bad.n_requests == (RUNS - 1) * REQUESTS
    assert len(bad.run_means_decode_tps) == RUNS - 1
    assert data.n_warmup_rows == len(MODELS) * len(CONFIGS)
    # cached tokens: warm-ups (1000 each) excluded, 10 per pooled ok request
    assert data.cache.cached_tokens_total == 10 * sum(c.n_requests for c in data.cells)
    assert all("1000000.0" not in t and "900000.0" not in t for t in (text, appendix))


def test_baseline_is_first_alphabetically_and_100_percent(appendix: str, planted: Path) -> None:
    data = build_report(planted)
    assert data.baseline_model == "alpha-model"
    assert "alphabetically" in data.baseline_source
    assert "Baseline: `alpha-model`" in appendix
    assert all(r.values[f] == 100.0 for r in data.pct_of_baseline if r.model == "alpha-model"
               for f in r.values if r.values[f] is not None)
    rows = _table(appendix, "### % of baseline")
    # the baseline's own rows (always 100) are left out of the table
    assert len(rows) == (len(MODELS) - 1) * len(CONFIGS)
    expected = _expected(planted)
    for row in rows:
        pct_cols = [h for h in row if h.endswith(" %") and h != "CV % %"]
        # the medians' shares: decode, TTFT per cache state (cold, cached), e2e
        assert pct_cols == ["decode tok/s p50 %", "TTFT cold p50 ms %", "TTFT cached p50 ms %", "e2e p50 ms %"]
        for col in pct_cols:
            header = col[: -len(" %")]
            assert row["model"] != "alpha-model"
            exp = expected[(row["model"], row["config"])][header] / expected[("alpha-model", row["config"])][header]
            assert row[col] == f"{exp * 100:.1f}", (row, col)


def test_spec_baseline_and_title_take_precedence(planted: Path) -> None:
    spec = MatrixSpec(tr_id=TR_ID, title="Planted TR", objective="Check the report.", models=MODELS,
                      baseline_model="beta-model")
    data = build_report(planted, spec)
    assert data.tr_id == TR_ID
    assert data.baseline_model == "beta-model"
    assert data.baseline_source == "the spec's baseline_model"
    assert [c.model for c in data.cells][0] == "beta-model"  # the spec's model order
    text = render_markdown(data)
    assert text.startswith("# Planted TR")
    assert "Check the report." in text
    appendix = render_appendix_markdown(data)
    assert "Baseline: `beta-model`" in appendix
    rows = _table(appendix, "### % of baseline")
    assert rows and all(row["model"] == "alpha-model" for row in rows)  # the baseline's rows are 100: left out


def test_definitions_section_has_the_formula_of_every_metric_it_shows_and_only_those(appendix: str) -> None:
    section = appendix[appendix.index("## Metric definitions"):]
    # a single- and multi-agent TR without reasoning, load or synthetic steps: their metrics are not defined
    not_shown = {"ttfat_ms", "reasoning_tokens", "answer_tokens", "decode_tps_reasoning", "decode_tps_answer",
                 "tpot_ms", "itl_ms", "stopped_early", "input_exact"}
    for name, formula in {**metrics.DEFINITIONS, **metrics.RUN_DEFINITIONS}.items():
        assert (formula in section) == (name not in not_shown), name
    for name in set(metrics.DEFINITIONS) - not_shown:
        assert f"`{name}`" in section


def test_failures_section_lists_failed_request_and_invalid_run(text: str) -> None:
    section = text[text.index("## Failures"):]
    failed = _table(section, "### Failed requests")
    assert len(failed) == 1
    f = failed[0]
    assert f["error_kind"] == FAIL_KIND
    assert (f["model"], f["config"]) == (FAILED[0], _label(FAILED[1]))
    assert f["run_id"] == f"{FAILED[0]}_{_label(FAILED[1])}_r{FAILED[2]:02d}_a1"
    assert f["message"].startswith("server exploded")
    assert len(f["message"]) == 200
    invalid = _table(section, "### Invalid runs")
    assert len(invalid) == 1
    assert invalid[0]["invalid_reason"] == "planted: instance restarted mid-run"
    assert invalid[0]["model"] == INVALID[0]


def test_setup_section_from_manifest_in_run_metadata(planted: Path, text: str, appendix: str) -> None:
    # no manifest.json was written: the manifest comes from the Parquet metadata
    assert not (planted / "manifest.json").exists()
    short = text[text.index("## Setup"):text.index("\n## Results\n")]  # the report's: command to instances
    assert MANIFEST["command"] in short
    assert MANIFEST["git"]["commit"] in short and "dirty" in short
    assert "Planted CPU 9000" in short and "2 logical cores" in short and "7.5 GiB" in short
    assert "GPUs: none" in short
    assert "http://127.0.0.1:18434" in short and "embedded-0" in short
    assert "- Instances: embedded-0 (embedded, http://127.0.0.1:18434)" in short
    setup = appendix[appendix.index("## Setup details"):appendix.index("## Methodology")]  # the rest
    assert "sha256:aaaa" in setup and "sha256:bbbb" in setup
    assert "- Packages: pandas 3.0.0, pyarrow 20.0.0\n" in setup
    assert "sent cold (a unique prefix), then again, identical" in setup  # ttft: both
    # every state confirmed as asked: one sentence stands for the asked-against-reported table
    assert "### Prompt caching and TTFT" in setup and "| asked for |" not in setup
    assert re.search(r"confirmed every measured request's cache state as asked \(cached \d+, cold \d+\)", setup)


def test_manifest_json_preferred_over_metadata(planted: Path, tmp_path: Path) -> None:
    root = tmp_path / TR_ID
    _plant(root)
    (root / "manifest.json").write_text(json.dumps({**MANIFEST, "command": "from manifest.json"}))
    data = build_report(root)
    assert data.setup.command == "from manifest.json"
    assert data.setup.manifest_source == "manifest.json"


def test_empty_tr_root_renders(tmp_path: Path) -> None:
    data = build_report(tmp_path / "nothing")
    text = render_markdown(data)
    # nothing in the data: the report says so once, and shows no section of a workload it did not see
    assert "- Measured: nothing" in text and "Nothing was measured" in text
    assert "## Results" not in text and "## Load" not in text and "No finished runs." not in text
    assert data.cells == [] and data.baseline_model is None


def test_both_renderings_carry_every_section_heading_from_its_one_home(planted: Path, text: str,
                                                                    appendix: str) -> None:
    # the templates write the headings from trbench.report.outline, which the validation checks against;
    # each section in its own document, the publishable report or its appendix
    data = build_report(planted)
    docs = {"report": (text, render_html(data)), "appendix": (appendix, render_appendix_html(data))}
    for section in SECTIONS.values():
        md, html = docs[section.doc]
        headings = [ln for ln in md.splitlines() if ln.startswith("##")]
        if not section.shown(data.present):
            assert section.heading not in headings  # no multi-agent, load or suite runs planted
            continue
        assert section.heading in headings
        assert re.search(rf"<h{section.level}[^>]*>{re.escape(section.title)}</h{section.level}>", html)
    headings = [ln for ln in text.splitlines() if ln.startswith("##")]
    assert [h for h in headings if h in REPORT_SECTIONS] == REPORT_SECTIONS  # in report order


def test_schemas_cover_planted_columns() -> None:
    # the planted rows only use columns the storage schemas define (write_run would drop others silently)
    planted_request_cols = {"ttft_ms", "e2e_ms", "decode_tps", "cached_tokens", "is_warmup", "error_kind"}
    planted_run_cols = {"valid", "invalid_reason", "started_at"}
    assert planted_request_cols <= set(REQUEST_SCHEMA.names)
    assert planted_run_cols <= set(RUN_SCHEMA.names)


def test_rerun_attempt_supersedes_earlier_attempt(tmp_path: Path) -> None:
    root = tmp_path / TR_ID
    _plant(root)
    model, cfg, run_index = INVALID
    old_id = f"{model}_{_label(cfg)}_r{run_index:02d}_a1"
    def pylist(table: str) -> list[dict]:
        rows = ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pylist()
        return [{k: v for k, v in r.items() if k != "model_slug"} for r in rows if r["run_id"] == old_id]

    new_id = old_id.replace("_a1", "_a2")
    run_row = {**pylist("runs")[0], "run_id": new_id, "attempt": 2, "valid": True, "invalid_reason": None}
    rows = [{**r, "run_id": new_id, "attempt": 2, "decode_tps": 60.0, "ttft_ms": 100.0, "e2e_ms": 1000.0}
            for r in pylist("requests")]
    write_run(root, run_row, rows, Manifest.lenient(MANIFEST))
    data = build_report(root)
    cell = next(c for c in data.cells if (c.model, c.config.label) == (model, _label(cfg)))
    assert (cell.valid_runs, cell.runs, cell.invalid_runs, cell.superseded_runs) == (RUNS, RUNS, 0, 1)
    assert cell.n_requests == RUNS * REQUESTS
    assert data.invalid_runs == []
    assert "1 superseded attempt (re-run with a higher attempt number) is left out" in render_appendix_markdown(data)
