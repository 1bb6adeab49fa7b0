"""tr on a load spec end to end on a real Prefect server and a real llama.cpp server (SmolLM2, one slot)."""

from __future__ import annotations

import pytest
from conftest import llama_servers

from flows.tr import tr
from trbench.data import store


def load_spec(tr_id: str, port: int, **load) -> dict:
    return {"tr_id": tr_id, "models": ["smollm2:135m"], "ports": [port], "threads": 1, "single_agent": False,
            "grid": {"num_ctx": [1024], "temperature": [0.0]}, "max_tokens": 8, "seed": 1,
            "load": {"requests": 3, "warmup_requests": 1, "slo": {"ttft_ms": 60_000}, **load}}


def test_load_flow_runs_each_step_as_a_task_writes_parquet_report_and_resumes(prefect_api, tmp_path, free_ports):
    port = free_ports(1)[0]
    spec = load_spec("loadflow", port, concurrency=[1, 2], embeddings={"batch_sizes": [2], "requests": 3, "warmup": 1})
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert "2 of 2 load steps valid, 1 of 1 embeddings step with ok requests" in state.message
    root = tmp_path / "loadflow"
    steps = store.read_frame(root, "load_steps").sort_values("step_index")
    requests = store.read_frame(root, "load_requests")
    assert steps["step_label"].tolist() == ["c1", "c2"]
    assert (steps["n_requests"] == 3).all() and (steps["n_warmup"] == 1).all()
    assert len(requests) == 8 and requests["is_warmup"].sum() == 2
    # every stored figure is the one its own request rows give
    for _, step in steps.iterrows():
        ok = requests[(requests["run_id"] == step["run_id"]) & ~requests["is_warmup"] & (requests["status"] == "ok")]
        assert step["n_ok"] == len(ok)
        if len(ok):
            assert step["ttft_ms_p50"] == pytest.approx(ok["ttft_ms"].median())
    emb = store.read_frame(root, "emb_steps")
    assert emb["batch_size"].tolist() == [2] and emb["n_requests"].tolist() == [3]
    md = (root / "report" / "loadflow.md").read_text()
    appendix = (root / "report" / "loadflow-appendix.md").read_text()  # the per-step tables, the definitions
    assert "## Load" in md and "### Embeddings" in md and "| c2 |" in appendix
    assert "quality of the vectors" in appendix.split("### Embeddings")[1]
    assert (root / "manifest.json").is_file()
    assert not llama_servers(port)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert sorted(r.name for r in runs if r.name.startswith("load ")) == sorted(f"load {i}" for i in steps["run_id"])

    again = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert again.is_completed() and "2 already finished" in again.message
    assert len(store.read_frame(root, "load_steps")) == 2


def test_a_sweep_measures_its_rates_between_synchronous_and_throughput(prefect_api, tmp_path, free_ports):
    port = free_ports(1)[0]
    state = tr(spec=load_spec("loadsweep", port, sweep={"rates": 1, "max_concurrency": 2}),
                    output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    steps = store.read_frame(tmp_path / "loadsweep", "load_steps").sort_values("step_index")
    assert steps["step_label"].tolist()[:2] == ["sync", "throughput"]
    assert len(steps) == 3 and steps.iloc[2]["mode"] == "rate"
    lo, hi = sorted(steps.iloc[:2]["request_rps"])
    assert steps.iloc[2]["rate"] == pytest.approx((lo + hi) / 2, abs=0.001)
    assert not llama_servers(port)


def test_a_failed_load_state_opens_with_its_first_invalid_step_and_where_its_errors_are():
    from flows.tr import load_state
    from trbench.config.spec import parse_spec
    from trbench.workloads.run_outcomes import StepOutcome

    spec = parse_spec({"tr_id": "l", "models": ["smollm2:135m"], "load": {"concurrency": [2], "requests": 2}})
    rows = [StepOutcome(run_id="s1", valid=False, invalid_reason="no ok measured request (2 errors: timeout)"),
            StepOutcome(run_id="s2", valid=False, invalid_reason="no ok measured request (2 errors: connect)")]
    state = load_state(spec, rows, 0, "r.md")
    assert state.is_failed() and state.message.startswith(
        "load step s1 invalid: no ok measured request (2 errors: timeout); fix: each request's error_kind and "
        "error_message are in load_requests/ (Parquet); l: 0 of 2 load steps valid")
    assert state.message.endswith("1 more invalid: s2: no ok measured request (2 errors: connect)")
    state = load_state(spec, rows[:1] + [StepOutcome(run_id="s3", valid=True, invalid_reason=None)], 0, "r.md")
    assert state.is_completed() and state.message.startswith("l: 1 of 2 load steps valid")
