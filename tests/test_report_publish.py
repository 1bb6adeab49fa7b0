"""The published report (Markdown + self-contained HTML + plots), the winner matrix, the energy
frontier and the regression check, on planted datasets written with trbench.data.store.write_run.

No servers: every dataset is planted, every number is recomputed here from the Parquet rows."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from PIL import Image

from trbench.data.environment import Manifest
from trbench.measure import metrics
from trbench.data import store
from trbench.report.regression import compare, summary_message
from trbench.report import build_report, publish
from trbench.data.store import write_run

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
CONFIGS = [(0, 512, 0.8), (80, 1024, 0.8)]
MANIFEST = {
    "command": "trbench run deployments/planted.yaml",
    "git": {"commit": "fedcba9876543210fedcba9876543210fedcba98", "dirty": False},
    "packages": {"pandas": "3.0.0"},
    "hardware": {"cpu": "Planted CPU", "cpu_cores_logical": 2, "memory_gib": 8.0, "gpus": []},
    "instances": [{"name": "embedded-0", "provider": "embedded", "url": "http://127.0.0.1:18434"},
                  {"name": "embedded-1", "provider": "embedded", "url": "http://127.0.0.1:18435"}],
    "models": {"fast-model": {"digest": "sha256:f00d", "quantization": "Q4_K_M", "params_b": 1.0,
                              "size_bytes": 2 ** 30},
               "slow-model": {"digest": "sha256:510e", "quantization": "Q8_0", "params_b": 2.0}},
    "spec": {"tr_id": "planted", "title": "Planted TR", "objective": "Check the published report.",
             "models": ["fast-model", "slow-model"], "baseline_model": "slow-model"},
}


def _label(cfg: tuple[int, int, float]) -> str:
    return f"gpu{cfg[0]}_ctx{cfg[1]}_temp{cfg[2]:g}"


def plant(root: Path, models: dict[str, dict], *, tr_id: str = "planted", runs: int = 3, requests: int = 5,
          seed: int = 7, manifest: dict | None = None, energy: bool = False, multi: dict[str, float] | None = None,
          answers: dict[str, str] | None = None, hash_salt: str = "", provider: str = "embedded",
          reasoning: dict[str, int] | None = None) -> Path:
    """models: name -> {tps, ttft, e2e, sd (relative noise)}; multi: name -> efficiency % level;
    reasoning: name -> reasoning tokens streamed before each answer (a model not named has files without
    the reasoning columns, as written before them);
    hash_salt: cells measured otherwise (another content hash, the same config values) than a TR planted
    without it."""
    rng = np.random.default_rng(seed)
    started = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    recorded = Manifest.lenient(manifest or MANIFEST)  # as a manifest.json or file metadata holds it
    for model, p in models.items():
        sd = p.get("sd", 0.0)
        for cfg in CONFIGS:
            g, c, t = cfg
            for run_index in range(runs):
                run_id = f"{store.slug(model)}_{_label(cfg)}_r{run_index:02d}_a1"
                keys = {"tr_id": tr_id, "run_id": run_id, "attempt": 1, "cell_hash": f"{model}-{g}-{c}{hash_salt}",
                        "model": model, "provider": provider, "backend": "openai", "instance": "embedded-0",
                        "instance_url": "http://127.0.0.1:18434", "num_gpu": g, "num_ctx": c, "temperature": t,
                        "ttft_mode": "cold", "run_index": run_index}
                rows = [{**keys, "request_index": 0, "is_warmup": True, "prompt_id": "warm", "status": "ok",
                         "ttft_ms": 9e5, "e2e_ms": 9e5, "decode_tps": 1e6, "output_tokens": 8, "sent_at": started}]
                for i in range(requests):
                    noise = (lambda: 1.0 + sd * float(rng.standard_normal())) if sd else (lambda: 1.0)
                    rows.append({**keys, "request_index": i + 1, "is_warmup": False, "prompt_id": f"p{i}",
                                 "status": "ok", "sent_at": started, "decode_tps": p["tps"] * noise(),
                                 "ttft_ms": p["ttft"] * noise(), "e2e_ms": p["e2e"] * noise(), "output_tokens": 64,
                                 "cache_target": "cold", "cache_state": "cold", "answer_check": "ok",
                                 "output_text": (answers or {}).get(model, f"answer {i} of {model}")})
                    if reasoning is not None and model in reasoning:
                        k = reasoning[model]
                        rows[-1].update(reasoning_tokens=k, answer_tokens=64 - k, ttfat_ms=rows[-1]["ttft_ms"] + 5.0 * k,
                                        decode_tps_reasoning=p["tps"] if k > 1 else None,
                                        decode_tps_answer=0.9 * p["tps"])
                run = {**keys, "started_at": started + dt.timedelta(minutes=run_index), "wall_s": 1.0,
                       "n_requests": requests, "n_warmup": 1, "n_ok": requests, "n_errors": 0,
                       "min_ok_requests": requests, "valid": True, "output_tokens_total": 64 * requests}
                if energy:
                    joules = 64 * requests / p["tpj"] * (1 + 0.01 * run_index)
                    run.update(energy_j=joules, tokens_per_j=64 * requests / joules,
                               gpu_mem_used_mib_max=p["vram"] + run_index, tokens_per_dollar=1e5)
                write_run(root, run, rows, recorded)
    for model, level in (multi or {}).items():
        for scenario in ("baseline_vs_chimera", "chimera_homo"):
            for run_index in range(3):
                eff = level + run_index * 0.5 + (5 if scenario == "chimera_homo" else 0)
                write_run(root, {
                    "tr_id": tr_id, "run_id": f"{store.slug(model)}_{scenario}_r{run_index:02d}_a1", "attempt": 1,
                    "cell_hash": f"ma-{model}-{scenario}", "model": model, "scenario": scenario, "provider": "embedded",
                    "backend": "openai", "run_index": run_index, "started_at": started, "n_agents": 2,
                    "concurrent_wall_s": 2.0, "sequential_wall_s": 2.0 * eff / 50, "speedup": eff / 50,
                    "efficiency_pct": eff, "n_requests": 4, "n_errors": 0, "valid": True, "contention": False,
                    "contention_rule": "planted rule", "collector_options": "{}", "insight_options": "{}",
                }, [], recorded, kind="multi")
    return root


FAST = {"tps": 100.0, "ttft": 50.0, "e2e": 700.0, "sd": 0.02, "tpj": 2.0, "vram": 3000.0}
SLOW = {"tps": 50.0, "ttft": 100.0, "e2e": 1400.0, "sd": 0.02, "tpj": 1.0, "vram": 6000.0}


# --- parsing what was written ---------------------------------------------------------------------


class Page(HTMLParser):
    """Headings, the text under each h2, tables (cell text), images and <pre> blocks of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.section_text: dict[str, str] = {}
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.pres: list[str] = []
        self.tags: list[str] = []
        self._heading: str | None = None
        self._h2: str | None = None
        self._cell: list[str] | None = None
        self._pre: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._heading = ""
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append((tag, self._heading.strip()))
            if tag == "h2":
                self._h2 = self._heading.strip()
                self.section_text[self._h2] = ""
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre.append(data)
        if self._h2 is not None:
            self.section_text[self._h2] += data


def parse_html(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def md_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table (outside code fences), header row first, cells unescaped as rendered."""
    tables, block, fenced = [], [], False
    for line in text.splitlines() + [""]:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            block.append(line)
            continue
        if block:
            rows = [re.split(r"(?<!\\)\|", ln.strip()[1:-1]) for ln in block]
            cells = [[c.strip().replace("\\|", "|") for c in row] for row in rows]
            cells = [[c[1:-1] if len(c) > 1 and c[0] == c[-1] == "`" else c for c in row] for row in cells]
            tables.append([cells[0]] + cells[2:])
            block = []
    return tables


def md_table_after(text: str, heading: str) -> list[dict[str, str]]:
    """The first table under the heading line `heading`, its parts (a wide table is printed as parts
    that repeat its key columns, back to back) joined row by row: the repeated columns must agree."""
    found = re.search(rf"(^|\n){re.escape(heading)}\n", text)
    assert found, heading
    parts, lines = [], [chunk.strip("\n") for chunk in text[found.end():].split("\n\n")]
    for i, chunk in enumerate(lines):  # the first table and the parts right after it (each after its '*title:*')
        if chunk.startswith("|"):
            parts.append(md_tables(chunk)[0])
        elif parts and not (chunk.startswith("*") and chunk.endswith(":*") and i + 1 < len(lines)
                            and lines[i + 1].startswith("|")):
            break
    rows: list[dict[str, str]] = [{} for _ in parts[0][1:]]
    for part in parts:
        assert len(part) - 1 == len(rows), part
        for joined, row in zip(rows, part[1:]):
            assert len(row) == len(part[0]), (part[0], row)
            for header, value in zip(part[0], row):
                assert joined.setdefault(header, value) == value, (header, joined, row)
    return rows


def frame(root: Path, table: str) -> pd.DataFrame:
    return ds.dataset(root / table, format="parquet", partitioning="hive").to_table().to_pandas()


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clear(tmp_path_factory) -> tuple[Path, object]:
    """fast-model clearly faster than slow-model, multi-agent runs, a model answer with a script tag."""
    root = plant(tmp_path_factory.mktemp("clear") / "planted", {"fast-model": FAST, "slow-model": SLOW},
                 multi={"fast-model": 80.0, "slow-model": 55.0}, answers={"fast-model": f"Sure! {SCRIPT} done"})
    return root, publish(root)


@pytest.fixture(scope="module")
def html_page(clear) -> tuple[str, Page]:
    text = clear[1].html.read_text(encoding="utf-8")
    return text, parse_html(text)


@pytest.fixture(scope="module")
def appendix_page(clear) -> tuple[str, Page]:
    """The appendix's HTML: the detail tables and definitions."""
    text = clear[1].appendix_html.read_text(encoding="utf-8")
    return text, parse_html(text)


# --- winner by scenario --------------------------------------------------------------------------------


def test_clearly_faster_model_wins(clear) -> None:
    data = clear[1].data
    rows = {(w.scenario, w.config): w for w in data.winners}
    for cfg in CONFIGS:
        for scenario in ("single-agent decode tok/s", "single-agent TTFT cold", "single-agent e2e latency"):
            w = rows[(scenario, _label(cfg))]
            assert w.winner == "fast-model", (scenario, w)
            assert not metrics.intervals_overlap(w.estimates["fast-model"].ci, w.estimates["slow-model"].ci)
    for scenario in ("baseline_vs_chimera", "chimera_homo"):
        assert rows[(f"multi-agent efficiency {scenario}", "")].winner == "fast-model"
    assert not any("joule" in w.scenario for w in data.winners)  # no energy: no tokens-per-joule row


def test_overlapping_intervals_are_a_tie(tmp_path) -> None:
    a = {"tps": 100.0, "ttft": 50.0, "e2e": 700.0, "sd": 0.10}
    b = {"tps": 101.0, "ttft": 50.5, "e2e": 705.0, "sd": 0.10}
    data = build_report(plant(tmp_path / "planted", {"fast-model": a, "slow-model": b}, seed=3))
    assert data.winners
    for w in data.winners:
        assert w.winner == "tie", w
        assert metrics.intervals_overlap(w.estimates["fast-model"].ci, w.estimates["slow-model"].ci)
        assert "overlap" in w.reason
    # the findings say so, and do not claim a difference the intervals do not carry
    key = " ".join(data.findings.key)
    assert "the models are a tie at both configs" in key and "faster than" not in key
    assert any("decode tok/s at gpu0_ctx512_temp0.8" in u for u in data.findings.undecided)


def test_one_model_is_not_a_winner(tmp_path) -> None:
    data = build_report(plant(tmp_path / "planted", {"fast-model": FAST}))
    assert {w.winner for w in data.winners} == {"n/a"}


def test_bootstrap_intervals_contain_the_median_and_are_reproducible(clear) -> None:
    root, files = clear
    again = build_report(root)
    for cell, same in zip(files.data.cells, again.cells):
        for value, ci in ((cell.decode_tps_p50, cell.decode_tps_p50_ci), (cell.ttft_cold_p50_ms, cell.ttft_cold_p50_ci),
                          (cell.e2e_p50_ms, cell.e2e_p50_ci)):
            assert ci is not None and ci[0] <= value <= ci[1]
        assert (cell.decode_tps_p50_ci, cell.ttft_cold_p50_ci) == (same.decode_tps_p50_ci, same.ttft_cold_p50_ci)


def test_bootstrap_interval_width_is_about_right() -> None:
    rng = np.random.default_rng(0)
    flat = metrics.bootstrap_median_ci(list(rng.normal(0, 1, 400)))
    width = flat[1] - flat[0]
    assert 0.17 < width < 0.33  # normal theory: 2 x 1.96 x 1.2533 / sqrt(400) = 0.246
    # two-stage: three runs at different levels give a wider interval than their requests pooled flat
    runs = [list(rng.normal(level, 1, 20)) for level in (0.0, 2.0, 4.0)]
    two = metrics.bootstrap_median_ci(runs)
    pooled = metrics.bootstrap_median_ci([v for r in runs for v in r])
    assert two[1] - two[0] > 1.5 * (pooled[1] - pooled[0])
    assert metrics.bootstrap_median_ci([5.0]) is None
    assert metrics.bootstrap_median_ci([[3.0, 3.0], [3.0]]) == (3.0, 3.0)


# --- the HTML ------------------------------------------------------------------------------------------

SECTIONS = ["Key findings", "Objective", "Setup", "Results", "Multi-agent results", "VRAM and quantization",
            "Outliers and re-runs", "Failures", "Recommendations"]  # no energy measured, no baseline: no frontier
APPENDIX_SECTIONS = ["Setup details", "Methodology", "Single-agent tables", "Multi-agent tables",
                     "Cross-model comparison", "VRAM budget and quantization", "Flagged runs", "Metric definitions"]


def test_html_is_one_self_contained_page_with_every_section(clear, html_page, appendix_page) -> None:
    root, files = clear
    assert files.html == root / "report" / "planted.html"
    assert files.appendix_html == root / "report" / "planted-appendix.html"
    for (text, page), sections, md_path in ((html_page, SECTIONS, files.markdown),
                                            (appendix_page, APPENDIX_SECTIONS, files.appendix_markdown)):
        assert text.startswith("<!DOCTYPE html>")
        h2 = [h for tag, h in page.headings if tag == "h2"]
        assert h2 == sections
        for section in sections:
            assert len(page.section_text[section].strip()) > 40, section
        # the same headings as the Markdown, in the same order
        md = md_path.read_text()
        assert [ln[3:] for ln in md.splitlines() if ln.startswith("## ")] == h2
        assert [ln[4:] for ln in md.splitlines() if ln.startswith("### ")] == [h for tag, h in page.headings
                                                                               if tag == "h3"]
        # self-contained: no script, no external stylesheet or image
        assert "script" not in page.tags and "link" not in page.tags
        assert all(src.startswith("data:image/png;base64,") for src in page.images)
        assert "http://" not in " ".join(page.images) and "<link" not in text
    assert html_page[1].images and not appendix_page[1].images  # the plots are the report's


def test_sections_have_their_data(clear, html_page, appendix_page) -> None:
    s, a = html_page[1].section_text, appendix_page[1].section_text
    assert "Check the published report." in s["Objective"]
    assert "fedcba9876543210fedcba9876543210fedcba98" in s["Setup"] and "sha256:f00d" in a["Setup details"]
    assert "18434" in s["Setup"] and "pandas" in a["Setup details"] and "GPUs: none" in s["Setup"]
    assert "bootstrap" in a["Methodology"] and "2000 resamples" in a["Methodology"]
    assert "decode_tps" in a["Metric definitions"]
    # findings first, from the data: the fast model decodes faster with separate intervals
    assert "fast-model decodes faster than slow-model at both configs" in s["Key findings"]
    assert "fast-model:" in s["Recommendations"] and "cannot decide" in s["Recommendations"]
    assert "fast-model" in a["Single-agent tables"] and "gpu80_ctx1024_temp0.8" in a["Single-agent tables"]
    assert "chimera_homo" in a["Multi-agent tables"]
    assert "single-agent decode tok/s" in a["Cross-model comparison"]
    assert "multi-agent efficiency chimera_homo" in a["Cross-model comparison"]
    assert "Q8_0" in a["VRAM budget and quantization"]
    assert "Regression against a baseline" not in s and "Efficiency frontier" not in s


def test_energy_sections_say_no_gpu_when_energy_is_absent(clear, html_page) -> None:
    _, page = html_page
    md = clear[1].markdown.read_text()
    assert "## Efficiency frontier" not in md  # nothing to draw it from: said where it cannot be decided
    assert "Energy per token: no GPU: energy not measured" in page.section_text["Recommendations"]
    assert not (clear[0] / "report" / "plots" / "efficiency_frontier.png").exists()
    assert "measured max MiB" not in md  # no measured VRAM column without measurements


def test_model_answer_with_script_tag_is_escaped(clear, html_page, appendix_page) -> None:
    assert SCRIPT not in html_page[0]
    text, page = appendix_page  # the sample answers are the appendix's
    assert SCRIPT not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert any(SCRIPT in pre for pre in page.pres)  # shown as text
    md = clear[1].appendix_markdown.read_text()
    block = md[md.index("### Sample answers"):md.index("## Multi-agent tables")]
    fence = re.search(r"```text\n(.*?)\n```", block, re.S)
    assert fence and SCRIPT in fence.group(1)  # in a code block: text, not markup


def test_every_html_table_equals_the_markdown_table(clear, html_page, appendix_page) -> None:
    files = clear[1]
    report, appendix = md_tables(files.markdown.read_text()), md_tables(files.appendix_markdown.read_text())
    assert len(html_page[1].tables) == len(report) and len(appendix_page[1].tables) == len(appendix)
    assert len(report) + len(appendix) > 15
    for html_table, md_table in zip(html_page[1].tables + appendix_page[1].tables, report + appendix):
        assert html_table == md_table


def test_numbers_equal_a_recomputation_from_parquet(clear) -> None:
    root, files = clear
    md, appendix = files.markdown.read_text(), files.appendix_markdown.read_text()
    reqs, runs = frame(root, "requests"), frame(root, "runs")
    ok = reqs[(~reqs["is_warmup"]) & (reqs["status"] == "ok") & reqs["run_id"].isin(runs.loc[runs["valid"], "run_id"])]
    expected = {}
    for (model, g, c, t), cell in ok.groupby(["model", "num_gpu", "num_ctx", "temperature"]):
        expected[(model, f"gpu{g}_ctx{c}_temp{t:g}")] = {
            "decode tok/s p50": np.percentile(cell["decode_tps"], 50),
            "TTFT cold p50 ms": np.percentile(cell["ttft_ms"], 50),
            "e2e p50 ms": np.percentile(cell["e2e_ms"], 50), "e2e p95 ms": np.percentile(cell["e2e_ms"], 95)}
    rows = md_table_after(appendix, "## Single-agent tables")
    assert len(rows) == len(expected) == 4
    for row in rows:
        exp = expected[(row["model"], row["config"])]
        for header, value in exp.items():
            assert row[header] == f"{value:.1f}", (row["model"], header)
        lo, hi = (float(x) for x in row["decode tok/s p50 95% CI"].strip("[]").split(", "))
        assert lo <= float(row["decode tok/s p50"]) <= hi
    # the winner matrix shows the same medians
    winners = md_table_after(appendix, "### Winner by scenario")
    for w in winners:
        if w["scenario"] == "single-agent decode tok/s":
            for model in ("fast-model", "slow-model"):
                value = w[f"{model} median [95% CI]"].split(" [")[0]
                assert value == f"{expected[(model, w['config'])]['decode tok/s p50']:.1f}"
    # % of baseline (slow-model, from the recorded spec)
    for row in md_table_after(appendix, "### % of baseline"):
        base = expected[("slow-model", row["config"])]["decode tok/s p50"]
        mine = expected[(row["model"], row["config"])]["decode tok/s p50"]
        assert row["decode tok/s p50 %"] == f"{mine / base * 100:.1f}"
    # multi-agent efficiency medians
    ma = frame(root, "ma_runs")
    eff = {(m, s): np.percentile(g["efficiency_pct"], 50) for (m, s), g in ma.groupby(["model", "scenario"])}
    column = "efficiency % p50 [95% CI]"
    ma_rows = [r for r in md_tables(md) if r[0][:2] == ["model", "scenario"] and column in r[0]][0]
    header = ma_rows[0]
    assert len(ma_rows) - 1 == len(eff)
    for r in ma_rows[1:]:
        rec = dict(zip(header, r))
        assert rec[column].split(" [")[0] == f"{eff[(rec['model'], rec['scenario'])]:.1f}"


def test_plot_files_are_valid_pngs_and_inlined(clear, html_page) -> None:
    root, files = clear
    names = sorted(p.name for p in files.plots)
    assert names == ["multi_agent_efficiency.png", "run_spread.png", "throughput_ttft.png"]
    inlined = {base64.b64decode(src.split(",", 1)[1]) for src in html_page[1].images}
    for path in files.plots:
        assert path.parent == root / "report" / "plots"
        payload = path.read_bytes()
        assert payload.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(payload)) as im:
            im.verify()
        with Image.open(io.BytesIO(payload)) as im:
            assert im.size[0] > 300 and im.size[1] > 200
        assert payload in inlined
        assert f"](plots/{path.name})" in files.markdown.read_text()


# --- energy and VRAM --------------------------------------------------------------------------------------


@pytest.mark.skipif("energy_j" not in store.RUN_SCHEMA.names, reason="run table without energy columns")
def test_energy_frontier_and_measured_vram(tmp_path) -> None:
    manifest = {**MANIFEST, "hardware": {**MANIFEST["hardware"], "gpus": [{"name": "Planted GPU",
                                                                               "memory_total_mib": 12288}]},
                "vram_budget": [{"model": m, "num_gpu": g, "num_ctx": c, "estimate_gib": 4.0, "action": "run",
                                 "reason": "fits", "to_num_gpu": g, "to_num_ctx": c}
                                for m in ("fast-model", "slow-model") for g, c, _ in CONFIGS]}
    root = plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}, manifest=manifest, energy=True)
    files = publish(root)
    data = files.data
    assert data.energy.measured
    points = data.energy.points
    for p in points:  # on the frontier exactly when no other point is as good on both axes and better on one
        dominated = any((q.decode_tps_p50 >= p.decode_tps_p50 and q.tokens_per_j_p50 >= p.tokens_per_j_p50)
                        and (q.decode_tps_p50 > p.decode_tps_p50 or q.tokens_per_j_p50 > p.tokens_per_j_p50)
                        for q in points)
        assert p.on_frontier == (not dominated), p
    assert any(p.on_frontier for p in points if p.model == "fast-model")  # faster and more tokens per joule
    assert not any(p.on_frontier for p in points if p.model == "slow-model")
    point = next(p for p in data.energy.points if p.model == "fast-model")
    assert point.tokens_per_j_p50 == pytest.approx(np.percentile([2.0 / (1 + 0.01 * i) for i in range(3)], 50))
    assert (root / "report" / "plots" / "efficiency_frontier.png").read_bytes().startswith(PNG_MAGIC)
    assert any(w.scenario == "single-agent tokens per joule" and w.winner == "fast-model" for w in data.winners)
    md = files.markdown.read_text()
    section = md[md.index("## Efficiency frontier"):md.index("## VRAM")]
    assert "no GPU" not in section and "| yes |" in section
    vram = md_table_after(md, "## VRAM and quantization")  # the budget table is the report's
    fast = next(r for r in vram if r["model"] == "fast-model")
    assert fast["measured max MiB"] == "3002" and fast["estimate GiB"] == "4.000"
    page = parse_html(files.html.read_text())
    frontier_png = (root / "report" / "plots" / "efficiency_frontier.png").read_bytes()
    assert frontier_png in {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    assert "no GPU" not in page.section_text["Efficiency frontier"]


# --- regression against a baseline ---------------------------------------------------------------------


def _pair(tmp_path: Path, ttft_factor: float) -> tuple[Path, Path]:
    """A baseline TR run and a current one whose TTFT is ttft_factor x the baseline's (no noise)."""
    steady = {"tps": 80.0, "ttft": 100.0, "e2e": 900.0}
    base = plant(tmp_path / "base", {"fast-model": steady}, tr_id="base")
    slower = {**steady, "ttft": 100.0 * ttft_factor}
    cur = plant(tmp_path / "cur", {"fast-model": slower}, tr_id="cur")
    return cur, base


def test_20_percent_slower_ttft_is_a_regression(tmp_path) -> None:
    cur, base = _pair(tmp_path, 1.20)
    result = compare(build_report(cur), build_report(base), 10.0)
    assert result.has_regressions
    assert {(r.label, r.metric) for r in result.regressions} == {
        (f"fast-model {_label(c)}", "TTFT cold p50 ms") for c in CONFIGS}
    assert all(r.change_pct == pytest.approx(20.0) for r in result.regressions)
    assert all((r.n_baseline, r.n_current) == (15, 15) for r in result.regressions)  # 3 runs x 5 cold requests
    # only the cache state both runs measured is compared: no 'not comparable' rows for cached/partial/unknown
    assert not [c for c in result.comparisons if c.verdict == "not comparable"]
    assert not result.improvements and not result.missing
    within = [c for c in result.comparisons if c.verdict == "within threshold"]
    assert {c.metric for c in within} == {"decode tok/s median", "e2e p95 ms"}
    message = summary_message(result)
    assert "2 regressions" in message and "TTFT cold p50 ms +20.0%" in message and "(100.0 -> 120.0)" in message


def test_5_percent_slower_ttft_is_not(tmp_path) -> None:
    cur, base = _pair(tmp_path, 1.05)
    result = compare(build_report(cur), build_report(base), 10.0)
    assert not result.has_regressions and result.matched_cells == 2
    assert "no regressions" in summary_message(result)
    # a tighter threshold catches it; a faster run is an improvement
    assert compare(build_report(cur), build_report(base), 4.0).has_regressions
    assert [c.metric for c in compare(build_report(base), build_report(cur), 4.0).improvements] == ["TTFT cold p50 ms"] * 2


def test_cells_on_one_side_only_are_listed_not_compared(tmp_path) -> None:
    base = plant(tmp_path / "base", {"fast-model": FAST}, tr_id="base", multi={"fast-model": 80.0})
    cur = plant(tmp_path / "cur", {"fast-model": FAST, "slow-model": SLOW}, tr_id="cur")
    result = compare(build_report(cur), build_report(base))
    sides = {(m.kind, m.label, m.side) for m in result.missing}
    assert ("single", f"slow-model {_label(CONFIGS[0])}", "only in the current run") in sides
    assert ("multi", "fast-model chimera_homo", "only in the baseline") in sides
    assert all(c.label.startswith("fast-model") for c in result.comparisons)


def test_multi_agent_efficiency_drop_is_a_regression(tmp_path) -> None:
    base = plant(tmp_path / "base", {"fast-model": FAST}, tr_id="base", multi={"fast-model": 80.0})
    cur = plant(tmp_path / "cur", {"fast-model": FAST}, tr_id="cur", multi={"fast-model": 60.0})
    result = compare(build_report(cur), build_report(base))
    assert {(r.kind, r.metric) for r in result.regressions} == {("multi", "efficiency % median")}


def test_report_section_lists_the_regression(tmp_path) -> None:
    cur, base = _pair(tmp_path, 1.20)
    files = publish(cur, baseline_root=base, plots=False)
    md = files.markdown.read_text()
    rows = md_table_after(md, "## Regression against a baseline")
    hits = [r for r in rows if r["verdict"] == "regression"]
    assert len(hits) == 2 and all(r["change %"] == "+20.0" and r["baseline"] == "100.0" and r["current"] == "120.0"
                                  for r in hits)
    page = parse_html(files.html.read_text())
    assert "2 regressions" in page.section_text["Regression against a baseline"]


def trbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trbench.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("factor, code", [(1.20, 3), (1.05, 0)])
def test_cli_exit_code_for_ci(tmp_path, factor, code) -> None:
    _pair(tmp_path, factor)
    out = trbench("report", "cur", "--output-dir", str(tmp_path), "--baseline", "base", "--threshold", "10")
    assert out.returncode == code, out.stderr
    assert (tmp_path / "cur" / "report" / "cur.html").is_file()
    if code:
        assert "regression" in out.stderr and "TTFT cold p50 ms +20.0%" in out.stderr
    else:
        assert "no regressions" in out.stderr


def test_cli_unknown_baseline(tmp_path) -> None:
    _pair(tmp_path, 1.0)
    out = trbench("report", "cur", "--output-dir", str(tmp_path), "--baseline", "nope")
    assert out.returncode == 2 and "no data for baseline tr_id 'nope'" in out.stderr


def test_report_flow_fails_on_regressions(prefect_api, tmp_path) -> None:
    from flows.report import report

    _pair(tmp_path, 1.20)
    state = report(tr_id="cur", baseline="base", output_dir=str(tmp_path), threshold_pct=10.0, return_state=True)
    assert state.is_failed()
    assert "2 regressions" in state.message and "TTFT cold p50 ms" in state.message
    assert (tmp_path / "cur" / "report" / "cur.html").is_file()
    assert (tmp_path / "cur" / "report" / "plots" / "throughput_ttft.png").is_file()

    ok = report(tr_id="cur", baseline="base", output_dir=str(tmp_path), threshold_pct=25.0, return_state=True)
    assert ok.is_completed() and "no regressions" in ok.message
    plain = report(tr_id="base", output_dir=str(tmp_path), return_state=True)
    assert plain.is_completed() and "no baseline given" in plain.message
