"""The report says only what it saw, for every shape of data: a TR without some workload shows no
section of it and no "nothing measured" line; one model, one run, ties and zeros each get sentences
that are true of them; a baseline with no cell in common says "nothing compared" and names the
settings that differ, one measured under other settings compares the same model x config; a setup check (--smoke) names no winner.

Planted Parquet: single-agent runs from tests/test_report_publish.plant, load steps measured by the
real load runner against the fake client of tests/test_load_runner (tests/test_load_report)."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path


from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report_publish import FAST as ENERGY_FAST
from tests.test_report_publish import MANIFEST, ROOT, md_table_after, plant
from trbench.data.environment import Manifest
from trbench.config.smoke import smoke_spec
from trbench.config.spec import parse_spec
from trbench.data.store import write_run
from trbench.validation.frames import report_frame
from trbench.report.regression import EXIT_NOTHING_COMPARED, summary_message
from trbench.report import build_report, publish, render_appendix_markdown, render_html, render_markdown
from trbench.report.cross_model import WinnerRow, Estimate
from trbench.report.findings import _compare_sentence

FAST = {"tps": 120.0, "ttft": 40.0, "e2e": 600.0, "sd": 0.02}
SLOW = {"tps": 60.0, "ttft": 90.0, "e2e": 1200.0, "sd": 0.02}
NOTHING_LINES = ("Nothing was measured", "Nothing measured", "No finished runs", "No single-agent runs measured",
                 "No multi-agent runs measured", "run file(s)", "No measured answers", "Not recorded.")


def _headings(md: str, level: int = 2) -> list[str]:
    return [ln[level + 1:] for ln in md.splitlines() if re.match(rf"^{'#' * level} \S", ln)]


def _embedding_steps(root: Path, tr_id: str, model: str = "smollm2:135m", slo_ms: float = 100.0) -> None:
    """Two embeddings steps (batch 1 and 8) as the embeddings workload stores them."""
    started = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for i, (batch, tps, p95, within) in enumerate([(1, 3.3, 584.0, 10.0), (8, 2.2, 5301.0, 0.0)]):
        write_run(root, {"tr_id": tr_id, "run_id": f"emb_b{batch}_a1", "attempt": 1, "model": model,
                         "provider": "embedded", "backend": "openai", "instance": "embedded-0",
                         "instance_url": "http://127.0.0.1:1", "batch_size": batch, "concurrency": 1,
                         "started_at": started + dt.timedelta(minutes=i), "n_warmup": 2, "texts_name": "t",
                         "texts_digest": "d", "manifest_digest": "m", "n_requests": 10, "n_errors": 0,
                         "texts_per_s": tps, "latency_p95_ms": p95, "within_slo_pct": within, "slo_ms": slo_ms},
                  [], Manifest(), kind="embeddings")


# --- missing workloads --------------------------------------------------------------------------


def test_a_load_only_tr_opens_with_its_load_results(tmp_path):
    spec = parse_spec(LOAD_SPEC)
    root = tmp_path / spec.tr_id
    _write_tr(root, spec)
    _embedding_steps(root, spec.tr_id)
    files = publish(root, spec)
    md, data = files.markdown.read_text(), files.data
    # the results come right after how they were measured: Load is the first results section
    assert _headings(md) == ["Key findings", "Objective", "Setup", "Load", "Failures", "Recommendations"]
    assert _headings(files.appendix_markdown.read_text()) == ["Setup details", "Methodology", "Load tables",
                                                              "Metric definitions"]
    # its first screen: one row per load step, the latencies' medians with their intervals
    glance = md[md.index("### Results at a glance"):md.index("## Objective")]
    assert "| model | config, step | req/s | output tok/s | TTFT p50 ms [95% CI] |" in glance
    assert glance.count("\n| smollm2:135m |") == len(data.load.steps)
    assert data.findings.key[0].startswith("Under load, smollm2:135m")
    assert data.findings.key[1].startswith("Embeddings on smollm2:135m: batch 1: 3.3 texts/s")
    assert "- Load: 2 steps (2 valid), 16 measured requests" in md and "- Embeddings: 2 steps, " in md
    for line in NOTHING_LINES:
        assert line not in md, line
    assert "single-agent" not in " ".join(q for q, _ in data.findings.answers)
    assert "Baseline model" not in md and "Prompt caching and TTFT" not in md
    html = files.html.read_text()
    assert '<section id="load">' in html and 'id="results"' not in html and "cross-model" not in html
    # the validation asks this report for the sections it carries, each with content
    frame = report_frame(files.markdown, set())
    assert frame["found"].all() and (frame["body_chars"] > 0).all() and frame["table_ok"].all()
    frame = report_frame(files.appendix_markdown, set(), "appendix")
    assert frame["found"].all() and (frame["body_chars"] > 0).all() and frame["table_ok"].all()


def test_embeddings_alone_report_embeddings_and_nothing_of_load_steps(tmp_path):
    root = tmp_path / "emb"
    _embedding_steps(root, "emb")
    data = build_report(root)
    md = render_markdown(data)
    assert data.workloads == ["embeddings"] and "### Embeddings" in md and "Goodput and saturation" not in md
    assert [k.split(":")[0] for k in data.findings.key] == ["Embeddings on smollm2"]
    assert "10 % within 100 ms" in data.findings.key[0] and "Under load" not in md
    for line in NOTHING_LINES:
        assert line not in md, line


def test_a_single_agent_tr_shows_no_load_quality_or_multi_agent_section(tmp_path):
    data = build_report(plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}))
    md = render_markdown(data)
    assert data.workloads == ["single"]
    for heading in ("## Load", "## Quality", "## Multi-agent results"):
        assert heading not in md
    assert not any(k.startswith(("Under load", "Embeddings")) for k in data.findings.key)
    assert len(data.questions) == 2  # single, VRAM
    # the single-agent question is answered by key findings alone, so only the VRAM answer is said apart
    assert [q for q, _ in data.findings.answers] == data.questions[1:]
    assert not any(a in data.findings.key for _, a in data.findings.answers)


# --- one model, one run, ties, zeros ------------------------------------------------------------


def test_one_model_says_it_was_alone_and_compares_nothing(tmp_path):
    data = build_report(plant(tmp_path / "planted", {"fast-model": {**FAST, "sd": 0.0}}))
    key = " ".join(data.findings.key)
    assert "One model measured (fast-model): decode p50 120 tok/s over 2 configs; no model comparison." in key
    assert "faster" not in key and "tie" not in key and "separate" not in key
    assert not [a for q, a in data.findings.answers if "single-agent" in q]  # said once, under key findings


def test_one_run_has_no_interval_and_no_winner(tmp_path):
    # the smoke shape: 1 run of 2 requests per cell; two requests of one run gave "151.9 [151.9, 151.9]"
    data = build_report(plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}, runs=1, requests=2))
    assert all(c.decode_tps_p50_ci is None and c.ttft_cold_p50_ci is None for c in data.cells)
    assert all(w.winner != "fast-model" and w.winner != "slow-model" for w in data.winners)
    key = " ".join(data.findings.key)
    assert "intervals separate" not in key and "intervals overlap" not in key
    assert "the data does not separate the models" in key and "needs 2 runs" in key
    md = render_markdown(data)
    results = render_appendix_markdown(data).split("\n## Single-agent tables\n", 1)[1].split("\n## ", 1)[0]
    assert "n/a" in results and not re.search(r"\[\d", results)
    glance = md_table_after(md, "### Results at a glance")  # the first screen shows no interval either
    assert len(glance) == 4 and all("n/a" in r["decode tok/s p50 [95% CI]"] for r in glance)
    assert not any(re.search(r"\[\d", v) for r in glance for v in r.values())


def test_a_lead_that_changes_with_the_config_claims_no_ties_that_are_not_there():
    def row(config, winner, a, b):
        return WinnerRow(scenario="single-agent decode tok/s", config=config, metric="decode tok/s median",
                         higher_is_better=True, winner=winner, reason="",
                         estimates={m: Estimate(value=v, ci=(v - 1, v + 1)) for m, v in (("a", a), ("b", b))})
    both = _compare_sentence([row("c1", "a", 10, 5), row("c2", "b", 5, 10)], "decode throughput", "decodes faster",
                             "tok/s")
    assert both == "On decode throughput, the lead depends on the config: a at c1 and b at c2."
    one_tie = _compare_sentence([row("c1", "a", 10, 5), row("c2", "tie", 10, 10)], "decode throughput",
                                "decodes faster", "tok/s")
    assert one_tie.endswith("a at c1; the other config does not separate them.")


def test_zero_goodput_recommends_no_load_and_names_no_saturation_point(tmp_path):
    spec = parse_spec({**LOAD_SPEC, "load": {**LOAD_SPEC["load"], "slo": {"e2e_ms": 0.001}}})  # no request meets it
    root = tmp_path / spec.tr_id
    _write_tr(root, spec)
    data = build_report(root, spec)
    (sentence,) = data.findings.key
    assert "no request met every SLO at any step (goodput 0)" in sentence
    assert ("no step served at least 90 % of its offered rate within the SLOs, so there is no saturation point"
            in sentence)
    assert not any("goodput" in r for r in data.findings.recommendations)
    assert "- No recommendation follows from this data." in render_markdown(data)


# --- the baseline: "no regressions" only over compared cells ------------------------------------


def _spec_manifest(max_tokens: int) -> dict:
    return {**MANIFEST, "spec": {**MANIFEST["spec"], "max_tokens": max_tokens}}


def test_a_baseline_with_no_common_cell_says_nothing_compared_and_why(tmp_path):
    # cells are matched on workload, model and config values: no model in common, no cell in common
    plant(tmp_path / "short", {"slow-model": SLOW}, tr_id="short", manifest=_spec_manifest(16))
    plant(tmp_path / "long", {"fast-model": FAST}, tr_id="long", manifest=_spec_manifest(64))
    proc = subprocess.run([sys.executable, "-m", "trbench.cli", "report", "short", "--baseline", "long",
                           "--output-dir", str(tmp_path), "--no-html"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == EXIT_NOTHING_COMPARED, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "nothing compared" in said and "no regressions" not in said
    assert ("settings that differ: models slow-model here, fast-model in the baseline; max_tokens 16 here, 64 in the "
            "baseline") in said
    md = (tmp_path / "short" / "report" / "short.md").read_text()
    assert "nothing compared" in md and "max_tokens 16 here, 64 in the baseline" in md
    assert "0 regressions" not in md and "no regressions" not in md
    data = build_report(tmp_path / "short", baseline_root=tmp_path / "long")
    html = render_html(data)
    assert 'class="status bad">nothing compared' in html and "status good" not in html
    assert "nothing compared" in summary_message(data.regression)
    from flows.report import report_state  # the report flow: a check that did not happen is not a pass

    state = report_state(publish(tmp_path / "short", baseline_root=tmp_path / "long", html=False))
    assert state.is_failed() and "nothing compared" in state.message
    # the same two TRs measured alike: compared, and then "no regressions" is true
    same = build_report(tmp_path / "long", baseline_root=tmp_path / "long").regression
    assert same.compared_cells == 2 and not same.nothing_compared
    assert "no regressions" in summary_message(same)


def test_a_baseline_measured_under_other_settings_compares_the_same_model_and_config(tmp_path):
    # another max_tokens (another content hash) is the same model x config: compared, and the setting named
    plant(tmp_path / "short", {"fast-model": FAST}, tr_id="short", manifest=_spec_manifest(16), hash_salt="-16")
    plant(tmp_path / "long", {"fast-model": FAST}, tr_id="long", manifest=_spec_manifest(64))
    result = build_report(tmp_path / "short", baseline_root=tmp_path / "long").regression
    assert result.compared_cells == 2 and not result.nothing_compared and not result.missing
    assert [str(d) for d in result.differences] == ["max_tokens 16 here, 64 in the baseline"]
    md = render_markdown(build_report(tmp_path / "short", baseline_root=tmp_path / "long"))
    assert "Settings that differ between the two TRs (not matched on" in md
    assert "max_tokens 16 here, 64 in the baseline" in md


def test_report_help_documents_the_nothing_compared_exit_code():
    proc = subprocess.run([sys.executable, "-m", "trbench.cli", "report", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": ""})
    assert "4 nothing compared" in " ".join(proc.stdout.split())


# --- a setup check --------------------------------------------------------------------------------


def test_the_smoke_spec_is_stamped_with_its_own_title():
    full = parse_spec({"tr_id": "long", "title": "The long TR", "objective": "Measure it all.",
                       "models": ["smollm2:135m"]})
    smoke = smoke_spec(full)
    assert smoke.smoke and not full.smoke and smoke.tr_id == "long-smoke"
    assert smoke.title == "Setup check (--smoke) of The long TR" and "Measure it all." not in smoke.objective


def test_a_smoke_report_names_no_winner_and_says_pass_or_fail(tmp_path):
    spec = smoke_spec(parse_spec({**MANIFEST["spec"], "tr_id": "planted"}))
    manifest = {**MANIFEST, "spec": spec.model_dump(mode="json")}
    root = plant(tmp_path / "planted-smoke", {"fast-model": FAST, "slow-model": SLOW}, runs=1, requests=2,
                 manifest=manifest)
    files = publish(root)
    data, md = files.data, files.markdown.read_text()
    assert data.smoke and data.title.startswith("Setup check (--smoke) of Planted TR")
    assert "Setup check (`--smoke`), not a measurement." in md
    assert data.winners and {w.winner for w in data.winners} == {"n/a"}
    assert data.findings.key[0].startswith("Setup check passed: every model answered in a valid run")
    assert data.findings.answers == [] and data.findings.undecided == [] and data.questions == []
    for claim in ("faster", "sooner", "separate", "tie", "Best configuration"):
        assert claim not in " ".join(data.findings.key + data.findings.recommendations) and claim not in md.split(
            "## Objective")[0], claim
    assert "Best configuration per model" not in md
    frame = report_frame(files.markdown, {"single"})
    assert frame["found"].all() and frame["table_ok"].all()
    frame = report_frame(files.appendix_markdown, {"single"}, "appendix")
    assert frame["found"].all() and frame["table_ok"].all()


def test_energy_definitions_are_printed_only_where_energy_or_gpu_memory_is_reported(tmp_path):
    from trbench.measure.metrics import ENERGY_DEFINITIONS

    # the definitions are the appendix's
    with_gpu = render_appendix_markdown(build_report(plant(tmp_path / "gpu", {"fast-model": ENERGY_FAST},
                                                           energy=True)))
    without = render_appendix_markdown(build_report(plant(tmp_path / "cpu", {"fast-model": FAST})))
    first = next(iter(ENERGY_DEFINITIONS.values()))[:60]
    assert "Energy and telemetry (run table columns" in with_gpu and first in with_gpu
    assert "Energy and telemetry (run table columns" not in without and first not in without


def test_setup_states_each_model_fact_once_and_a_clean_answer_check_in_one_line(tmp_path):
    data = build_report(plant(tmp_path / "planted", {"fast-model": FAST, "slow-model": SLOW}))
    md = render_markdown(data) + render_appendix_markdown(data)  # a fact once in the two documents together
    assert data.quant and "| fast-model | quantization |" not in md  # under VRAM and quantization only
    assert md.count("Q4_K_M") == 1
    sanity = md[md.index("### Answer sanity"):]
    assert "Every measured answer of every model x config passed the check. Prompt style: fast-model `chat`" in sanity
    assert "| model | config | prompt style |" not in md
