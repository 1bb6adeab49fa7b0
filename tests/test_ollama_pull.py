"""Preflight against a FAKE Ollama server (tests/fakes/fake_ollama.py): model names as Ollama
compares them, pulls streamed with progress, pull failures as Ollama reports them (an {"error"}
line inside a 200 stream), a server that answers /api/tags with an error."""

from __future__ import annotations

import io

import pytest

from tests.fakes.fake_ollama import PULL_NOT_FOUND_MESSAGE, FakeModel, FakeOllama
from trbench.run import preflight
from trbench.run import progress
from trbench.engines import ollama_names
from trbench.engines.external import ExternalInstance


@pytest.fixture
def events():
    seen: list[progress.ProgressEvent] = []
    stop = progress.subscribe(seen.append)
    yield seen
    stop()


def test_names_compare_as_ollama_parses_them():
    assert ollama_names.canonical("llama3.2") == "registry.ollama.ai/library/llama3.2:latest"
    assert ollama_names.same_model("llama3.2", "llama3.2:latest")
    assert ollama_names.same_model("Qwen2.5:7B", "library/qwen2.5:7b")
    assert ollama_names.same_model("hf.co/bartowski/x-GGUF:Q4_K_M", "hf.co/bartowski/x-GGUF:Q4_K_M")
    assert not ollama_names.same_model("llama3.2", "llama3.2:1b")
    assert not ollama_names.same_model("myuser/llama3.2", "llama3.2")
    assert ollama_names.canonical("localhost:5000/m").endswith("/m:latest")  # a colon before the last slash is no tag


def test_a_name_without_tag_is_present_as_latest():
    with FakeOllama({"llama3.2:latest": FakeModel()}) as fake:
        inst = ExternalInstance("external-0", fake.url, "ollama")
        assert preflight.check_model(inst, "ollama", "llama3.2") == "external-0: llama3.2 present (as llama3.2:latest)"
        assert [r.path for r in fake.requests].count("/api/pull") == 0  # not pulled again
        facts = inst.model_facts("llama3.2")  # found by its listed name: digest and numbers for the VRAM estimate
        assert facts.digest == FakeModel().digest("llama3.2:latest") and facts.context_length


def test_pull_is_streamed_with_progress(events):
    with FakeOllama({}) as fake:
        inst = ExternalInstance("external-0", fake.url, "ollama")
        assert preflight.check_model(inst, "ollama", "qwen2.5", pull=True) == "external-0: qwen2.5 pulled"
        assert fake.bodies("/api/pull") == [{"model": "qwen2.5", "stream": True}]
        assert preflight.check_model(inst, "ollama", "qwen2.5:latest").endswith("present")
    pulls = [e for e in events if e.kind == "pull"]
    assert pulls[0].message == "external-0: qwen2.5: pulling manifest"
    pcts = [e.pull_pct for e in pulls if e.total]
    assert pcts == [0.0, 25.0, 50.0, 100.0] and pulls[-1].message.endswith(": success")
    out = io.StringIO()
    lines = progress.PlainLines(out)
    for e in pulls:
        lines(e)
    assert "pull external-0: qwen2.5: pulling " in out.getvalue() and "100% of 0.81 GB" in out.getvalue()


def test_pull_error_line_fails_preflight_with_the_server_message():
    with FakeOllama({}, registry=lambda name: None) as fake:
        inst = ExternalInstance("external-0", fake.url, "ollama")
        with pytest.raises(preflight.PreflightError) as info:
            preflight.check_model(inst, "ollama", "no-such-model:1b", pull=True)
    msg = str(info.value)
    assert "check 'model present'" in msg and PULL_NOT_FOUND_MESSAGE in msg and "fix: check the model name" in msg


def test_a_pull_that_stops_sending_is_a_preflight_error_not_a_traceback(monkeypatch):
    from trbench.engines import ollama_pull

    monkeypatch.setattr(ollama_pull, "READ_TIMEOUT_S", 0.3)
    with FakeOllama({}, pull_step_s=1.0) as fake:
        inst = ExternalInstance("external-0", fake.url, "ollama")
        with pytest.raises(preflight.PreflightError, match=r"no progress from .* for 0.3 s \(ReadTimeout\)"):
            preflight.check_model(inst, "ollama", "big:70b", pull=True)


def test_a_tags_error_is_a_preflight_error():
    with FakeOllama() as fake:
        inst = ExternalInstance("external-0", fake.url + "/nothing", "ollama")  # answers 404 with text
        with pytest.raises(preflight.PreflightError, match=r"check 'model present': GET /api/tags answered HTTP 404"):
            preflight.check_model(inst, "ollama", "fake-llama:1b")
