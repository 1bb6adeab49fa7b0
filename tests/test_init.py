"""`trbench init` and `trbench --version`: a first spec for the user's own server that `trbench validate`
accepts as written, from the models the server lists (an in-process fake Ollama here), with the
multi-agent runs only when two servers are given; one line and exit code 2 for a server that does
not answer or a file that is there. The last test runs a generated spec on a real llama.cpp server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import trbench.cli
from fakes.fake_ollama import FakeOllama
from trbench.cli import app
from trbench.config import scaffold
from trbench.config.spec import load_spec
from trbench.engines.bundled import BUNDLED_MODELS
from trbench.engines.mock_server import Pace, serve
from trbench.run.spec_checks import check_spec
from trbench.prose import count

ROOT = Path(__file__).resolve().parent.parent


def lines_of(result) -> list[str]:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    return [line for line in out.splitlines() if line.strip()]


def init(*args: str, **kwargs):
    return CliRunner().invoke(app, ["init", *args], **kwargs)


def validate(path: Path) -> list[str]:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.stderr
    return lines_of(result)


def test_version_is_the_package_metadata():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"trbench {version('trbench')}\n"


def test_init_against_an_ollama_server_writes_a_spec_validate_accepts(tmp_path):
    path = tmp_path / "mine.yaml"
    with FakeOllama() as fake:
        result = init(str(path), "--provider", "ollama", "--url", fake.url, "--yes")
        assert result.exit_code == 0, result.stderr
        served = sorted(fake.models)
    assert validate(path)[-1].startswith(f"ok: ollama-tr: {count(len(served), 'model')}")
    text = path.read_text()
    data = yaml.safe_load(text)
    assert data["models"] == served  # the fake's own names, as /api/tags lists them
    assert (data["provider"], data["backend"], data["server"]) == ("external", "ollama", {"urls": [fake.url]})
    # one server: no multi_agent section, a comment that says how to add one
    assert "multi_agent" not in data
    assert "add a second URL to server.urls" in text and "# multi_agent:" in text
    # commented: every top-level field but the title's and objective's has a comment on its line or above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line) and not line.startswith(("title:", "objective:")):
            assert "#" in line or lines[i - 1].startswith("#"), line
    assert f"wrote {path}: tr_id ollama-tr" in result.stderr


def test_two_urls_give_the_multi_agent_runs(tmp_path):
    path = tmp_path / "two.yaml"
    with FakeOllama() as one, FakeOllama() as two:
        result = init(str(path), "--provider", "ollama", "--url", one.url, "--url", two.url, "--tr-id", "pair", "--yes")
        assert result.exit_code == 0, result.stderr
    validate(path)
    spec = load_spec(path)
    assert spec.multi_agent is not None and spec.instance_count == 2
    assert spec.server.urls == [one.url, two.url]
    assert check_spec(spec, f"spec {path}") == []


def test_models_are_chosen_by_name_or_number_and_a_stray_one_is_named(tmp_path):
    with FakeOllama() as fake:
        served = sorted(fake.models)
        ok = init(str(tmp_path / "a.yaml"), "--url", fake.url, "--models", f"2,{served[0]}")
        assert ok.exit_code == 0, ok.stderr
        assert yaml.safe_load((tmp_path / "a.yaml").read_text())["models"] == [served[1], served[0]]
        bad = init(str(tmp_path / "b.yaml"), "--url", fake.url, "--models", "nope:7b")
    (line,) = lines_of(bad)
    assert bad.exit_code == 2 and f"model 'nope:7b' is not listed by the server at {fake.url}" in line and "fix:" in line
    assert not (tmp_path / "b.yaml").exists()


def test_an_openai_compatible_server_lists_its_models_at_v1_models(tmp_path):
    server, _ = serve("127.0.0.1", 0, Pace(), ["served-model-a", "served-model-b"])
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = init(str(tmp_path / "openai.yaml"), "--provider", "external", "--url", url, "--models", "all")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.stderr
    data = yaml.safe_load((tmp_path / "openai.yaml").read_text())
    assert (data["backend"], data["models"]) == ("openai", ["served-model-a", "served-model-b"])
    validate(tmp_path / "openai.yaml")


def test_a_server_that_asks_for_a_key_is_listed_with_the_variable_named(tmp_path, monkeypatch):
    server, _ = serve("127.0.0.1", 0, Pace(), ["keyed-model"], api_key="secret-value-1")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        without = init(str(tmp_path / "k.yaml"), "--provider", "external", "--url", url)
        monkeypatch.setenv("INIT_TEST_KEY", "secret-value-1")
        keyed = init(str(tmp_path / "k.yaml"), "--provider", "external", "--url", url, "--api-key-env", "INIT_TEST_KEY")
    finally:
        server.shutdown()
        server.server_close()
    (line,) = lines_of(without)
    assert without.exit_code == 2 and "answered HTTP 401: the server asks for an API key" in line
    assert "--api-key-env" in line
    assert keyed.exit_code == 0, keyed.stderr
    text = (tmp_path / "k.yaml").read_text()
    assert "secret-value-1" not in text  # the variable's name only
    data = yaml.safe_load(text)
    assert data["server"] == {"urls": [url], "api_key_env": "INIT_TEST_KEY"} and data["models"] == ["keyed-model"]
    validate(tmp_path / "k.yaml")


def test_a_server_of_another_kind_is_one_line(tmp_path):
    with FakeOllama() as fake:  # Ollama has no /v1/models (this fake's way): not the server asked for
        result = init(str(tmp_path / "x.yaml"), "--provider", "external", "--url", fake.url)
    (line,) = lines_of(result)
    assert result.exit_code == 2 and f"{fake.url}/v1/models answered HTTP 404: not an OpenAI-compatible server" in line
    assert "fix: check the URL (--url) and --provider" in line


def test_a_server_that_does_not_answer_is_one_line(tmp_path, free_ports):
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    result = init(str(tmp_path / "x.yaml"), "--provider", "ollama", "--url", url, "--yes")
    (line,) = lines_of(result)
    assert result.exit_code == 2
    assert line.startswith(f"error: no Ollama server answers at {url}")
    assert "fix: start the server (`ollama serve`), or check the URL (--url)" in line
    assert not (tmp_path / "x.yaml").exists()


def test_an_existing_file_is_refused_without_force(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("mine\n")
    result = init(str(path), "--provider", "embedded", "--yes")
    (line,) = lines_of(result)
    assert result.exit_code == 2 and line == f"error: {path} already exists; fix: give another path, or --force to " \
        "overwrite it"
    assert path.read_text() == "mine\n"
    forced = init(str(path), "--provider", "embedded", "--yes", "--force")
    assert forced.exit_code == 0 and path.read_text().startswith("# embedded-tr: ")


def test_the_embedded_provider_lists_the_bundled_models(tmp_path):
    path = tmp_path / "embedded.yaml"
    result = init(str(path), "--provider", "embedded", "--yes")
    assert result.exit_code == 0, result.stderr
    data = yaml.safe_load(path.read_text())
    assert data["provider"] == "embedded" and data["models"] == sorted(BUNDLED_MODELS)
    assert "multi_agent" not in data and "# multi_agent:" in path.read_text()
    validate(path)


def test_at_a_terminal_it_asks_for_what_the_flags_leave_out(tmp_path, monkeypatch):
    monkeypatch.setattr(trbench.cli, "_asking", lambda yes: not yes)
    path = tmp_path / "asked.yaml"
    with FakeOllama() as fake:
        served = sorted(fake.models)
        # provider (a wrong one first: asked again), URL, no second server, model 2, tr_id
        answers = f"vllm\nollama\n{fake.url}\n\n2\nasked\n"
        result = init(str(path), input=answers)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "unknown provider 'vllm'" in result.stderr
    assert f"2. {served[1]}" in result.stderr  # the list chosen from
    data = yaml.safe_load(path.read_text())
    assert (data["tr_id"], data["models"], data["server"]["urls"]) == ("asked", [served[1]], [fake.url])


@pytest.mark.parametrize("kind", list(scaffold.SERVER_KINDS))
@pytest.mark.parametrize("urls", [1, 2])
def test_every_rendered_spec_passes_the_checks(kind, urls, tmp_path):
    k = scaffold.SERVER_KINDS[kind]
    given = [f"http://127.0.0.1:{8000 + i}" for i in range(urls)] if k.default_url else []
    answers = scaffold.InitAnswers(kind=k, urls=given, models=sorted(BUNDLED_MODELS), tr_id="t")
    text = scaffold.render_spec(answers, "t.yaml")
    spec = scaffold.spec_of(text, "spec t.yaml")
    assert check_spec(spec, "spec t.yaml") == []
    assert (spec.multi_agent is not None) == (len(given) == 2)


def test_the_one_server_example_names_nothing_internal():
    text = (ROOT / "deployments" / "ollama-one-server.yaml").read_text()
    assert not re.search(r"\bTR\d|seed 0|issue \d", text, re.IGNORECASE)
    assert "multi_agent" not in yaml.safe_load(text)  # one server: the single-agent matrix only


@pytest.mark.integration
def test_a_generated_embedded_spec_runs(tmp_path, free_ports):
    """`trbench init --provider embedded` then `trbench run` of what it wrote, cut to one run of one
    request of 8 tokens on a free port: a real llama.cpp server, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the TR in its own process
    env["PYTHONPATH"] = str(ROOT)
    path = tmp_path / "first.yaml"

    def trbench_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trbench.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    made = trbench_cli("init", str(path), "--provider", "embedded", "--models", "smollm2:135m", "--tr-id", "first")
    assert made.returncode == 0, made.stderr
    text = path.read_text()
    for field, value in [("requests_per_run", "1"), ("warmup_requests", "0"), ("max_tokens", "8"), ("ttft", "cold"),
                         ("output_dir", str(tmp_path / "out"))]:
        text, n = re.subn(rf"^{field}: \S+", f"{field}: {value}", text, flags=re.M)
        assert n == 1, field
    text = text.replace("ports: [18434, 18435]", f"ports: {free_ports(2)}").replace("# threads: 4", "threads: 1")
    path.write_text(text)
    out = trbench_cli("run", str(path), "--runs", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^\[1/1\] run \S+_r00_a1: valid", out.stdout, re.M), out.stdout
    assert (tmp_path / "out" / "first" / "report" / "first.md").is_file()
