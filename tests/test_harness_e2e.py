"""harness: [python, rust] end to end: tr on a real Prefect server, two real llama.cpp servers
(SmolLM2, threads=1) and the Rust runner; every table carries the harness, both harnesses' rows are
there, and the report shows the four-column winner matrix and the harness overhead table."""

from __future__ import annotations

import pytest
from conftest import llama_servers
import test_rust_runner

from flows.tr import tr
from trbench.data import store

runner = test_rust_runner.runner  # the fixture that builds the Rust runner (it skips where cargo is absent)


def both_spec(tr_id: str, ports: list[int]) -> dict:
    return {"tr_id": tr_id, "models": ["smollm2:135m"], "ports": ports, "harness": ["python", "rust"],
            "grid": {"num_ctx": [512]}, "runs": 2, "requests_per_run": 2, "warmup_requests": 1, "min_ok_requests": 2,
            "max_tokens": 12, "seed": 1, "ttft": "cold",
            "multi_agent": {"scenarios": ["chimera_homo"], "runs": 1, "max_tokens": 8, "warmup_rounds": 1,
                            "chimera": {"num_gpu": 0, "num_ctx": 1024, "temperature": 0.0}}}


@pytest.mark.usefixtures("runner")
def test_both_harnesses_in_one_tr_run(prefect_api, tmp_path, free_ports):
    ports = free_ports(2)
    state = tr(spec=both_spec("axis", ports), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "axis"
    runs, requests = store.read_frame(root, "runs"), store.read_frame(root, "requests")
    ma_runs, ma_requests = store.read_frame(root, "ma_runs"), store.read_frame(root, "ma_requests")
    for frame in (runs, requests, ma_runs, ma_requests, store.read_frame(root, "telemetry")):
        assert sorted(set(frame["harness"])) == ["python", "rust"]
    # twin runs, interleaved: run 0 python, run 0 rust, run 1 python, run 1 rust
    order = runs.sort_values("started_at")[["run_index", "harness"]].values.tolist()
    assert order == [[0, "python"], [0, "rust"], [1, "python"], [1, "rust"]]
    assert runs["valid"].all() and ma_runs["valid"].all()
    assert runs.groupby("harness")["cell_hash"].nunique().tolist() == [1, 1] and runs["cell_hash"].nunique() == 2
    measured = requests[~requests["is_warmup"]]
    # each harness's figures come from its own raw records: chunk offsets and client CPU on every request
    assert (measured["client_cpu_s"] > 0).all() and (measured["ttft_ms"] > 0).all()
    assert measured.groupby("harness").size().tolist() == [4, 4]
    assert (ma_requests.loc[ma_requests["phase"] != "warmup", "client_cpu_s"] > 0).all()

    report = (root / "report" / "axis-appendix.md").read_text()  # the harness tables are the appendix's
    assert "### Winner by scenario and harness" in report and "### Harness overhead" in report
    assert "| single-agent Python | single-agent Rust | multi-agent Python | multi-agent Rust |" in report
    for metric in ("TTFT cold", "client decode rate", "client CPU per request"):
        assert f"| smollm2:135m | gpu0_ctx512_temp0.8 | {metric} |" in report
    assert "validation failed" not in state.message
    assert not llama_servers(ports[0]) and not llama_servers(ports[1])

    again = tr(spec=both_spec("axis", ports), output_dir=str(tmp_path), return_state=True)
    assert again.is_completed() and "6 already finished" in again.message, again.message
