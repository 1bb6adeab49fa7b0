"""A corpus of malformed specs, each rejected by the real CLI (`trbench validate` and `trbench run`,
through typer's CliRunner) with exit code 2 and one line naming the problem and the fix, never a
traceback; `run` rejects them before Prefect starts. The first eight are the first cases met: text,
numbers, missing files, ports, output folder and models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trbench.cli import app

ROOT = Path(__file__).resolve().parent.parent
OK = "tr_id: c\nmodels: [smollm2:135m]\n"  # a spec that passes; most cases add one bad field to it

# (case id, spec text ({tmp}: a folder with the helper files below; bytes: written as they are),
#  a distinctive part of the one line it must produce)
CASES: list[tuple[str, str | bytes, str]] = [
    # --- the first eight: text, numbers, missing files, ports, output folder, models
    ("not_utf8", b"tr_id: c\nmodels: [smollm2:135m]\ntitle: caf\xe9\n", "not UTF-8 text (byte 0xe9 at line 3)"),
    ("temperature_nan", OK + "grid: {temperature: [.nan]}\n", "field 'grid.temperature.0': Input should be a finite number, got nan"),
    ("prompts_missing", OK + "prompts: datasets/prompts/nope.yaml\n", "field 'prompts': file datasets/prompts/nope.yaml not found"),
    ("agents_missing", OK + "multi_agent: {agents: datasets/agents/nope.yaml}\n", "field 'multi_agent.agents': file datasets/agents/nope.yaml not found"),
    ("one_port_two_instances", OK + "ports: [18611]\nmulti_agent: {}\n", "field 'ports': 1 port for 2 instances (the multi-agent runs need two); fix: list 2 ports, or remove ports to use the defaults, or remove multi_agent"),
    ("output_dir_is_a_file", OK + "output_dir: {tmp}/a_file\n", "field 'output_dir': {tmp}/a_file is a file, not a folder"),
    ("model_not_bundled", "tr_id: c\nmodels: [llama3.1:8b]\n", "field 'models': 'llama3.1:8b' not bundled with the embedded engine"),
    ("host_all_addresses", OK + "host: 0.0.0.0\n", "field 'host': '0.0.0.0' is not a loopback address"),
    # --- the file
    ("not_utf8_utf16", "tr_id: c\nmodels: [smollm2:135m]\n".encode("utf-16"), "not UTF-8 text (byte 0xff at line 1)"),
    ("empty_file", "", "the file is empty"),
    ("only_a_comment", "# nothing here\n", "the file is empty"),
    ("a_list", "- tr_id: c\n", "must be a YAML mapping of fields, got list"),
    ("a_scalar", "hello\n", "must be a YAML mapping of fields, got str"),
    ("unclosed_bracket", "tr_id: [c\nmodels: [smollm2:135m]\n", "not valid YAML at line"),
    ("tab_indent", "tr_id: c\nmodels:\n\t- smollm2:135m\n", "not valid YAML at line 3"),
    ("duplicate_key", OK + "runs: 2\nruns: 3\n", "key 'runs' appears twice"),
    ("python_tag", OK + "title: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    ("control_character", "tr_id: c\nmodels: [smollm2:135m]\ntitle: a\x07b\n", "not valid YAML (special characters are not allowed)"),
    # --- required fields, names, values
    ("no_tr_id", "models: [smollm2:135m]\n", "field 'tr_id': Field required; fix: add it"),
    ("no_models", "tr_id: c\n", "field 'models': Field required"),
    ("models_empty", "tr_id: c\nmodels: []\n", "field 'models': List should have at least 1 item"),
    ("models_repeat", "tr_id: c\nmodels: [smollm2:135m, smollm2:135m]\n", "field 'models': values repeat"),
    ("model_name_blank", "tr_id: c\nmodels: ['  ']\n", "model names must not be empty"),
    ("tr_id_slash", "tr_id: a/b\nmodels: [smollm2:135m]\n", "field 'tr_id': String should match pattern"),
    ("tr_id_dotdot", "tr_id: ..\nmodels: [smollm2:135m]\n", "field 'tr_id': String should match pattern"),
    ("tr_id_leading_dash", "tr_id: -rf\nmodels: [smollm2:135m]\n", "field 'tr_id': String should match pattern"),
    ("tr_id_too_long", f"tr_id: {'x' * 65}\nmodels: [smollm2:135m]\n", "field 'tr_id': String should match pattern"),
    ("tr_id_a_number", "tr_id: 123\nmodels: [smollm2:135m]\n", "field 'tr_id': Input should be a valid string"),
    ("baseline_tr_id_escapes", OK + "baseline_tr_id: ../elsewhere\n", "field 'baseline_tr_id': String should match pattern"),
    ("tr_id_folder_is_a_file", OK + "output_dir: {tmp}\n", "field 'tr_id': {tmp}/c is a file, where the TR run's folder goes"),
    ("misspelt_field", "tr_id: c\nmodles: [smollm2:135m]\n", "field 'modles': Extra inputs are not permitted"),
    ("misspelt_grid_field", OK + "grid: {num_ctxx: [512]}\n", "field 'grid.num_ctxx': Extra inputs are not permitted"),
    ("provider_unknown", OK + "provider: vllm\n", "field 'provider': Input should be 'embedded'"),
    ("backend_unknown", OK + "backend: grpc\n", "field 'backend': Input should be 'openai' or 'ollama'"),
    ("port_privileged", OK + "ports: [80]\n", "field 'ports': port must be 1024..65535, got 80"),
    ("port_repeated", OK + "ports: [18611, 18611]\n", "field 'ports': values repeat"),
    ("runs_zero", OK + "runs: 0\n", "field 'runs': Input should be greater than or equal to 1"),
    ("runs_a_word", OK + "runs: many\n", "field 'runs': Input should be a valid integer"),
    ("runs_infinite", OK + "runs: .inf\n", "field 'runs'"),
    ("requests_zero", OK + "requests_per_run: 0\n", "field 'requests_per_run'"),
    ("warmup_negative", OK + "warmup_requests: -1\n", "field 'warmup_requests'"),
    ("max_tokens_zero", OK + "max_tokens: 0\n", "field 'max_tokens'"),
    ("threads_zero", OK + "threads: 0\n", "field 'threads'"),
    ("min_ok_over_requests", OK + "requests_per_run: 2\nmin_ok_requests: 3\n", "field 'min_ok_requests': min_ok_requests (3) exceeds requests_per_run (2)"),
    ("baseline_model_stray", OK + "baseline_model: other\n", "field 'baseline_model': 'other' is not one of models"),
    ("num_ctx_small", OK + "grid: {num_ctx: [64]}\n", "field 'grid.num_ctx': context size must be 128..1048576 tokens, got 64"),
    ("num_gpu_negative", OK + "grid: {num_gpu: [-1]}\n", "field 'grid.num_gpu': GPU layers must be 0..999, got -1"),
    ("temperature_high", OK + "grid: {temperature: [3.0]}\n", "field 'grid.temperature': temperature must be 0..2, got 3.0"),
    # --- numbers that are not finite, in every section
    ("temperature_inf", OK + "grid: {temperature: [.inf]}\n", "field 'grid.temperature.0': Input should be a finite number, got inf"),
    ("temperature_nan_string", OK + "grid: {temperature: ['nan']}\n", "field 'grid.temperature.0': Input should be a finite number"),
    ("timeout_inf", OK + "timeout_s: .inf\n", "field 'timeout_s': Input should be a finite number, got inf"),
    ("load_timeout_nan", OK + "load_timeout_s: .nan\n", "field 'load_timeout_s': Input should be a finite number"),
    ("regression_threshold_nan", OK + "regression_threshold_pct: .nan\n", "field 'regression_threshold_pct': Input should be a finite number"),
    ("telemetry_interval_nan", OK + "telemetry: {interval_s: .nan}\n", "field 'telemetry.interval_s': Input should be a finite number"),
    ("telemetry_price_inf", OK + "telemetry: {price_per_kwh: .inf}\n", "field 'telemetry.price_per_kwh': Input should be a finite number"),
    ("outliers_k_nan", OK + "outliers: {k: .nan}\n", "field 'outliers.k': Input should be a finite number"),
    ("chimera_temperature_nan", OK + "multi_agent: {chimera: {temperature: .nan}}\n", "field 'multi_agent.chimera.temperature': Input should be a finite number"),
    ("contention_factor_inf", OK + "multi_agent: {contention: {ttft_factor: .inf}}\n", "field 'multi_agent.contention.ttft_factor': Input should be a finite number"),
    ("oom_rung_temperature_nan", OK + "oom_fallback: [{num_gpu: 0, temperature: .nan}]\n", "field 'oom_fallback.0.temperature': Input should be a finite number"),
    # --- sections and cross-field rules
    ("telemetry_gpu_negative", OK + "telemetry: {gpu_indices: [-1]}\n", "field 'telemetry.gpu_indices': GPU index must be >= 0"),
    ("oom_rung_lowers_nothing", OK + "oom_fallback: [{temperature: 0.5}]\n", "field 'oom_fallback.0': oom_fallback[0] lowers nothing"),
    ("nothing_to_run", OK + "single_agent: false\n", "field 'single_agent': single_agent is false and there is no multi_agent, load, synthetic or multi_turn section"),
    ("multi_turn_turns_zero", OK + "multi_turn: {turns: 0}\n", "field 'multi_turn.turns': Input should be greater than or equal to 1"),
    ("multi_turn_dialogues_missing", OK + "multi_turn: {dialogues: datasets/multi_turn/nope.yaml}\n", "field 'multi_turn.dialogues': file datasets/multi_turn/nope.yaml not found"),
    ("multi_turn_dialogues_short", OK + "multi_turn: {turns: 9}\n", "field 'multi_turn.turns': 9 turns, but dialogues garden, bread, running, budget, trip, code of"),
    ("multi_agent_model_stray", OK + "multi_agent: {models: [gemma3:270m]}\n", "field 'multi_agent.models': ['gemma3:270m'] are not in models"),
    ("scenario_unknown", OK + "multi_agent: {scenarios: [solo]}\n", "field 'multi_agent.scenarios.0': Input should be"),
    ("allow_remote_bind_not_bool", OK + "allow_remote_bind: maybe\n", "field 'allow_remote_bind': Input should be a valid boolean"),
    ("host_public", OK + "host: 192.168.1.20\n", "field 'host': '192.168.1.20' is not a loopback address"),
    ("host_not_a_name", OK + "host: 'my host!'\n", "field 'host': host must be an IP address or a host name"),
    # --- load mode
    ("load_no_mode", OK + "load: {requests: 4}\n", "field 'load.concurrency': load needs exactly one of concurrency, rate or sweep (or only embeddings), got none"),
    ("load_two_modes", OK + "load: {concurrency: [1], rate: [1], requests: 4}\n", "got concurrency and rate; fix: keep one"),
    ("load_no_end", OK + "load: {concurrency: [1, 2]}\n", "field 'load.requests': a load step ends after `requests`"),
    ("load_both_ends", OK + "load: {concurrency: [1], requests: 4, duration_s: 10}\n", "fix: give exactly one of them"),
    ("load_concurrency_zero", OK + "load: {concurrency: [0, 2], requests: 4}\n", "field 'load.concurrency': concurrency must be 1..1024 streams, got 0"),
    ("load_concurrency_empty", OK + "load: {concurrency: [], requests: 4}\n", "concurrency lists no steps"),
    ("load_rate_negative", OK + "load: {rate: [-1], requests: 4}\n", "field 'load.rate': rate must be 0 < requests/s <= 10000, got -1"),
    ("load_rate_nan", OK + "load: {rate: [.nan], requests: 4}\n", "field 'load.rate.0': Input should be a finite number"),
    ("load_burstiness_closed", OK + "load: {concurrency: [1], requests: 4, burstiness: 0.5}\n", "field 'load.burstiness': burstiness shapes open-loop arrivals only"),
    ("load_burstiness_zero", OK + "load: {rate: [1], requests: 4, burstiness: 0}\n", "field 'load.burstiness': Input should be greater than 0"),
    ("load_inflight_closed", OK + "load: {concurrency: [2], requests: 4, max_inflight: 2}\n", "field 'load.max_inflight': max_inflight bounds open-loop steps"),
    ("load_slo_negative", OK + "load: {concurrency: [1], requests: 4, slo: {ttft_ms: -5}}\n", "field 'load.slo.ttft_ms': Input should be greater than 0"),
    ("load_slo_misspelt", OK + "load: {concurrency: [1], requests: 4, slo: {ttfb_ms: 5}}\n", "field 'load.slo.ttfb_ms': Extra inputs are not permitted; fix: remove it or fix its spelling (allowed: ttft_ms, tpot_ms, e2e_ms)"),
    ("load_sweep_rates_zero", OK + "load: {sweep: {rates: 0}, requests: 4}\n", "field 'load.sweep.rates': Input should be greater than or equal to 1"),
    ("load_embeddings_texts_missing", OK + "load: {embeddings: {texts: datasets/embeddings/nope.yaml}}\n", "field 'load.embeddings.texts': file datasets/embeddings/nope.yaml not found"),
    ("load_embeddings_model_stray", OK + "load: {embeddings: {model: gemma3:270m}}\n", "field 'load.embeddings.model': 'gemma3:270m' is not in models"),
    ("load_model_stray", OK + "load: {concurrency: [1], requests: 4, models: [gemma3:270m]}\n", "field 'load.models': ['gemma3:270m'] are not in models"),
    # --- external servers
    ("external_without_urls", OK + "provider: external\n", "field 'server.urls': provider 'external' needs urls"),
    ("url_without_scheme", OK + "provider: external\nurls: ['localhost:8080']\n", "URL must start with http:// or https://"),
    ("one_url_two_instances", OK + "provider: external\nurls: ['http://127.0.0.1:8080']\nmulti_agent: {}\n",
     "field 'urls': 1 URL for 2 instances (the multi-agent runs need two); fix: list 2 urls of running servers, "
     "or remove multi_agent"),
    ("one_port_parallel_lanes", "tr_id: c\nmodels: [smollm2:135m, gemma3:270m]\nports: [18611]\nexecution: {mode: parallel}\n",
     "field 'ports': 1 port for 2 instances (execution.mode parallel runs 2 models at once); fix: list 2 ports, "
     "or remove ports to use the defaults, or set execution.mode: serial"),
    # --- the files the spec points at
    ("prompts_a_folder", OK + "prompts: datasets/prompts\n", "field 'prompts': file datasets/prompts not found (a folder)"),
    ("prompts_not_a_suite", OK + "prompts: {tmp}/prompts_list.yaml\n", "field 'prompts': {tmp}/prompts_list.yaml is not a valid prompt suite"),
    ("prompts_not_utf8", OK + "prompts: {tmp}/prompts_latin1.yaml\n", "field 'prompts': {tmp}/prompts_latin1.yaml is not a valid prompt suite"),
    ("prompts_empty_suite", OK + "prompts: {tmp}/prompts_none.yaml\n", "is not a valid prompt suite"),
    ("agents_lack_insight", OK + "multi_agent: {agents: {tmp}/agents_one.yaml}\n", "field 'multi_agent.agents': {tmp}/agents_one.yaml lacks agent ['insight']"),
    ("agents_digest_missing", OK + "multi_agent: {agents: {tmp}/agents_nodigest.yaml}\n", "field 'multi_agent.agents': agent suite {tmp}/agents_nodigest.yaml: digest file"),
    ("agents_not_yaml", OK + "multi_agent: {agents: {tmp}/agents_bad.yaml}\n", "is not a valid agent suite"),
    # --- the quality suites
    ("suites_scenario_unknown", OK + "suites: {scenarios: [rooter]}\n", "field 'suites.scenarios.0': Input should be 'router', 'orchestrator' or 'chat'"),
    ("suites_misspelt_knob", OK + "suites: {scenarios: [router], mesages: 3}\n", "field 'suites.mesages': Extra inputs are not permitted"),
    ("suites_qa_context_too_small", OK + "suites: {qa: true}\n", "field 'suites.num_ctx': the QA prompt (its retrieved documents) needs a context of at least 1024"),
    ("suites_model_stray", OK + "suites: {qa: true, num_ctx: 2048, models: [gemma3:270m]}\n", "field 'suites.models': ['gemma3:270m'] are not in models"),
    ("suites_messages_zero", OK + "suites: {scenarios: [chat], messages: 0}\n", "field 'suites.messages': Input should be greater than or equal to 1"),
    ("suites_qa_missing", OK + "suites: {qa: true, num_ctx: 2048, qa_suite: {tmp}/nope.yaml}\n", "field 'suites.qa_suite': file {tmp}/nope.yaml not found"),
    ("suites_qa_no_documents", OK + "suites: {qa: true, num_ctx: 2048, qa_suite: {tmp}/qa_nodocs.yaml}\n", "field 'suites.qa_suite': QA suite {tmp}/qa_nodocs.yaml: field 'documents': no .md files"),
    ("suites_scenario_dir_empty", OK + "suites: {scenarios: [router], scenario_dir: {tmp}}\n", "field 'suites.scenario_dir': no scenario suite 'router'"),
    ("suites_scenario_bad", OK + "suites: {scenarios: [chat], scenario_dir: {tmp}/scen}\n", "field 'suites.scenarios': "),
    # --- where the results go
    ("output_dir_under_a_file", OK + "output_dir: {tmp}/a_file/out\n", "field 'output_dir': {tmp}/a_file/out cannot be created: {tmp}/a_file is a file"),
    ("output_dir_not_writable", OK + "output_dir: /proc/trbench-out\n", "field 'output_dir': /proc/trbench-out cannot be created: /proc is not writable"),
]

AGENT = "persona: p\n    calls: [{name: a, prompt: 'say {digest}'}]"


def helper_files(tmp: Path) -> None:
    (tmp / "a_file").write_text("not a folder\n")
    (tmp / "c").write_text("a file where tr_id c's folder would go\n")
    (tmp / "prompts_list.yaml").write_text("- id: a\n  user: hi\n")
    (tmp / "prompts_latin1.yaml").write_bytes(b"name: s\nprompts:\n  - id: a\n    user: caf\xe9\n")
    (tmp / "prompts_none.yaml").write_text("name: s\nprompts: []\n")
    (tmp / "digest.md").write_text("numbers\n")
    (tmp / "agents_one.yaml").write_text(f"name: a\ndigest: digest.md\nagents:\n  collector:\n    {AGENT}\n")
    (tmp / "agents_nodigest.yaml").write_text(
        f"name: a\ndigest: gone.md\nagents:\n  collector:\n    {AGENT}\n  insight:\n    {AGENT}\n")
    (tmp / "agents_bad.yaml").write_text("name: [unclosed\n")
    (tmp / "qa_nodocs.yaml").write_text("name: q\ndocuments: nodocs\n")
    (tmp / "scen").mkdir()
    (tmp / "scen" / "chat.yaml").write_text("name: chat\nkind: chat\nsystem: s\nmessages: []\n")


def test_the_corpus_is_large_and_each_case_is_distinct():
    assert len(CASES) >= 50
    assert len({name for name, _, _ in CASES}) == len(CASES)
    assert len({text for _, text, _ in CASES}) == len(CASES)


def write_case(tmp: Path, text: str | bytes) -> Path:
    helper_files(tmp)
    spec = tmp / "spec.yaml"
    if isinstance(text, bytes):
        spec.write_bytes(text)
    else:
        spec.write_text(text.replace("{tmp}", str(tmp)))
    return spec


def one_line(result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("name, text, expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_is_rejected_in_one_line(tmp_path, monkeypatch, command, name, text, expected):
    monkeypatch.chdir(ROOT)  # relative paths resolve as the flow resolves them
    spec = write_case(tmp_path, text)
    args = [command, str(spec)] + (["--output-dir", str(tmp_path / "out")] if command == "run" and "output_dir" not in str(text) else [])
    result = CliRunner().invoke(app, args)
    line = one_line(result)
    assert result.exit_code == 2, line
    assert line.startswith(f"error: spec {spec}: ")
    assert expected.replace("{tmp}", str(tmp_path)) in line
    assert "; fix: " in line
    assert not (tmp_path / "out").exists()  # nothing started


def test_a_remote_bind_asked_for_passes_with_a_warning_line(tmp_path):
    spec = write_case(tmp_path, OK + f"host: 0.0.0.0\nallow_remote_bind: true\noutput_dir: {tmp_path}/out\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 2 and lines[1].startswith("ok: c:")
    assert lines[0].startswith(f"warning: spec {spec}: field 'host': the embedded servers listen on 0.0.0.0")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_pass_without_a_warning(tmp_path, host):
    spec = write_case(tmp_path, OK + f"host: '{host}'\noutput_dir: {tmp_path}/out\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0 and "warning" not in result.stderr and "ok: c:" in result.stderr


def test_shipped_specs_pass_every_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # their prompts and agents paths resolve from the project root, as in the flow
    for spec in ("deployments/quickstart.yaml", "deployments/tr116.yaml", "deployments/ollama-one-server.yaml"):
        result = CliRunner().invoke(app, ["validate", str(ROOT / spec)])
        assert result.exit_code == 0, result.stderr


def test_issue_cases_in_a_real_process(tmp_path):
    """The eight cases of the issue through `python -m trbench.cli validate`, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, text, expected in CASES[:8]:
        folder = tmp_path / name
        folder.mkdir()
        spec = write_case(folder, text)
        out = subprocess.run([sys.executable, "-m", "trbench.cli", "validate", str(spec)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1, (name, out.stderr)
        assert expected.replace("{tmp}", str(folder)) in lines[0] and "Traceback" not in out.stderr
