"""tr (the TR flow) end to end on a real Prefect server and a real llama.cpp server (SmolLM2)."""

from __future__ import annotations

import socket

import pyarrow.dataset as ds
import pytest
from conftest import llama_servers

from flows.tr import final_state, tr
from trbench.workloads.run_outcomes import RunOutcome
from trbench.data import store
from trbench.config.spec import parse_spec


def tiny_spec(tr_id: str, port: int, **extra) -> dict:
    return {
        "tr_id": tr_id, "models": ["smollm2:135m"], "ports": [port],
        "grid": {"num_ctx": [512, 1024]}, "runs": 2, "requests_per_run": 2, "warmup_requests": 1,
        "min_ok_requests": 2, "max_tokens": 16, "seed": 1, "ttft": "cold", **extra,
    }


@pytest.fixture
def port(free_ports):
    return free_ports(1)[0]


def test_matrix_runs_every_cell_writes_parquet_and_resumes(prefect_api, tmp_path, port):
    state = tr(spec=tiny_spec("flowtest", port), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert "4 of 4 runs valid" in state.message
    root = tmp_path / "flowtest"
    runs = ds.dataset(root / "runs", partitioning="hive").to_table().to_pandas()
    requests = ds.dataset(root / "requests", partitioning="hive").to_table().to_pandas()
    assert sorted(runs["num_ctx"].tolist()) == [512, 512, 1024, 1024]
    assert runs["valid"].all() and (runs["n_ok"] == 2).all()
    # one warm-up per cell, stored but marked
    assert requests.groupby("num_ctx")["is_warmup"].sum().tolist() == [1, 1]
    measured = requests[~requests["is_warmup"]]
    assert len(measured) == 4 * 2 and (measured["output_tokens"] > 0).all()
    # ttft: cold: every measured prompt new to the server's cache, by its own counts
    assert set(measured["cache_target"]) == {"cold"} and set(measured["cache_state"]) == {"cold"}
    # the server was (re)loaded once per context size: the first run of each cell carries the load time
    loads = runs.sort_values(["num_ctx", "run_index"])["instance_load_ms"].tolist()
    assert loads[0] > 0 and loads[2] > 0 and loads[1] != loads[1] and loads[3] != loads[3]  # NaN for the rest
    # run aggregates are the statistics of their own request rows
    for _, run in runs.iterrows():
        rows = measured[measured["run_id"] == run["run_id"]]
        assert run["decode_tps_p50"] == pytest.approx(rows["decode_tps"].median())
    assert (store.read_manifest(next((root / "runs").rglob("*.parquet"))).models["smollm2:135m"].digest or "").startswith("sha256:")
    assert (root / "report" / "flowtest.md").is_file()
    assert not llama_servers(port)

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        keys = {a.key for a in artifact}
    assert "flowtest-report" in keys and "flowtest-progress" in keys
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        progress = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flowtest-progress"])))
    assert progress and float(progress[0].data) == 100.0

    again = tr(spec=tiny_spec("flowtest", port), output_dir=str(tmp_path), return_state=True)
    assert again.is_completed() and "4 already finished" in again.message
    assert len(list((root / "runs").rglob("*.parquet"))) == 4


def test_preflight_port_taken_fails_before_any_server(prefect_api, tmp_path, port):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        state = tr(spec=tiny_spec("portfail", port), output_dir=str(tmp_path), return_state=True)
    assert state.is_failed()
    message = str(state.message) + repr(state.result(raise_on_failure=False))
    assert "port free" in message and f"127.0.0.1:{port} is already in use" in message and "fix:" in message
    assert not (tmp_path / "portfail" / "runs").exists()


def test_bad_spec_fails_before_any_server(prefect_api, tmp_path, port):
    state = tr(spec={**tiny_spec("badspec", port), "grid": {"num_ctx": [1]}}, output_dir=str(tmp_path), return_state=True)
    assert state.is_failed()
    assert "field 'grid.num_ctx'" in repr(state.result(raise_on_failure=False))
    assert not llama_servers(port)


def test_all_runs_failing_ends_failed_with_every_run_recorded(prefect_api, tmp_path, port):
    spec = tiny_spec("allfail", port, timeout_s=0.001, grid={"num_ctx": [512]})
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_failed() and "0 of 2 runs valid" in state.message
    requests = store.read_frame(tmp_path / "allfail", "requests")
    assert set(requests["error_kind"]) == {"timeout"} and set(requests["status"]) == {"error"}
    runs = store.read_frame(tmp_path / "allfail", "runs")
    assert (~runs["valid"]).all() and runs["invalid_reason"].str.contains("fewer than min_ok_requests").all()
    assert not llama_servers(port)


def test_partial_failure_completes_with_a_message():
    spec = parse_spec({"tr_id": "p", "models": ["m"]})
    outcomes = [RunOutcome(run_id="a", model="m", valid=True, invalid_reason=None),
                RunOutcome(run_id="b", model="m", valid=False, invalid_reason="1 ok request of 3")]
    state = final_state(spec, outcomes, 0, "r.md")
    assert state.is_completed() and "1 of 2 runs valid" in state.message and "b: 1 ok request of 3" in state.message
    assert final_state(spec, outcomes[1:], 0, "r.md").is_failed()


def _checked(*failed: tuple[str, str, str]):
    from trbench.validation.gx import ExpectationOutcome
    from trbench.validation.validate import ValidationResult

    results = [ExpectationOutcome(table=t, expectation=e, gx_type="x", columns=[], success=False, message=m)
               for t, e, m in failed]
    return ValidationResult(tr_root="r", success=not results, gx_version="1", elapsed_s=0.0, results=results)


def test_a_failed_state_opens_with_its_first_cause():
    """The CLI prints the message as its last line: the first cause opens it; the runs a stop left
    unmeasured are one clause, not the run-count checks' messages."""
    spec = parse_spec({"tr_id": "p", "models": ["m"]})
    missing = ("run_counts", "expected_runs_per_config", "config m|0|512|0.8: 0 runs of 3 expected, missing ...")
    nothing = ("tr", "tr_has_finished_runs", "tr_has_finished_runs failed (at least one finished run; observed 0)")
    stop = "no server started: instance x: it did not start; fix: do y"
    state = final_state(spec, [], 0, "r.md", _checked(missing, nothing), cause=stop)
    assert state.is_failed() and state.message == f"{stop}; p: 0 of 0 runs valid; report r.md; " \
                                                  "nothing measured, so nothing to validate"
    ran = [RunOutcome(run_id="a", model="m", valid=True, invalid_reason=None)]
    state = final_state(spec, ran, 0, "r.md", _checked(missing), cause=stop)
    assert state.message == f"{stop}; p: 1 of 1 run valid; report r.md; validation: only the runs that never ran are missing"
    # a check that fails on the data itself is its own failure, kept whole
    bad = ("requests", "ttft_positive_on_ok_rows", "requests.ttft_ms: 2 rows <= 0")
    state = final_state(spec, ran, 0, "r.md", _checked(missing, bad), cause=stop)
    assert state.message.startswith(stop) and "validation failed: requests.ttft_ms: 2 rows <= 0" in state.message
    assert "0 runs of 3 expected" not in state.message
    # without a stop, nothing valid: the first invalid run is the cause, the others follow
    runs = [RunOutcome(run_id=f"r{i}", model="m", valid=False, invalid_reason=f"reason {i}") for i in range(3)]
    state = final_state(spec, runs, 0, "r.md")
    assert state.is_failed() and state.message.startswith("run r0 invalid: reason 0; fix: each request's error is "
                                                          "in the report's Failures section")
    assert "; p: 0 of 3 runs valid" in state.message
    assert state.message.endswith("2 more invalid: r1: reason 1; r2: reason 2")
    # without a stop, a failed check on the data is the cause
    state = final_state(spec, ran, 0, "r.md", _checked(bad))
    assert state.is_failed() and state.message.startswith("validation failed: requests.ttft_ms: 2 rows <= 0; fix: "
                                                          "the failing rows of each check are in validation/validation.json")


def test_a_server_that_dies_mid_matrix_is_restarted_and_the_matrix_goes_on(prefect_api, tmp_path, port):
    import threading
    import time

    root = tmp_path / "crash"

    def kill_server_after_first_run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((root / "runs").rglob("*.parquet")):
            time.sleep(0.02)
        for proc in llama_servers(port):
            proc.kill()

    killer = threading.Thread(target=kill_server_after_first_run, daemon=True)
    killer.start()
    spec = tiny_spec("crash", port, runs=3, requests_per_run=3, grid={"num_ctx": [512]}, min_ok_requests=1)
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    killer.join()
    assert state.is_completed(), state.message
    runs = store.read_frame(root, "runs").sort_values("run_index")
    assert len(runs) == 3
    # a later run found the server gone, started it again (its load time recorded) and measured
    restarted = runs[(runs["run_index"] > 0) & runs["instance_load_ms"].notna()]
    assert len(restarted) >= 1 and runs.iloc[-1]["valid"]
    requests = store.read_frame(root, "requests")
    after_restart = requests[requests["run_id"].isin(restarted["run_id"])]
    assert after_restart["is_warmup"].sum() == 1  # a reloaded server gets its warm-up again
    assert not llama_servers(port)


def test_a_tr_run_is_checked_against_its_baseline_tr_run(prefect_api, tmp_path, port):
    base = tiny_spec("nightly-1", port, grid={"num_ctx": [512]})
    assert tr(spec=base, output_dir=str(tmp_path), return_state=True).is_completed()
    state = tr(spec={**base, "tr_id": "nightly-2", "baseline_tr_id": "nightly-1", "regression_threshold_pct": 10},
                      output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert "vs baseline nightly-1 (threshold 10%)" in state.message
    report = (tmp_path / "nightly-2" / "report" / "nightly-2.md").read_text()
    section = report.split("## Regression against a baseline", 1)[1].split("\n## ", 1)[0]
    assert "nightly-1" in section and "10" in section
