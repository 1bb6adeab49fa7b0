"""Load and embeddings steps with telemetry beside them (the sampler against the fake NVML of
tests/fakes/fake_nvml.py: there is no GPU here), and load steps that stop early where the server is
over-saturated (run/sweep_stop.py): against the mock provider's server (canned answers, in this process)
and the fake Ollama's embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.fake_ollama import FakeModel, FakeOllama
from tests.test_run_bounds import error_of
from trbench.config.embeddings_section import load_texts
from trbench.config.prompts import load_prompts
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.data.environment import Manifest
from trbench.data.failures import InstanceFaults
from trbench.engines.mock import MockInstance
from trbench.engines.mock_server import Pace
from trbench.engines.ollama_process import OllamaProcessInstance
from trbench.report import publish
from trbench.report.summary import build_summary
from trbench.run.sweep_stop import ramp_step, stop_reason
from trbench.workloads.embedding_load import measure_step as measure_embeddings_step
from trbench.workloads.embedding_load import plan_steps as plan_embedding_steps
from trbench.workloads.load_mode import LoadMode
from trbench.workloads.protocol import Measured
from trbench.workloads.session import TRSession

from conftest import free_port

EMBEDDER = "nomic-embed-text:latest"




def _spec(**load) -> dict:
    return {"tr_id": "mock-bounds", "provider": "mock", "models": ["m"], "single_agent": False, "max_tokens": 4,
            "telemetry": {"interval_s": 0.05}, "load": {"requests": 4, **load}}


def _session(spec, root: Path, instances) -> TRSession:
    return TRSession(spec=spec, prompts=load_prompts(spec.prompts), agents=None, root=root, instances=instances,
                     faults=InstanceFaults(root, spec.tr_id), manifest=Manifest.lenient({"m": 1}), digest="dg")


def _run_load(spec_data: dict, root: Path) -> Measured:
    spec = parse_spec(spec_data)
    inst = MockInstance("mock-0", free_port(), Pace(first_token_ms=20.0, token_ms=1.0, invalid_every=0))
    inst.start()
    try:
        session = _session(spec, root, [inst])
        mode, measured = LoadMode(), Measured()
        mode.execute(session, mode.plan(session), measured)
        return measured
    finally:
        inst.stop()


# --- bounds: the spec, the rule, and a cell that stops -----------------------------------------------------


def test_stop_fields_are_validated_in_one_line():
    load = parse_spec(_spec(concurrency=[1, 2], stop_below_good_pct=80, stop_queue_growth=4)).load
    assert load.stop_below_good_pct == 80 and load.stop_queue_growth == 4
    assert "field 'load.stop_below_good_pct'" in error_of(_spec(concurrency=[1], stop_below_good_pct=0))
    assert "field 'load.stop_below_good_pct'" in error_of(_spec(concurrency=[1], stop_below_good_pct=101))
    assert "field 'load.stop_queue_growth'" in error_of(_spec(concurrency=[1], stop_queue_growth=1))
    only_emb = {"embeddings": {"batch_sizes": [1]}, "stop_queue_growth": 4}
    message = error_of({**_spec(), "load": only_emb})
    assert "field 'load.stop_queue_growth'" in message and "fix: remove it" in message


def test_the_rule_reads_good_share_and_queue_growth_step_over_step():
    load = parse_spec(_spec(rate=[1, 2, 4], stop_below_good_pct=80, stop_queue_growth=4)).load
    c1 = {"step_label": "r1", "good_pct": 100.0, "queue_ms_p50": 20.0}
    assert stop_reason(load, c1, None, 2) is None
    assert stop_reason(load, {**c1, "queue_ms_p50": 79.0}, c1, 1) is None  # under 4 x 20 ms
    grown = stop_reason(load, {**c1, "queue_ms_p50": 81.0}, c1, 1)
    assert grown == "over-saturated: queue p50 81 ms > stop_queue_growth 4 x 20 ms at step r1; 1 later step not run"
    poor = stop_reason(load, {**c1, "good_pct": 50.0}, None, 2)
    assert poor == "over-saturated: good 50.0 % < stop_below_good_pct 80 %; 2 later steps not run"
    # from about nothing, growth is measured against 1 ms; a missing figure (NaN from a read) is no reason
    assert stop_reason(load, {**c1, "queue_ms_p50": 5.0}, {**c1, "queue_ms_p50": 0.01}, 1) is not None
    assert stop_reason(load, {**c1, "good_pct": float("nan"), "queue_ms_p50": None}, c1, 1) is None
    assert stop_reason(load, {**c1, "good_pct": 0.0}, None, 0) is None  # the last step leaves nothing out
    sweep = parse_spec(_spec(sweep={"rates": 2}, stop_below_good_pct=80)).load
    sync, throughput = sweep.fixed_steps()
    assert not ramp_step(sweep, sync) and not ramp_step(sweep, throughput)  # a sweep's ends never stop it
    assert all(ramp_step(load, s) for s in load.fixed_steps())


def test_an_over_saturated_cell_stops_records_why_and_a_resume_stops_there_too(tmp_path, fake_nvml):
    fake_nvml(init_error="Driver Not Loaded")
    # every answer takes 20 ms to its first token: none meets a 5 ms TTFT SLO, so c1 is 0 % good
    data = _spec(concurrency=[1, 2, 4], slo={"ttft_ms": 5}, stop_below_good_pct=50)
    measured = _run_load(data, tmp_path)
    assert [o.run_id.split("_")[-2] for o in measured.load_steps] == ["c1"]
    steps = store.read_frame(tmp_path, "load_steps")
    (row,) = steps.to_dict("records")
    assert row["stop_reason"] == "over-saturated: good 0.0 % < stop_below_good_pct 50 %; 2 later steps not run"
    assert row["stop_below_good_pct"] == 50 and row["valid"] and row["n_requests"] == 4
    again = _run_load(data, tmp_path)
    assert again.load_steps == [] and again.load_skipped == 1
    md = publish(tmp_path, parse_spec(data)).markdown.read_text()
    assert "m at gpu" in md and "the load steps stopped early after step c1, over-saturated: good 0.0 %" in md


def test_a_cell_that_is_not_over_saturated_runs_every_step_and_the_report_says_so(tmp_path, fake_nvml):
    fake_nvml(init_error="Driver Not Loaded")
    data = _spec(concurrency=[1, 2], stop_below_good_pct=50, stop_queue_growth=1000)
    measured = _run_load(data, tmp_path)
    assert len(measured.load_steps) == 2
    assert store.read_frame(tmp_path, "load_steps")["stop_reason"].isna().all()
    md = publish(tmp_path, parse_spec(data)).markdown.read_text()
    assert ("no step stopped the load steps early (good % below 50 or queue p50 growing over 1000x a step)" in md)
    assert "stopped early after" not in md


# --- telemetry beside load and embeddings steps ------------------------------------------------------------


def test_a_load_step_without_gpu_stores_host_figures_and_the_note_and_the_report_shows_only_those(tmp_path,
                                                                                               fake_nvml):
    fake_nvml(init_error="Driver Not Loaded")
    data = _spec(concurrency=[2], warmup_requests=1)
    _run_load(data, tmp_path)
    (row,) = store.read_frame(tmp_path, "load_steps").to_dict("records")
    assert row["energy_j"] != row["energy_j"] and row["j_per_token"] != row["j_per_token"]  # NaN: null
    assert row["telemetry_note"].startswith("no GPU visible: GPU metrics unavailable")
    assert row["cpu_pct_mean"] >= 0 and row["energy_window_s"] > 0
    tele = store.read_frame(tmp_path, "telemetry")
    assert set(tele["kind"]) == {"load"} and set(tele["run_id"]) == {row["run_id"]}
    assert {"warmup", "measured", "idle"} <= set(tele["phase"])
    files = publish(tmp_path, parse_spec(data))
    md = files.appendix_markdown.read_text()  # the telemetry tables are the appendix's
    table = md[md.index("Energy and telemetry per step"):]
    table = table[:table.index("Definitions:")]
    assert "CPU %" in table and "no GPU visible" in table
    assert "energy J" not in table and "J/token" not in table and "GPU power W" not in table
    # the definitions of what it shows, and of nothing else
    assert "`cpu_pct_mean`" in table and "`measured window`" in table and "`energy_j`" not in table
    metrics = {r.metric for r in build_summary(files.data).records}
    assert "cpu_pct" in metrics and "energy_j" not in metrics and "j_per_token" not in metrics


def test_a_load_step_on_a_gpu_has_energy_and_joules_per_output_token(tmp_path, fake_nvml):
    fake_nvml([{"power_w": 200.0, "util": 40}])
    data = _spec(concurrency=[2])
    _run_load(data, tmp_path)
    (row,) = store.read_frame(tmp_path, "load_steps").to_dict("records")
    reqs = store.read_frame(tmp_path, "load_requests")
    tokens = reqs.loc[(reqs["status"] == "ok") & ~reqs["is_warmup"], "output_tokens"].sum()
    assert row["energy_method"] == "energy counter" and row["energy_j"] == pytest.approx(
        200.0 * row["energy_window_s"], rel=0.05)
    assert row["j_per_token"] == pytest.approx(row["energy_j"] / tokens)
    assert row["gpu_util_pct_mean"] == pytest.approx(40.0) and row["gpu_power_w_mean"] == pytest.approx(200, rel=0.05)
    files = publish(tmp_path, parse_spec(data))
    md = files.appendix_markdown.read_text()  # the telemetry tables are the appendix's
    assert "energy J" in md and "J/token" in md and "GPU util %" in md
    records = {(r.metric, r.statistic): r for r in build_summary(files.data).records if r.workload == "load"}
    assert records[("j_per_token", "value")].value == pytest.approx(row["j_per_token"])
    assert records[("j_per_token", "value")].definition == "energy.j_per_token"


def test_an_embeddings_step_has_energy_per_text_and_input_token(tmp_path, fake_nvml):
    fake_nvml([{"power_w": 150.0}])
    spec = parse_spec({"tr_id": "emb-tele", "provider": "ollama-process", "backend": "ollama", "models": [EMBEDDER],
                       "single_agent": False,
                       "telemetry": {"interval_s": 0.05},
                       "load": {"embeddings": {"batch_sizes": [4], "requests": 6, "warmup": 1,
                                               "texts": "datasets/embeddings/passages_v1.yaml"}}})
    load = spec.load.embeddings
    with FakeOllama({EMBEDDER: FakeModel(embed_delay_s=0.01)}) as fake:
        inst = OllamaProcessInstance("ollama-process-0", spec.server, fake.port, None, str(tmp_path))
        (plan,) = plan_embedding_steps(load, spec, [inst])
        row = measure_embeddings_step(_session(spec, tmp_path, [inst]), plan, load,
                                      load_texts("datasets/embeddings/passages_v1.yaml"), inst)
    assert row["texts_total"] == 24 and row["energy_j"] > 0
    assert row["j_per_text"] == pytest.approx(row["energy_j"] / 24)
    assert row["j_per_input_token"] == pytest.approx(row["energy_j"] / row["tokens_total"])
    tele = store.read_frame(tmp_path, "telemetry")
    assert set(tele["kind"]) == {"embeddings"} and {"warmup", "measured", "idle"} <= set(tele["phase"])
    stored = store.read_frame(tmp_path, "emb_steps").iloc[0]
    assert stored["j_per_text"] == pytest.approx(row["j_per_text"])


def test_the_stop_sentence_is_true_for_every_shape():
    from trbench.report.load_findings import stop_sentences
    from trbench.report.load_results import LoadSection, LoadStepResult

    def step(model: str, label: str, reason: str | None = None) -> LoadStepResult:
        return LoadStepResult(model=model, config="c", step_index=0, step_label=label, mode="rate",
                              stop_reason=reason)

    steps = [step("a", "r1"), step("a", "r2", "over-saturated: x; 1 later step not run"), step("b", "r1")]
    assert stop_sentences(None) == []
    assert stop_sentences(LoadSection(steps=steps, summaries=[], slo={}, definitions={})) == []  # no rule: no word
    ruled = LoadSection(steps=steps, summaries=[], slo={}, stop_rules={"stop_queue_growth": 4.0}, definitions={})
    assert stop_sentences(ruled) == [
        "a at c: the load steps stopped early after step r2, over-saturated: x; 1 later step not run.",
        "b at c: no step stopped the load steps early (queue p50 growing over 4x a step)."]
    assert stop_sentences(LoadSection(steps=[], summaries=[], slo={}, stop_rules={"stop_below_good_pct": 5.0},
                                      definitions={})) == []
