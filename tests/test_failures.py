"""Failures are rows: every failed request or run with config, error and fallback decision; an
out-of-memory config walks down the spec's oom_fallback ladder. Against a FAKE Ollama server
(tests/fakes/fake_ollama.py) whose model runs out of memory above 50 GPU layers."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.tr import tr
from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from trbench.data import failures
from trbench.data import store


@pytest.fixture
def small_gpu():
    with FakeOllama(models={DEFAULT_MODEL: FakeModel(oom_above_num_gpu=50)}) as server:
        yield server


def spec(url: str, ladder: list[dict]) -> dict:
    return {"tr_id": "oom", "provider": "external", "backend": "ollama", "urls": [url], "models": [DEFAULT_MODEL],
            "grid": {"num_gpu": [80], "num_ctx": [1024]}, "runs": 2, "requests_per_run": 2, "max_tokens": 4,
            "ttft": "cold", "oom_fallback": ladder}


def test_fake_ollama_oom_walks_down_the_ladder_and_is_logged(prefect_api, tmp_path, small_gpu):
    ladder = [{"num_gpu": 60}, {"num_gpu": 40, "num_ctx": 512}]
    state = tr(spec=spec(small_gpu.url, ladder), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "oom"
    runs = store.read_frame(root, "runs").sort_values(["num_gpu", "run_index"])
    by_gpu = {g: frame for g, frame in runs.groupby("num_gpu")}
    assert set(by_gpu) == {80, 60, 40}
    assert not by_gpu[80]["valid"].any() and [list(k) for k in by_gpu[80]["error_kinds"]] == [["oom"], []]
    assert by_gpu[80]["not_run"].fillna("measured").tolist() == ["measured", "oom_rung"]
    assert not by_gpu[60]["valid"].any()
    assert by_gpu[40]["valid"].all() and set(by_gpu[40]["num_ctx"]) == {512}
    assert set(by_gpu[40]["fallback_from"]) == {"gpu80_ctx1024_temp0.8"}
    log = failures.read_failure_log(root)
    assert set(log["error_kind"]) == {"oom"} and log["error_message"].str.contains("memory layout cannot be allocated").all()
    first = log[log["config"] == "gpu80_ctx1024_temp0.8"]
    assert len(first) == 1 and set(first["fallback_decision"]) == {"retried at gpu60_ctx1024_temp0.8 (next rung of oom_fallback)"}
    second = log[log["config"] == "gpu60_ctx1024_temp0.8"]
    assert len(second) == 1
    assert set(second["fallback_decision"]) == {"retried at gpu40_ctx512_temp0.8 (next rung of oom_fallback)"}
    assert log["gpu_memory_at_error"].isna().all()  # no GPU visible here: nothing invented
    assert set(log["instance"]) == {"external-0"}


def _chats_per_gpu_layers(server: FakeOllama) -> dict[int, int]:
    counts: dict[int, int] = {}
    for body in server.bodies("/api/chat"):
        counts[body["options"]["num_gpu"]] = counts.get(body["options"]["num_gpu"], 0) + 1
    return counts


def test_fake_ollama_oom_fails_fast_one_request_and_one_log_entry_per_rung(prefect_api, tmp_path, small_gpu):
    """The first out-of-memory answer (here the warm-up) ends the run and its rung: the fake
    receives one request per failing rung, and the failure log holds one OOM per rung."""
    ladder = [{"num_gpu": 60}, {"num_gpu": 40}]
    s = {**spec(small_gpu.url, ladder), "runs": 3, "requests_per_run": 4}
    state = tr(spec=s, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    assert _chats_per_gpu_layers(small_gpu) == {80: 1, 60: 1, 40: 3 * 4 + 1}
    root = tmp_path / "oom"
    log = failures.read_failure_log(root)
    assert log.groupby("config")["error_kind"].apply(list).to_dict() == {
        "gpu80_ctx1024_temp0.8": ["oom"], "gpu60_ctx1024_temp0.8": ["oom"]}
    runs = store.read_frame(root, "runs").set_index("run_id")
    cut = runs.loc["fake-llama_1b_gpu80_ctx1024_temp0.8_r00_a1"]
    assert not cut["valid"] and list(cut["error_kinds"]) == ["oom"] and cut["n_warmup"] == 1 and cut["n_requests"] == 0
    assert cut["invalid_reason"] == "out of memory at warm-up request 0: the run ended there"
    rest = runs.loc["fake-llama_1b_gpu80_ctx1024_temp0.8_r02_a1"]
    assert not rest["valid"] and rest["invalid_reason"] == (
        "not run: gpu80_ctx1024_temp0.8 ran out of memory in run fake-llama_1b_gpu80_ctx1024_temp0.8_r00_a1")
    assert rest["not_run"] == "oom_rung" and pd.isna(cut["not_run"])
    assert runs[runs["num_gpu"] == 40]["valid"].all()


def test_fake_ollama_oom_mid_run_ends_that_run_at_once(prefect_api, tmp_path):
    """No warm-up: the first measured request runs out of memory and the run ends there."""
    with FakeOllama(models={DEFAULT_MODEL: FakeModel(oom_above_num_gpu=50)}) as server:
        s = {**spec(server.url, [{"num_gpu": 40}]), "warmup_requests": 0, "requests_per_run": 5}
        state = tr(spec=s, output_dir=str(tmp_path), return_state=True)
        assert state.is_completed(), state.message
        assert _chats_per_gpu_layers(server) == {80: 1, 40: 2 * 5}
    runs = store.read_frame(tmp_path / "oom", "runs").set_index("run_id")
    assert runs.loc["fake-llama_1b_gpu80_ctx1024_temp0.8_r00_a1", "invalid_reason"] == (
        "out of memory at measured request 0: the run ended there")


def test_fake_ollama_oom_with_no_rung_left_stays_failed_and_says_so(prefect_api, tmp_path, small_gpu):
    state = tr(spec=spec(small_gpu.url, []), output_dir=str(tmp_path), return_state=True)
    assert state.is_failed() and "0 of 2 runs valid" in state.message
    log = failures.read_failure_log(tmp_path / "oom")
    assert set(log["fallback_decision"]) == {"no fallback left: the config stays failed"}
    assert (log["scope"] == "request").all() and len(log) == 1  # the warm-up: the rung ended there
    assert bool(log["is_warmup"].iloc[0])


def test_fake_ollama_fallbacks_are_in_the_report(prefect_api, tmp_path, small_gpu):
    state = tr(spec=spec(small_gpu.url, [{"num_gpu": 40}]), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    report = (tmp_path / "oom" / "report" / "oom.md").read_text()
    assert "| fake-llama:1b | gpu80_ctx1024_temp0.8 | retried at gpu40_ctx1024_temp0.8 (next rung of oom_fallback) |" in report


def _run_files(root) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (root / "runs").rglob("*.parquet")}


def test_resume_after_a_crash_between_rungs_goes_on_down_the_ladder(prefect_api, tmp_path, small_gpu):
    """The files a kill -9 leaves right after the out-of-memory rung finished: its run files, no
    fallback run and no decision yet. The same TR id again finishes the ladder, and measures
    nothing twice (the OOM runs are not run again)."""
    ladder = [{"num_gpu": 60}, {"num_gpu": 40, "num_ctx": 512}]
    s = spec(small_gpu.url, ladder)
    assert tr(spec=s, output_dir=str(tmp_path), return_state=True).is_completed()
    root = tmp_path / "oom"
    complete = _run_files(root)
    for path in (root / "runs").rglob("*.parquet"):
        if "gpu80" not in path.stem:
            path.unlink()
    for path in (root / "requests").rglob("*.parquet"):
        if "gpu80" not in path.stem:
            path.unlink()
    for path in (root / "fallbacks").glob("*.parquet"):
        path.unlink()
    kept = _run_files(root)
    assert kept and all("gpu80" in run_id for run_id in kept)

    state = tr(spec=s, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    resumed = _run_files(root)
    assert set(resumed) == set(complete)  # every rung again, with the same run ids
    assert all(resumed[run_id] == mtime for run_id, mtime in kept.items())  # the OOM runs were not run again
    assert f"{len(kept)} already finished" in state.message
    decisions = failures.read_fallbacks(root)
    assert list(decisions["to_config"]) == ["gpu60_ctx1024_temp0.8", "gpu40_ctx512_temp0.8"]


def test_resume_runs_only_the_missing_run_of_a_fallback_rung(prefect_api, tmp_path, small_gpu):
    s = spec(small_gpu.url, [{"num_gpu": 40}])
    assert tr(spec=s, output_dir=str(tmp_path), return_state=True).is_completed()
    root = tmp_path / "oom"
    before = _run_files(root)
    lost = "fake-llama_1b_gpu40_ctx1024_temp0.8_r01_a1"
    assert lost in before
    next((root / "runs").rglob(f"{lost}.parquet")).unlink()
    next((root / "requests").rglob(f"{lost}.parquet")).unlink()

    assert tr(spec=s, output_dir=str(tmp_path), return_state=True).is_completed()
    after = _run_files(root)
    assert set(after) == set(before)
    assert [run_id for run_id in after if after[run_id] != before[run_id]] == [lost]
    # the decision taken twice (first run, and again on resume) is logged once
    assert len(failures.read_fallbacks(root)) == 1
    log = failures.read_failure_log(root)
    assert set(log["fallback_decision"]) == {"retried at gpu40_ctx1024_temp0.8 (next rung of oom_fallback)"}


def test_resume_after_a_crash_right_after_an_oom_sends_nothing_more_on_that_rung(prefect_api, tmp_path, small_gpu):
    """The files a kill -9 leaves right after the first run of a rung ran out of memory: that run
    only. The same TR id again records the rung's other runs as not run, without a request, and
    goes on down the ladder."""
    s = spec(small_gpu.url, [{"num_gpu": 40}])
    assert tr(spec=s, output_dir=str(tmp_path), return_state=True).is_completed()
    root = tmp_path / "oom"
    kept = "fake-llama_1b_gpu80_ctx1024_temp0.8_r00_a1"
    for table in ("runs", "requests"):
        for path in (root / table).rglob("*.parquet"):
            if path.stem != kept:
                path.unlink()
    for path in (root / "fallbacks").glob("*.parquet"):
        path.unlink()
    before = _chats_per_gpu_layers(small_gpu)

    state = tr(spec=s, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    after = _chats_per_gpu_layers(small_gpu)
    assert after[80] == before[80]  # nothing more sent into the out-of-memory configuration
    assert after[40] == before[40] * 2
    runs = store.read_frame(root, "runs").set_index("run_id")
    assert runs.loc["fake-llama_1b_gpu80_ctx1024_temp0.8_r01_a1", "invalid_reason"] == (
        f"not run: gpu80_ctx1024_temp0.8 ran out of memory in run {kept}")
