"""The synthetic workload (trbench/workloads/synthetic.py): its spec section's errors, exact lengths on
the fake Ollama (calibrated text; early stops counted apart), and on a real llama.cpp server every
request's lengths as asked by llama.cpp's own counts, with its prefill and decode rates llama.cpp's.
Last, exact outputs in load steps: where they cannot be forced (Ollama), the early ends are counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from tests.test_spec import error_of
from tests.test_workload_protocol import session_for
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.report import build_report, render_markdown
from trbench.tr.outcome import other_outcome
from trbench.workloads import Measured, active
from trbench.workloads.synthetic import Synthetic, point_label, report_part

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"tr_id": "t", "models": ["smollm2:135m"]}


def test_bad_lengths_fail_with_one_line_naming_the_field():
    assert "synthetic.prompt_tokens" in error_of({**GOOD, "synthetic": {"prompt_tokens": [0], "output_tokens": [8]}})
    assert "lengths must be" in error_of({**GOOD, "synthetic": {"prompt_tokens": [8], "output_tokens": [-1]}})
    assert "output_tokens" in error_of({**GOOD, "synthetic": {"prompt_tokens": [8]}})
    too_long = error_of({**GOOD, "grid": {"num_ctx": [512]},
                         "synthetic": {"prompt_tokens": [512], "output_tokens": [128], "depth": [0, 64]}})
    assert "synthetic.depth" in too_long and "raise grid.num_ctx to at least 704" in too_long
    assert "synthetic.models" in error_of({**GOOD, "synthetic": {"prompt_tokens": [8], "output_tokens": [8],
                                                                  "models": ["other:1b"]}})


def test_the_section_alone_is_something_to_run_and_labels_are_llama_benchs():
    spec = parse_spec({**GOOD, "single_agent": False, "synthetic": {"prompt_tokens": [8], "output_tokens": [8]}})
    assert [w.name for w in active(spec)] == ["synthetic"]
    assert point_label(512, 128, 0) == "pp512+tg128" and point_label(512, 128, 4096) == "pp512+tg128 @ d4096"


def _ollama_spec(url: str, output_tokens: list[int]) -> dict:
    return {"tr_id": "syn", "provider": "external", "backend": "ollama", "urls": [url], "models": [DEFAULT_MODEL],
            "grid": {"num_ctx": [1024]}, "single_agent": False, "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"),
            "synthetic": {"prompt_tokens": [20, 40], "output_tokens": output_tokens, "depth": [0, 30], "runs": 2,
                          "requests": 2, "warmup_requests": 1}}


def test_on_ollama_lengths_are_calibrated_and_early_stops_kept_apart(tmp_path):
    with FakeOllama(models={DEFAULT_MODEL: FakeModel()}) as server:
        full = len(FakeModel().content_tokens)  # the fake's answer, then end-of-sequence
        spec = parse_spec(_ollama_spec(server.url, [2, full + 5]))
        session = session_for(spec, tmp_path)
        workload = Synthetic()
        planned = workload.plan(session)
        assert planned.runs == 2 * 2 * 2 * 2
        workload.execute(session, planned, Measured())
        sent = len(server.bodies("/api/generate"))
        # resuming: every run has its file, nothing is sent again
        again = Synthetic().plan(session_for(spec, tmp_path))
        assert again.units == [] and again.skipped == 16 and len(server.bodies("/api/generate")) == sent
    reqs = store.read_frame(session.root, "syn_requests")
    measured = reqs[~reqs["is_warmup"]]
    assert len(measured) == 16 * 2 and set(measured["status"]) == {"ok"}
    # the fake counts whitespace words: the calibration gets every prompt exactly as asked
    assert (measured["prompt_tokens"] == measured["depth"] + measured["prompt_tokens_asked"]).all()
    assert measured["input_exact"].all() and set(measured["prompt_method"]) == {"calibrated"}
    assert len(set(measured["prompt_id"])) == len(measured)  # no prompt repeats
    assert not measured["ignore_eos"].any()  # Ollama cannot be made to ignore end-of-sequence
    short = measured[measured["output_tokens_asked"] == 2]
    assert (short["output_tokens"] == 2).all() and not short["stopped_early"].any()
    long = measured[measured["output_tokens_asked"] == full + 5]
    assert long["stopped_early"].all() and (long["output_tokens"] < full + 5).all()
    runs = store.read_frame(session.root, "syn_runs").set_index("run_id")
    long_runs = runs[runs["output_tokens_asked"] == full + 5]
    # an early stop is counted and never averaged with full-length requests
    assert (long_runs["n_stopped_early"] == 2).all() and long_runs["decode_tps_mean"].isna().all()
    assert runs["input_exact"].all() and runs["valid"].all()
    part = report_part(session.root)
    assert part is not None
    assert f"| {DEFAULT_MODEL} | tg{full + 5} @ d30 | decode | n/a | n/a | 0 | 0 | {full + 5} / {full + 1} | 8 |" \
        in part.markdown
    assert f"| {DEFAULT_MODEL} | pp20 | prefill |" in part.markdown
    assert "16 requests stopped before their asked output length" in part.markdown
    # a TR of this workload alone: the report's header and findings name its section, and so does its outcome
    md = render_markdown(build_report(session.root))
    assert "- Measured: Synthetic lengths (llama-bench view) (each in its own section below)" in md
    assert "## Synthetic lengths (llama-bench view)" in md and "Nothing was measured" not in md
    rows = store.read_frame(session.root, "syn_runs").to_dict("records")
    done = other_outcome(spec, {"synthetic": rows}, "r.md", None)
    assert done.completed and done.message == "syn: synthetic: 16 of 16 runs valid; report r.md"
    assert not other_outcome(spec, {"synthetic": rows}, "r.md", "stopped by the user").completed


def test_summary_records_are_the_sections_figures_recomputed_from_the_stored_requests(tmp_path):
    import json

    import numpy as np
    from jsonschema import Draft202012Validator

    from trbench.measure.metrics import bootstrap_median_ci
    from trbench.report.summary import build_summary

    with FakeOllama(models={DEFAULT_MODEL: FakeModel()}) as server:
        full = len(FakeModel().content_tokens)
        spec = parse_spec({**_ollama_spec(server.url, [2, full + 5]),
                           "synthetic": {"prompt_tokens": [20], "output_tokens": [2, full + 5], "depth": [0, 30],
                                         "runs": 3, "requests": 3, "warmup_requests": 1}})
        session = session_for(spec, tmp_path)
        Synthetic().execute(session, Synthetic().plan(session), Measured())
    summary = build_summary(build_report(session.root)).model_dump(mode="json")
    schema = json.loads((ROOT / "docs/summary.schema.json").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(summary))
    records = [r for r in summary["records"] if r["workload"] == "synthetic"]
    assert {r["workload"] for r in summary["records"]} == {"synthetic"}

    def one(config: str, metric: str, statistic: str) -> dict:
        (r,) = [r for r in records if (r["config"], r["metric"], r["statistic"]) == (config, metric, statistic)]
        assert r["model"] == DEFAULT_MODEL
        return r

    reqs = store.read_frame(session.root, "syn_requests")
    ok = reqs[~reqs["is_warmup"] & (reqs["status"] == "ok")]
    for depth in (0, 30):
        at = f" @ d{depth}" if depth else ""
        for rate, metric, config, part in (
                ("prefill", "prefill_tps", f"pp20{at}", ok[ok["depth"] == depth]),
                ("decode", "decode_tps", f"tg2{at}", ok[(ok["depth"] == depth) & (ok["output_tokens_asked"] == 2)])):
            runs = [g[metric].tolist() for _, g in part.groupby("run_index")]
            means = [float(np.mean(r)) for r in runs]
            median = one(config, metric, "median")
            assert median["value"] == pytest.approx(float(np.median(part[metric])), rel=1e-12)
            assert (median["ci_low"], median["ci_high"]) == pytest.approx(bootstrap_median_ci(runs), rel=1e-12)
            assert median["n"] == len(part) == 3 * 3 * (2 if rate == "prefill" else 1) and median["n_of"] == "requests"
            assert median["ci_definition"] == "statistics.95% CI of a single-agent median"
            assert one(config, metric, "mean")["value"] == pytest.approx(float(np.mean(means)), rel=1e-12)
            sd = one(config, metric, "stddev")
            assert sd["value"] == pytest.approx(float(np.std(means, ddof=1)), rel=1e-12)
            assert (sd["n"], sd["n_of"], sd["unit"]) == (3, "runs", "tok/s")
            assert median["definition"] == f"request.{metric}" and median["config_values"]["depth"] == depth
        assert one(f"pp20{at}", "prompt_tokens", "min")["value"] == 20 == one(f"pp20{at}", "prompt_tokens", "max")["value"]
        assert one(f"pp20{at}", "n_input_off", "value")["value"] == 0
        assert one(f"tg2{at}", "n_stopped_early", "value")["value"] == 0
        # outputs that stopped early: counted, their decode rate n/a (never averaged in), the achieved length kept
        long = f"tg{full + 5}{at}"
        assert one(long, "n_stopped_early", "value")["value"] == 9
        assert one(long, "decode_tps", "median")["value"] is None and one(long, "decode_tps", "mean")["value"] is None
        assert one(long, "output_tokens", "max")["value"] == full + 1
        assert one(long, "output_tokens", "max")["config_values"] == {"test": long, "tg": full + 5, "depth": depth,
                                                                    "num_gpu": spec.cells()[0].num_gpu, "num_ctx": 1024}
    assert summary["definitions"]["request.stopped_early"].startswith("an ok request with fewer output tokens")
    # the rates can be asked about; the lengths and counts have no better way
    from trbench.config.questions_section import ASKABLE

    unaskable = {"prompt_tokens", "output_tokens", "n_input_off", "n_stopped_early"}
    assert {r["metric"] for r in records} - unaskable == {m for m, ws in ASKABLE.items() if "synthetic" in ws}
    # the section shows the same numbers
    part = report_part(session.root)
    assert part is not None
    p = one("pp20", "prefill_tps", "median")
    assert f"{p['value']:.1f} [{p['ci_low']:.1f}, {p['ci_high']:.1f}]" in part.markdown


def test_no_section_without_synthetic_runs(tmp_path):
    assert report_part(tmp_path) is None


@pytest.mark.integration
def test_on_llamacpp_every_length_is_as_asked_and_the_rates_are_llamacpps(tmp_path, free_ports):
    spec = parse_spec({"tr_id": "syn-llama", "models": ["smollm2:135m"], "grid": {"num_ctx": [1024]},
                       "server": {"ports": free_ports(1)}, "single_agent": False,
                       "synthetic": {"prompt_tokens": [32, 64], "output_tokens": [8, 16], "depth": [0, 64],
                                     "runs": 2, "requests": 2, "warmup_requests": 1}})
    session = session_for(spec, tmp_path)
    try:
        workload = Synthetic()
        workload.execute(session, workload.plan(session), Measured())
    finally:
        session.close()
    reqs = store.read_frame(session.root, "syn_requests")
    m = reqs[~reqs["is_warmup"]]
    assert len(m) == 8 * 2 * 2 and set(m["status"]) == {"ok"} and set(m["prompt_method"]) == {"token_ids"}
    # llama.cpp's own counts: the whole prompt, the cached depth, the output
    assert (m["prompt_tokens"] == m["depth"] + m["prompt_tokens_asked"]).all()
    assert (m["cached_tokens"] == m["depth"]).all(), m[["point", "cached_tokens"]]
    assert (m["output_tokens"] == m["output_tokens_asked"]).all() and m["ignore_eos"].all()
    assert not m["stopped_early"].any() and m["input_exact"].all()
    # the rates are llama.cpp's own timings, request by request
    assert (abs(m["prefill_tps"] / m["server_prefill_tps_reported"] - 1) <= 0.005).all()
    assert (abs(m["decode_tps"] / m["server_decode_tps_reported"] - 1) <= 0.005).all()
    runs = store.read_frame(session.root, "syn_runs")
    assert len(runs) == 16 and runs["valid"].all() and runs["input_exact"].all()
    part = report_part(session.root)
    assert part is not None
    for label in ("pp32", "pp64 @ d64", "tg8", "tg16 @ d64"):
        assert f"| smollm2:135m | {label} |" in part.markdown


def test_a_load_step_on_ollama_counts_the_requests_that_ended_early(tmp_path):
    from trbench.config.load_section import LoadStep
    from trbench.config.prompts import load_prompts
    from trbench.run import load_step as runner

    with FakeOllama(models={DEFAULT_MODEL: FakeModel()}) as server:
        full = len(FakeModel().content_tokens)
        spec = parse_spec({"tr_id": "ended", "provider": "external", "backend": "ollama", "urls": [server.url],
                           "models": [DEFAULT_MODEL], "grid": {"num_ctx": [1024]}, "max_tokens": full + 4,
                           "load": {"concurrency": [2], "requests": 4}})
        plan = runner.StepPlan(tr_id="ended", cell=spec.cells()[0], step=LoadStep(label="c2", mode="concurrency",
                               concurrency=2), step_index=0, instance="i0", instance_url=server.url)
        row, rows = runner.execute_step(spec, plan, runner.wire_client(spec), load_prompts(spec.prompts), "d")
    assert row["ignore_eos"] is False and row["n_ok"] == 4
    assert row["n_ended_early"] == 4 and {r["output_tokens"] for r in rows} == {full + 1}  # its answer and EOS
    # how far out of step: every stream produced full + 1 of full + 4 tokens
    assert row["output_share_p50"] == pytest.approx((full + 1) / (full + 4)) == row["output_share_min"]
    # the load table shows the shares because a step ended early; the summary holds them
    from tests.test_load_report import _write_tr
    from trbench.report.load_tables import load_tables
    from trbench.report.summary import build_summary

    root = tmp_path / "ended"
    _write_tr(root, spec, steps=[(row, rows)])
    data = build_report(root, spec)
    table = load_tables(data)["load_steps"]
    assert table.column("output share min") == [f"{(full + 1) / (full + 4):.2f}"]
    assert any(title == "streams out of step" for title, _ in table.parts())
    (share,) = [r for r in build_summary(data).records if r.metric == "output_share" and r.statistic == "min"]
    assert share.value == pytest.approx((full + 1) / (full + 4)) and share.definition == "load.output_share"
