"""The oom_fallback ladder runs on what Ollama really answers when a model does not fit: HTTP 500
{"error"} before any stream, with the messages of Ollama's own engines (a FAKE Ollama server,
tests/fakes/fake_ollama.py OOM_MESSAGES, whose card fits 50 GPU layers)."""

from __future__ import annotations

import pytest

from flows.tr import tr
from tests.fakes.fake_ollama import DEFAULT_MODEL, OOM_MESSAGES, FakeModel, FakeOllama
from trbench.data import failures
from trbench.data import store


@pytest.mark.parametrize("kind", ["llama_buffer", "backend_buffer"])
def test_real_ollama_oom_messages_walk_the_ladder(prefect_api, tmp_path, kind):
    with FakeOllama(models={DEFAULT_MODEL: FakeModel(oom_above_num_gpu=50, oom_kind=kind)}) as server:
        spec = {"tr_id": "oomreal", "provider": "external", "backend": "ollama", "urls": [server.url],
                "models": [DEFAULT_MODEL], "grid": {"num_gpu": [80], "num_ctx": [1024]}, "runs": 1,
                "requests_per_run": 2, "max_tokens": 4, "oom_fallback": [{"num_gpu": 40}]}
        state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    runs = store.read_frame(tmp_path / "oomreal", "runs")
    assert set(runs.loc[~runs["valid"], "num_gpu"]) == {80} and set(runs.loc[runs["valid"], "num_gpu"]) == {40}
    log = failures.read_failure_log(tmp_path / "oomreal")
    assert set(log["error_kind"]) == {"oom"}
    assert log["error_message"].str.contains(OOM_MESSAGES[kind].splitlines()[-1], regex=False).all()
    assert set(log["fallback_decision"]) == {"retried at gpu40_ctx1024_temp0.8 (next rung of oom_fallback)"}
