"""tr on the Ollama providers, end to end, against FAKES: a fake Docker Engine API
(tests/fakes/fake_docker.py) and a fake `ollama` CLI (tests/fakes/bin/ollama); both serve the fake
Ollama HTTP API with the documented shapes. The fake engine here is for the GPU device requests,
which succeed only there (no GPU or NVIDIA runtime on the test machines); a TR through a REAL
Docker engine, and a killed run's leftovers removed by the next, are in
tests/test_ollama_docker_engine.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
from conftest import free_port

from flows.tr import tr
from tests.fakes.fake_docker import FakeDocker
from tests.fakes.fake_ollama import DEFAULT_MODEL
from trbench.data import store

FAKE_BIN = Path(__file__).resolve().parent / "fakes" / "bin"


def spec(tr_id: str, provider: str, **extra) -> dict:
    return {"tr_id": tr_id, "provider": provider, "backend": "ollama", "models": [DEFAULT_MODEL],
            "ports": [free_port(), free_port()], "grid": {"num_gpu": [60, 80], "num_ctx": [512]}, "runs": 2,
            "requests_per_run": 2, "max_tokens": 8, "load_timeout_s": 20,
            "multi_agent": {"scenarios": ["baseline_vs_chimera"], "runs": 2, "max_tokens": 8}, **extra}


def check_tr(root: Path) -> None:
    runs, requests = store.read_frame(root, "runs"), store.read_frame(root, "requests")
    assert len(runs) == 4 and runs["valid"].all()
    measured = requests[~requests["is_warmup"]]
    assert (measured["output_tokens"] > 0).all() and measured["decode_tps"].notna().all()
    assert sorted(measured["num_gpu"].unique()) == [60, 80]
    ma = store.read_frame(root, "ma_runs")
    assert len(ma) == 2 and ma["valid"].all()
    assert ((ma["efficiency_pct"] - ma["speedup"] / 2 * 100).abs() < 1e-9).all()
    manifest = store.read_manifest(next((root / "runs").rglob("*.parquet")))
    assert len(manifest.models[DEFAULT_MODEL].digest or "") == 64  # /api/tags: the bare sha256 hex
    assert manifest.models[DEFAULT_MODEL].modelfile  # the `ollama show --modelfile` data


def test_fake_docker_tr_matrix_runs_and_removes_its_containers(prefect_api, tmp_path, monkeypatch):
    with FakeDocker(images=["ollama/ollama:latest"]) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
        state = tr(spec=spec("dock", "ollama-docker", gpu_devices=["0", "1"]), output_dir=str(tmp_path),
                          return_state=True)
        assert state.is_completed(), state.message
        check_tr(tmp_path / "dock")
        creates = engine.create_bodies
        assert len(creates) == 2
        for body in creates:
            bindings = body["HostConfig"]["PortBindings"]["11434/tcp"]
            assert bindings[0]["HostIp"] == "127.0.0.1"
        assert {r["DeviceIDs"][0] for b in creates for r in b["HostConfig"]["DeviceRequests"]} == {"0", "1"}
        assert engine.wait_until(lambda: not any(c.running for c in engine.containers.values()) and not engine.containers)


def test_fake_ollama_cli_tr_matrix_runs_and_leaves_no_process(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OLLAMA_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_OLLAMA_RECORD_DIR", str(tmp_path / "records"))
    state = tr(spec=spec("proc", "ollama-process"), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    check_tr(tmp_path / "proc")
    left = [p for p in psutil.process_iter(["cmdline"]) if "fake_ollama_cli.py" in " ".join(p.info["cmdline"] or [])]
    assert not [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_fake_ollama_cli_missing_model_fails_preflight_with_the_fix(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OLLAMA_PYTHON", sys.executable)
    state = tr(spec={**spec("nomodel", "ollama-process"), "models": ["qwen2.5:7b"]}, output_dir=str(tmp_path),
                      return_state=True)
    assert state.is_failed()
    message = repr(state.result(raise_on_failure=False))
    assert "check 'model present'" in message and "qwen2.5:7b" in message and "pull_models: true" in message


def test_fake_ollama_cli_pulls_a_missing_model_when_allowed(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OLLAMA_PYTHON", sys.executable)
    # a name without a tag: Ollama stores and lists it as qwen2.5:latest
    s = {**spec("pulled", "ollama-process"), "models": ["qwen2.5"], "pull_models": True, "multi_agent": None,
         "grid": {"num_ctx": [512]}}
    state = tr(spec=s, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "pulled"
    assert set(store.read_frame(root, "runs")["model"]) == {"qwen2.5"}
    manifest = store.read_manifest(next((root / "runs").rglob("*.parquet")))
    assert len(manifest.models["qwen2.5"].digest or "") == 64  # its facts found under the listed name
    assert all(d.estimate_gib for d in manifest.vram_budget)  # and an estimate from them
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        pulls = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["pull-ollama-process-0-qwen2-5", "pull-ollama-process-1-qwen2-5"])))
    assert pulls and all(float(a.data) == 100.0 for a in pulls)  # the pull's progress, streamed


def test_fake_ollama_serial_mode_unloads_each_model_before_the_next(prefect_api, tmp_path):
    from tests.fakes.fake_ollama import DEFAULT_THINKER, FakeOllama

    with FakeOllama() as server:
        s = {"tr_id": "serial", "provider": "external", "backend": "ollama", "urls": [server.url],
             "models": [DEFAULT_MODEL, DEFAULT_THINKER], "runs": 1, "requests_per_run": 2, "max_tokens": 4,
             "execution": {"mode": "serial"}}
        state = tr(spec=s, output_dir=str(tmp_path), return_state=True)
        assert state.is_completed(), state.message
        sequence = [(r.path, (r.body or {}).get("model"), (r.body or {}).get("keep_alive"))
                    for r in server.requests if r.path in ("/api/chat", "/api/generate")]
    unload_first = sequence.index(("/api/generate", DEFAULT_MODEL, 0))
    first_chat_of_second = next(i for i, (path, model, _) in enumerate(sequence) if path == "/api/chat" and model == DEFAULT_THINKER)
    last_chat_of_first = max(i for i, (path, model, _) in enumerate(sequence) if path == "/api/chat" and model == DEFAULT_MODEL)
    assert last_chat_of_first < unload_first < first_chat_of_second
