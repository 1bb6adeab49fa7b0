"""A server that hangs does not end the flow without its report. Against FAKES of what cannot run
here: a fake Ollama server (tests/fakes/fake_ollama.py) that accepts an unload or a load and never
answers it, and the fake `ollama` CLI (tests/fakes/bin/ollama) whose server never becomes healthy."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from conftest import free_port

from flows.tr import tr
from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from trbench.data import failures
from trbench.data import store

STUCK = "fake-stuck:1b"  # its load never finishes
FAKE_BIN = Path(__file__).resolve().parent / "fakes" / "bin"


def external(tr_id: str, url: str, models: list[str], **extra) -> dict:
    return {"tr_id": tr_id, "provider": "external", "backend": "ollama", "urls": [url], "models": models,
            "grid": {"num_ctx": [1024]}, "runs": 1, "requests_per_run": 2, "max_tokens": 4, "ttft": "cold",
            "execution": {"mode": "serial"}, "stall_timeout_s": 1, "load_timeout_s": 1, **extra}


def written(root: Path, tr_id: str) -> None:
    """The failure log, the report and the validation results are there."""
    assert (root / "failures" / "failures.parquet").is_file()
    assert (root / "report" / f"{tr_id}.md").is_file()
    assert json.loads((root / "validation" / "validation.json").read_text())


def test_fake_ollama_hung_unload_and_hung_load_are_logged_and_the_matrix_goes_on(prefect_api, tmp_path):
    models = {DEFAULT_MODEL: FakeModel(unload_hangs=True), STUCK: FakeModel(load_hangs=True)}
    with FakeOllama(models) as server:
        state = tr(spec=external("hung", server.url, [DEFAULT_MODEL, STUCK]), output_dir=str(tmp_path),
                          return_state=True)
        asked = [(r.path, (r.body or {}).get("model")) for r in server.requests if r.path in ("/api/chat", "/api/generate")]
    assert state.is_completed(), state.message  # one valid run of two: the flow ends Completed, with its reasons
    assert "1 of 2 runs valid" in state.message and "1 instance failure in the failure log" in state.message
    root = tmp_path / "hung"
    written(root, "hung")
    # the matrix went on past the hung unload to the next model, whose load hung on every request
    assert asked.index(("/api/generate", DEFAULT_MODEL)) < asked.index(("/api/chat", STUCK))
    runs = store.read_frame(root, "runs").set_index("model")
    assert bool(runs.loc[DEFAULT_MODEL, "valid"]) and not bool(runs.loc[STUCK, "valid"])
    assert list(runs.loc[STUCK, "error_kinds"]) == ["stall"]

    log = failures.read_failure_log(root)
    unload = log[log["scope"] == "instance"]
    assert list(unload["operation"]) == ["unload"] and list(unload["model"]) == [DEFAULT_MODEL]
    assert list(unload["error_kind"]) == ["timeout"] and list(unload["instance"]) == ["external-0"]
    assert unload["error_message"].iloc[0].startswith(
        f"unload {DEFAULT_MODEL} on external-0 failed: OllamaAPIError: unload {DEFAULT_MODEL} at {server.url}"
        "/api/generate: no answer within 1 s")
    stalls = log[log["error_kind"] == "stall"]
    assert set(stalls["model"]) == {STUCK} and len(stalls) == 3  # the warm-up and both measured requests
    assert stalls["error_message"].str.contains("no byte for 1 s (stall_timeout_s)", regex=False).all()
    report = (root / "report" / "hung.md").read_text()
    servers = report[report.index("### Server failures"):report.index("### Out-of-memory fallbacks")]
    assert f"| external-0 | unload | {DEFAULT_MODEL} | timeout | unload {DEFAULT_MODEL} on external-0 failed" in servers
    failed = report[report.index("### Failed requests"):report.index("### Server failures")]
    assert failed.count(f"| {STUCK} |") == 3 and "| stall |" in failed


def test_fake_ollama_everything_hung_still_leaves_report_and_failure_log(prefect_api, tmp_path):
    """Nothing valid, so the flow ends Failed, and says why; what was tried is still checked and reported."""
    with FakeOllama({STUCK: FakeModel(load_hangs=True, unload_hangs=True)}) as server:
        state = tr(spec=external("allhung", server.url, [STUCK]), output_dir=str(tmp_path), return_state=True)
    assert state.is_failed() and "0 of 1 run valid" in state.message
    assert "unload fake-stuck:1b on external-0 failed" in state.message
    root = tmp_path / "allhung"
    written(root, "allhung")
    log = failures.read_failure_log(root)
    assert sorted(log["error_kind"]) == ["stall", "stall", "stall", "timeout"]


def test_fake_ollama_cli_servers_that_never_start_fail_the_flow_with_the_report_of_what_was_measured(
        prefect_api, tmp_path, monkeypatch):
    """A resumed TR run whose servers no longer start: the flow ends Failed, naming the start
    failures, and the failure log, report and validation cover the runs measured before."""
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OLLAMA_PYTHON", sys.executable)
    s = {"tr_id": "nostart", "provider": "ollama-process", "backend": "ollama", "models": [DEFAULT_MODEL],
         "ports": [free_port()], "grid": {"num_ctx": [512]}, "runs": 1, "requests_per_run": 2, "max_tokens": 4,
         "load_timeout_s": 3}
    assert tr(spec=s, output_dir=str(tmp_path), return_state=True).is_completed()
    root = tmp_path / "nostart"
    (root / "report" / "nostart.md").unlink()

    monkeypatch.setenv("FAKE_OLLAMA_NEVER_HEALTHY", "1")
    state = tr(spec={**s, "runs": 2}, output_dir=str(tmp_path), return_state=True)
    assert state.is_failed()
    # the first cause first: the start failure itself, not what it left unmeasured
    assert state.message.startswith("no server started: instance ollama-process-0 at http://127.0.0.1:")
    assert "did not answer 200 within 3 s" in state.message
    assert "validation: only the runs that never ran are missing" in state.message
    written(root, "nostart")  # the report deleted above is written again, from the run measured before
    assert DEFAULT_MODEL in (root / "report" / "nostart.md").read_text()
    log = failures.read_failure_log(root)
    start = log[log["scope"] == "instance"]
    assert list(start["operation"]) == ["start"] and list(start["instance"]) == ["ollama-process-0"]
    assert "did not answer 200 within 3 s" in start["error_message"].iloc[0]


def test_fake_ollama_server_that_dies_is_marked_and_its_remaining_runs_are_not_run(prefect_api, tmp_path):
    """The server goes away during the first run: after that run it does not answer at all, so it
    is marked, and every run left for it is recorded as not run, with the reason."""
    with FakeOllama({DEFAULT_MODEL: FakeModel(crashes=True), "fake-next:1b": FakeModel()}) as server:
        state = tr(spec=external("dies", server.url, [DEFAULT_MODEL, "fake-next:1b"], runs=2), output_dir=str(tmp_path),
                          return_state=True)
        chats = len(server.bodies("/api/chat"))
    assert state.is_failed() and "0 of 4 runs valid" in state.message
    assert chats == 1  # the one that took it down; the rest found nothing listening
    root = tmp_path / "dies"
    written(root, "dies")
    runs = store.read_frame(root, "runs").set_index("run_id")
    first = runs.loc["fake-llama_1b_gpu0_ctx1024_temp0.8_r00_a1"]
    assert not first["valid"] and "connect" in first["error_kinds"]
    rest = runs.drop(index=first.name)
    assert len(rest) == 3 and not rest["valid"].any()
    assert rest["invalid_reason"].str.startswith("not run: external-0 cannot be used again: health failed").all()
    assert (rest["not_run"] == "server_down").all()
    log = failures.read_failure_log(root)
    health = log[log["scope"] == "instance"]
    assert list(health["operation"]) == ["health"] and "external-0 is not used again" in health["error_message"].iloc[0]
    assert not log["run_id"].isin(rest.index).any()  # the runs not run are not failures of their own


def test_resume_measures_the_runs_a_dead_server_kept_from_running(prefect_api, tmp_path):
    """Run again once the server is back: the runs recorded as not run because their server was down
    are measured; the run that was measured (and failed) stays as it was, and nothing runs twice."""
    with FakeOllama({DEFAULT_MODEL: FakeModel(crashes=True), "fake-next:1b": FakeModel()}) as server:
        assert tr(spec=external("back", server.url, [DEFAULT_MODEL, "fake-next:1b"], runs=2),
                         output_dir=str(tmp_path), return_state=True).is_failed()
    root = tmp_path / "back"
    assert store.runs_to_retry(root) == store.finished_run_ids(root) - {"fake-llama_1b_gpu0_ctx1024_temp0.8_r00_a1"}
    with FakeOllama({DEFAULT_MODEL: FakeModel(), "fake-next:1b": FakeModel()}) as healthy:
        state = tr(spec=external("back", healthy.url, [DEFAULT_MODEL, "fake-next:1b"], runs=2),
                          output_dir=str(tmp_path), return_state=True)
        chats = len(healthy.bodies("/api/chat"))
    assert "3 of 3 runs valid" in state.message and "1 already finished" in state.message, state.message
    assert chats == 3 * 2 + 2  # three runs of two cold requests, one warm-up per model, nothing else
    runs = store.read_frame(root, "runs").set_index("run_id")
    assert len(runs) == 4 and runs["valid"].sum() == 3 and store.runs_to_retry(root) == set()
    assert not runs.loc["fake-llama_1b_gpu0_ctx1024_temp0.8_r00_a1", "valid"]  # measured before: kept
