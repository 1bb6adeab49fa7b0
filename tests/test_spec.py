"""The spec is validated before anything starts; a bad one fails with one line naming field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trbench.config.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"tr_id": "t", "models": ["smollm2:135m"]}


def error_of(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_specs_load_and_mirror_seed_003():
    quick = load_spec(ROOT / "deployments/quickstart.yaml")
    assert set(quick.models) == {"smollm2:135m", "gemma3:270m"} and quick.provider == "embedded"
    tr116 = load_spec(ROOT / "deployments/tr116.yaml")
    assert tr116.models == ["qwen2.5:7b", "gemma3:latest", "llama3.1:8b-instruct-q4_0"]
    assert tr116.grid.num_gpu == [60, 80] and tr116.grid.num_ctx == [512, 1024]
    assert tr116.grid.temperature == [0.8] and tr116.runs == 5 and tr116.baseline == "gemma3:latest"
    assert len(tr116.cells()) == 3 * 2 * 2


@pytest.mark.parametrize(
    "patch, field, hint",
    [
        ({"runs": 0}, "runs", "greater than or equal to 1"),
        ({"grid": {"num_ctx": [64]}}, "grid.num_ctx", "128..1048576"),
        ({"grid": {"num_gpu": [-1]}}, "grid.num_gpu", "0..999"),
        ({"grid": {"temperature": [3.0]}}, "grid.temperature", "0..2"),
        ({"grid": {"num_ctxx": [512]}}, "grid.num_ctxx", "remove it or fix its spelling"),
        ({"modles": ["x"]}, "modles", "allowed: tr_id"),
        ({"provider": "vllm"}, "provider", "embedded"),
        ({"backend": "grpc"}, "backend", "openai"),
        ({"ports": [80]}, "ports", "1024..65535"),
        ({"prompt_cache": "allow"}, "prompt_cache", "ttft: cached (was allow)"),
        ({"ttft": "warm"}, "ttft", "'cold', 'cached' or 'both'"),
        ({"tr_id": "bad id/with slash"}, "tr_id", "letters, digits"),
        ({"models": []}, "models", "at least 1"),
        ({"models": ["a", "a"]}, "models", "repeat"),
    ],
)
def test_bad_fields_are_named_with_a_fix(patch, field, hint):
    message = error_of({**GOOD, **patch})
    assert f"field '{field}'" in message
    assert hint in message
    assert "fix:" in message


def test_cross_field_rules():
    assert "baseline_model" in error_of({**GOOD, "baseline_model": "other"})
    assert "min_ok_requests" in error_of({**GOOD, "requests_per_run": 2, "min_ok_requests": 3})
    assert "urls" in error_of({**GOOD, "provider": "external"})


def test_missing_required_field():
    message = error_of({"models": ["m"]})
    assert "field 'tr_id'" in message and "fix: add it" in message


def test_file_errors(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tr_id: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump(["a"]))
    with pytest.raises(SpecError, match="YAML mapping"):
        load_spec(listy)


def test_cells_and_hashes():
    spec = parse_spec({**GOOD, "models": ["a", "b"], "grid": {"num_ctx": [512, 1024], "temperature": [0.2, 0.8]}})
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 2
    # ordered by model first so the server reloads as rarely as possible
    assert [c.model for c in cells] == ["a"] * 4 + ["b"] * 4
    hashes = {spec.cell_hash(c, "p1") for c in cells}
    assert len(hashes) == len(cells)
    assert spec.cell_hash(cells[0], "p1") != spec.cell_hash(cells[0], "p2")  # the prompt suite is part of it
    more_runs = spec.with_overrides(runs=9)
    assert more_runs.cell_hash(cells[0], "p1") == spec.cell_hash(cells[0], "p1")  # the run count is not


def test_overrides_validate_and_move_the_baseline():
    spec = parse_spec({**GOOD, "models": ["a", "b"], "baseline_model": "b"})
    assert spec.with_overrides(models=["a"]).baseline == "a"
    assert spec.with_overrides(runs=None).runs == spec.runs
    with pytest.raises(SpecError, match="field 'runs'"):
        spec.with_overrides(runs=-1)


def test_each_provider_has_its_own_server_section():
    spec = parse_spec({**GOOD, "provider": "ollama-docker",
                       "server": {"image": "ollama/ollama:0.12.6", "gpu_devices": ["0", "1"], "ports": [11500, 11501]}})
    assert type(spec.server).__name__ == "OllamaDockerServer"
    assert (spec.server.image, spec.server.gpu_of(3), spec.instance_ports) == ("ollama/ollama:0.12.6", "1", [11500, 11501])
    # a field of another provider's section is named, with the fields this one has
    msg = error_of({**GOOD, "provider": "ollama-docker", "server": {"threads": 2}})
    assert "field 'server.threads'" in msg and "allowed: ports, gpu_devices, pull_models, image, volume" in msg


def test_flat_server_fields_of_earlier_specs_are_mapped_into_the_section():
    spec = parse_spec({**GOOD, "provider": "ollama-process", "ollama_binary": "/opt/ollama", "pull_models": True,
                       "threads": 4})  # threads: the embedded engine's, unused here as before
    assert (spec.server.binary, spec.server.pull_models) == ("/opt/ollama", True)
    assert not hasattr(spec.server, "threads")
    assert "field 'ports'" in error_of({**GOOD, "ports": [80]})  # named where it was written
    assert "field 'server.ports'" in error_of({**GOOD, "server": {"ports": [80]}})
    msg = error_of({**GOOD, "threads": 2, "server": {"threads": 3}})
    assert msg == "spec: field 'threads' is given twice, flat and as server.threads; fix: keep server.threads"
    # the section survives a round trip through overrides
    assert parse_spec({**GOOD, "server": {"threads": 3}}).with_overrides(runs=5).server.threads == 3
    # the flow's `ports` override (a flat name) lands in the section, over what the spec gave there
    assert parse_spec({**GOOD, "server": {"ports": [18500, 18501]}}).with_overrides(ports=[18600]).instance_ports == [18600]


@pytest.mark.parametrize(("grid", "extra", "field", "fix"), [
    ({"kv_cache_type": ["q5_1"]}, {}, "grid.kv_cache_type", "one of the values"),
    ({"kv_cache_type": ["q8_0"]}, {}, "grid.kv_cache_type", "add flash_attention"),
    ({"flash_attention": ["maybe"]}, {}, "grid.flash_attention", "fix:"),
    ({"batch_size": [0]}, {}, "grid.batch_size", "fix:"),
    ({"batch_size": [128], "ubatch_size": [512]}, {}, "grid.ubatch_size", "<= every batch_size"),
    ({"slots": [0]}, {}, "grid.slots", "fix:"),
    ({"ubatch_size": [128]}, {"provider": "ollama-docker", "backend": "ollama"}, "grid.ubatch_size", "provider embedded"),
    ({"threads": [2]}, {"provider": "external", "server": {"urls": ["http://127.0.0.1:1"]}}, "grid.threads",
     "provider embedded"),
])
def test_server_setting_axes_fail_in_one_line_naming_the_field_and_the_fix(grid, extra, field, fix) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"tr_id": "t", "models": ["m"], "grid": grid, **extra})
    message = str(err.value)
    assert "\n" not in message and f"'{field}" in message and fix in message and "fix:" in message
