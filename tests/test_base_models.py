"""Base models (no chat template) on a real llama.cpp server: recognised from the GGUF, driven as plain-text
completion, and checked by the answer sanity check, which catches the chat path's template garbage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trbench.measure import metrics
from trbench.backends import ChatRequest, OpenAIClient
from trbench.engines import bundled, gguf
from trbench.engines.instance import served_names
from trbench.engines.embedded import EmbeddedInstance
from trbench.engines.model_kind import ollama_has_chat_template, prompt_style
from trbench.config.prompts import load_prompts
from trbench.run.single import RunPlan, execute_run
from trbench.run.settings import RunSettings
from trbench.config.spec import parse_spec

from conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def test_gguf_facts_tell_instruct_from_base() -> None:
    smol = gguf.model_facts(bundled.resolve("smollm2:135m"))
    gemma = gguf.model_facts(bundled.resolve("gemma3:270m"))
    assert (smol["chat_template"], smol["model_kind"], smol["prompt_style"]) == (True, "instruct", "chat")
    assert (gemma["chat_template"], gemma["model_kind"], gemma["prompt_style"]) == (False, "base", "completion")


@pytest.mark.parametrize(("template", "has"), [
    ("{{ .Prompt }}", False), ("{{.Prompt}}\n", False), ("", False), (None, None),
    ("{{- range .Messages }}<start_of_turn>{{ .Role }}\n{{ .Content }}<end_of_turn>\n{{- end }}", True),
    ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}{{ .Prompt }}", True),
])
def test_ollama_show_template_tells_chat_from_base(template, has) -> None:
    # Ollama /api/show returns the model's template; a base model's is the bare prompt (docs/modelfile.md)
    assert ollama_has_chat_template(template) is has


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    spec = parse_spec({"tr_id": "base", "models": ["gemma3:270m"], "max_tokens": 48, "requests_per_run": 3,
                       "seed": 42, "ttft": "both", "grid": {"num_ctx": [1024]}})
    inst = EmbeddedInstance("base", "127.0.0.1", free_port(), None, tmp_path_factory.mktemp("logs"))
    inst.prepare(spec.cells()[0])
    client = OpenAIClient(inst.url)
    yield spec, inst, client
    client.close()
    inst.stop()


def test_served_names_are_exactly_the_model(gemma) -> None:
    _, inst, _ = gemma
    assert served_names(inst.url) == ["gemma3:270m"]  # not its characters ('1', '2', ':', 'a', ...)


def test_chat_path_makes_the_base_model_write_template_tokens(gemma) -> None:
    # what the quickstart did before: llama.cpp's ChatML fallback; the sanity check must catch it
    _, inst, client = gemma
    messages = [{"role": "system", "content": "You are a concise technical assistant."},
                {"role": "user", "content": "Explain in a few sentences what a KV cache is."}]
    ex = client.chat(ChatRequest(model="gemma3:270m", messages=messages, max_tokens=48, seed=42, temperature=0.8))
    assert metrics.answer_check(ex.text, messages[1]["content"]) == "template_tokens", ex.text


def test_base_model_run_is_plain_completion_without_template_tokens(gemma) -> None:
    spec, inst, client = gemma
    style = prompt_style(inst.model_facts("gemma3:270m"))
    assert style == "completion"
    plan = RunPlan(tr_id="base", cell=spec.cells()[0], cell_hash="h", run_index=0, instance="base",
                   instance_url=inst.url, prompt_style=style)
    result = execute_run(RunSettings.of(spec), plan, client, load_prompts(ROOT / spec.prompts), None, "d", 1)
    measured = [r for r in result.request_rows if not r["is_warmup"]]
    assert {r["prompt_style"] for r in result.request_rows} == {"completion"}
    assert all(r["status"] == "ok" for r in measured)
    assert not any(tok in r["output_text"] for r in measured for tok in metrics.TEMPLATE_TOKENS)
    assert "template_tokens" not in {r["answer_check"] for r in measured}
    # ttft: both, each prompt cold then cached, and the server's counts agree
    assert [(r["cache_target"], r["cache_state"]) for r in measured] == [("cold", "cold"), ("cached", "cached")] * 3
    assert result.run_row["n_cold"] == 3 and result.run_row["n_cached"] == 3 and result.run_row["valid"]
    assert result.run_row["ttft_cold_ms_p50"] > 3 * result.run_row["ttft_cached_ms_p50"]
    # prefill tok/s from the cold prefills only: a cached one processes a token or two
    cold = [metrics.prefill_rate(r["prompt_tokens"], r["cached_tokens"], r["prefill_ms"])
            for r in measured if r["cache_state"] == "cold"]
    assert result.run_row["prefill_tps_p50"] == pytest.approx(float(np.median(cold)))
    assert 0 < result.run_row["prefill_tps_client_p50"] < result.run_row["prefill_tps_p50"]
