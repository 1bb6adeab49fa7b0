"""Preflight: each bad case gives one clear error naming instance, check and fix, before any
benchmark time is spent; the VRAM budget skips or downgrades with a recorded reason."""

from __future__ import annotations

import pytest
from conftest import free_port, llama_servers

from trbench.run.plan import apply_budget, plan_runs
from trbench.tr.opening import vram_budget
from trbench.measure import vram
from trbench.engines import create_instances
from trbench.config.prompts import load_prompts
from trbench.config.spec import SpecError, parse_spec


def failure(prefect_api, tmp_path, spec: dict) -> str:
    from flows.tr import tr

    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_failed()
    message = repr(state.result(raise_on_failure=False))
    assert not (tmp_path / spec["tr_id"] / "runs").exists()
    return message


def test_server_down(prefect_api, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    message = failure(prefect_api, tmp_path, {"tr_id": "down", "provider": "external", "backend": "ollama",
                                               "urls": [url], "models": ["m"]})
    assert "instance external-0, check 'server answers'" in message and url in message and "fix: start the server" in message


def test_model_missing_on_the_embedded_engine(prefect_api, tmp_path):
    port = free_port()
    message = failure(prefect_api, tmp_path, {"tr_id": "nomodel", "models": ["llama3.1:8b"], "ports": [port]})
    assert "check 'model present'" in message and "'llama3.1:8b' is not bundled" in message
    assert "fix: use one of ['gemma3:270m', 'smollm2:135m']" in message
    assert not llama_servers(port)


def test_unknown_provider_is_a_spec_error():
    with pytest.raises(SpecError, match=r"field 'provider': Input should be 'embedded', 'external', 'ollama-docker', 'ollama-process' or 'mock'"):
        parse_spec({"tr_id": "x", "models": ["m"], "provider": "vllm"})


class FakeNVML:
    """A FAKE of pynvml's answers as gpu_free_mib() reads them: one 12 GiB card with `free` MiB free."""

    def __init__(self, free_mib: int):
        self.free = free_mib

    def __call__(self):
        return [vram.GpuMemory(index=0, name="Fake RTX 4080", total_mib=12282, free_mib=self.free,
                               used_mib=12282 - self.free)]


def budget_for(monkeypatch, free_mib: int | None, num_ctx: list[int], slots: int = 1):
    spec = parse_spec({"tr_id": "v", "models": ["gemma3:270m"], "grid": {"num_gpu": [80], "num_ctx": num_ctx},
                       "server": {"slots": slots}})
    monkeypatch.setattr(vram, "gpu_free_mib", (lambda: None) if free_mib is None else FakeNVML(free_mib))
    inst = create_instances(spec.server, __import__("pathlib").Path("/tmp"))[0]
    facts = {"gemma3:270m": inst.model_facts("gemma3:270m")}
    return spec, vram_budget(spec, facts)


def test_no_gpu_runs_every_cell_and_says_the_budget_was_not_checked(monkeypatch):
    _, decisions = budget_for(monkeypatch, None, [512])
    assert [d.action for d in decisions] == ["run"]
    assert decisions[0].reason == "no GPU visible: budget not checked" and decisions[0].estimate_gib > 0.5


def test_the_budget_counts_a_whole_context_per_slot(monkeypatch):
    (one,), (two,) = (budget_for(monkeypatch, 4000, [8192], slots=n)[1] for n in (1, 2))
    assert "x 2 parallel sequences" in two.formula and "parallel" not in one.formula
    assert two.estimate_gib > one.estimate_gib


def test_a_cell_over_budget_is_downgraded_or_skipped_with_its_reason(monkeypatch):
    # Gemma 3 270M at gpu 80: 756 MiB estimated at ctx 512, 1323 MiB at ctx 32768; 800 MiB free
    spec, decisions = budget_for(monkeypatch, 800, [512, 32768])
    by_ctx = {d.num_ctx: d for d in decisions}
    assert by_ctx[512].action == "run"
    assert by_ctx[32768].action in ("downgrade", "skip") and "800 MiB" in by_ctx[32768].reason
    prompts = load_prompts("datasets/prompts/single_agent.yaml")
    plans = plan_runs(spec, prompts, create_instances(spec.server, __import__("pathlib").Path("/tmp")))
    kept, skipped = apply_budget(plans, decisions, spec, prompts)
    assert len(kept) + len(skipped) == len(plans)
    big = [p for p in kept if p.cell.num_ctx != 512] + [p for p, _ in skipped]
    assert all(p.cell.num_ctx < 32768 or p.cell.num_gpu < 80 for p in big if p in kept)
    assert all("VRAM budget" in reason for _, reason in skipped)

    _, nothing = budget_for(monkeypatch, 100, [512])
    assert nothing[0].action == "skip" and "100 MiB" in nothing[0].reason


@pytest.mark.parametrize(("provider", "backend"), [("embedded", "openai"), ("external", "ollama"),
                                                   ("external", "openai"), ("ollama-docker", "ollama"),
                                                   ("ollama-process", "ollama")])
def test_every_preflight_fix_names_only_fields_of_its_provider(provider, backend, tmp_path, monkeypatch):
    """A missing model, a listed model whose facts cannot be read, a busy port: each fix names only
    fields that the provider's `server:` section (or the spec's top level) has."""
    from test_cli_failures import assert_fields_exist

    from trbench.engines import ollama_api
    from trbench.run import preflight

    extra = {"urls": ["http://127.0.0.1:9"]} if provider == "external" else {"ports": [free_port()]}
    spec = parse_spec({"tr_id": "fix", "provider": provider, "backend": backend, "models": ["smollm2:135m"], **extra})
    (inst,) = create_instances(spec.server, tmp_path, 1, backend=backend)
    fixes = []
    monkeypatch.setattr(preflight, "available_models", lambda *_: ["other:1b"])
    for model in ("qwen2.5:7b", "smollm2:135m"):
        try:
            preflight.check_model(inst, backend, model, pull=False)
        except preflight.PreflightError as err:
            fixes.append(str(err))
    for err in (ollama_api.OllamaAPIError("/api/show m: HTTP 404: model 'm' not found", "http_4xx"),
                ollama_api.OllamaAPIError("/api/show m: cannot connect", "connect")):
        def fail(model, err=err):
            raise err
        monkeypatch.setattr(inst, "model_facts", fail)
        with pytest.raises(preflight.PreflightError, match="check 'model facts'") as facts:
            preflight.model_facts(inst, backend, "m")
        fixes.append(str(facts.value))
    if provider != "external":
        import socket

        with socket.socket() as holder:
            holder.bind(("127.0.0.1", inst.port))
            holder.listen()
            with pytest.raises(preflight.PreflightError, match="check 'port free'") as busy:
                preflight.check_port_free(inst)
        fixes.append(str(busy.value))
    assert fixes and all("; fix: " in f for f in fixes)
    for fix in fixes:
        assert_fields_exist(fix, provider)
    if provider == "external":
        assert not any("pull_models" in f for f in fixes)  # the external section has no such field
