"""A whole TR against a server that asks for an API key (the mock server with a key, as vLLM --api-key),
run by the `trbench` CLI as a user runs it: every request carries the key, and the key itself is in no
file of the TR's folder (spec dump, manifest, logs, Parquet, report), not on the terminal, and not in
what Prefect recorded (flow and task runs, logs, artifacts). The manifest records only the variable's
name. And the two ways it goes wrong, each one line naming the variable: the variable unset (exit 2,
before anything starts) and a key the server refuses (preflight, exit 1)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from conftest import free_port

from trbench.engines.mock_server import Pace, serve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
VAR = "TRBENCH_TEST_API_KEY"
MODEL = "mock:1b"


@pytest.fixture
def key() -> str:
    return f"trbk-{secrets.token_hex(16)}"  # distinctive: found only where it was written


@pytest.fixture
def keyed(key):
    server, _ = serve("127.0.0.1", free_port(), Pace(first_token_ms=1, token_ms=0, invalid_every=3), [MODEL],
                      api_key=key)
    yield server
    server.shutdown()
    server.server_close()


def _env(prefect_api: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != VAR and not k.startswith("PREFECT_API_")}
    env.update({"COLUMNS": "240", **extra})
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    return env


def _run(tmp_path: Path, url: str, env: dict[str, str], tr_id: str = "keyed", more: str = "",
         verbose: bool = False) -> subprocess.CompletedProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"tr_id: {tr_id}\nprovider: external\nbackend: openai\n"
                    f"server: {{urls: ['{url}'], api_key_env: {VAR}}}\nmodels: ['{MODEL}']\n"
                    "runs: 1\nrequests_per_run: 2\nwarmup_requests: 1\nmax_tokens: 4\nttft: cold\n" + more)
    args = ["run", str(spec), "--output-dir", str(tmp_path)] + (["--verbose"] if verbose else [])
    return subprocess.run([sys.executable, "-m", "trbench.cli", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


def _files_holding(folder: Path, needle: str) -> list[str]:
    """Every file under folder whose bytes hold needle, and every Parquet table whose values do
    (a compressed page would hide it from a byte search)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if needle.encode() in path.read_bytes():
            found.append(str(path))
        elif path.suffix == ".parquet" and needle in str(pq.read_table(path).to_pylist()):
            found.append(f"{path} (a value)")
    return found


def _prefect_records(api: str, flow_run_ids: list[str]) -> dict[str, list]:
    """What Prefect holds of these flow runs: the runs and their parameters, their task runs, logs
    and artifacts."""
    ids = {"any_": flow_run_ids}
    with httpx.Client(base_url=api, timeout=30) as http:
        return {"flow_runs": http.post("/flow_runs/filter", json={"flow_runs": {"id": ids}}).json(),
                "task_runs": http.post("/task_runs/filter", json={"flow_runs": {"id": ids}}).json(),
                "logs": http.post("/logs/filter", json={"logs": {"flow_run_id": ids}}).json(),
                "artifacts": http.post("/artifacts/filter", json={"artifacts": {"flow_run_id": ids}}).json()}


def test_a_tr_against_a_keyed_server_sends_the_key_and_writes_it_nowhere(prefect_api, tmp_path, keyed, key):
    more = "load: {concurrency: [2], requests: 4}\nsuites: {scenarios: [router], messages: 3}\n"
    # every log record kept, Prefect's and the HTTP clients' debug lines included: none may hold the key
    env = _env(prefect_api, **{VAR: key, "PREFECT_LOGGING_LEVEL": "DEBUG"})
    out = _run(tmp_path / "out", f"http://127.0.0.1:{keyed.server_address[1]}", env, more=more, verbose=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert keyed.refused == 0  # every request carried the key: preflight, the matrix, the load steps, the suites
    root = tmp_path / "out" / "keyed"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["spec"]["server"]["api_key_env"] == VAR
    assert list((root / "runs").rglob("*.parquet")) and list((root / "load_steps").rglob("*.parquet"))
    assert (root / "logs" / "run.log").is_file() and list((root / "report").glob("*.md"))
    assert _files_holding(tmp_path, key) == []
    assert str(root / "manifest.json") in _files_holding(tmp_path, VAR)  # the search reads what the TR wrote
    assert key not in out.stdout + out.stderr and "preflight" in out.stdout + out.stderr
    flow_runs = httpx.post(f"{prefect_api}/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 5},
                           timeout=30).json()
    ours = [r["id"] for r in flow_runs if r["parameters"].get("tr_id") == "keyed"]
    assert ours, [r["parameters"] for r in flow_runs]
    prefect = _prefect_records(prefect_api, ours)
    assert all(prefect.values()), {k: len(v) for k, v in prefect.items()}  # each kind of record was read
    assert key not in json.dumps(prefect)


def test_an_unset_variable_is_one_line_and_exit_2_before_anything_starts(tmp_path, keyed):
    out = _run(tmp_path, f"http://127.0.0.1:{keyed.server_address[1]}", _env())
    lines = _lines(out)
    assert out.returncode == 2 and len(lines) == 1, out.stdout + out.stderr
    assert f"field 'server.api_key_env': {VAR} is not set" in lines[0] and f"fix: export {VAR}=" in lines[0]
    assert not (tmp_path / "keyed").exists() and keyed.refused == 0  # nothing started, nothing sent


def test_a_refused_key_is_one_line_naming_the_variable(tmp_path, keyed, key):
    wrong = f"trbk-{secrets.token_hex(16)}"
    out = _run(tmp_path, f"http://127.0.0.1:{keyed.server_address[1]}", _env(**{VAR: wrong}))
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert "Traceback" not in text and text.count(f"refused the key in ${VAR} (HTTP 401)") == 1, text[-3000:]
    last = _lines(out)[-1]
    assert "check 'server answers'" in last and f"fix: export the server's own key as {VAR}" in last
    assert not (tmp_path / "keyed" / "runs").exists()
    assert _files_holding(tmp_path, wrong) == [] and wrong not in text
