"""One TR, one flow: the same spec run by `trbench run` and by its deployment on a process worker
(as the UI's Run button or a cron schedule starts it) measures the same parts into the same tables
and runs. The spec names every part at once (single-agent matrix, suites, multi-agent, load steps)
on the mock provider, a fake LLM server that is itself what trbench's harness tests use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from trbench.data import store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("runs", "requests", "ma_runs", "ma_requests", "suite_requests", "load_steps", "load_requests")


def every_part(tr_id: str, ports: list[int]) -> dict:
    return {
        "tr_id": tr_id, "provider": "mock", "backend": "openai",
        "server": {"ports": ports, "first_token_ms": 2, "token_ms": 0},
        "models": ["mock:model"], "grid": {"num_ctx": [1024]}, "runs": 1, "requests_per_run": 1,
        "warmup_requests": 0, "max_tokens": 8, "ttft": "cold", "seed": 1,
        "prompts": "datasets/prompts/single_agent.yaml",
        "suites": {"scenarios": ["router"], "messages": 2},
        "multi_agent": {"scenarios": ["chimera_homo"], "runs": 1, "max_tokens": 8},
        "load": {"concurrency": [1, 2], "requests": 4},
    }


def measured(root: Path) -> dict[str, list[str]]:
    """Per table with files: its run ids (suite rows by run), sorted."""
    found = {}
    for table in TABLES:
        if (root / table).is_dir() and any((root / table).rglob("*.parquet")):
            found[table] = sorted(set(store.read_frame(root, table)["run_id"]))
    return found


def test_cli_and_deployment_run_the_same_parts_of_a_spec(local_prefect, tmp_path, free_ports):
    spec = every_part("mock-one", free_ports(2))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    cli = subprocess.run([sys.executable, "-m", "trbench.cli", "run", str(path), "--output-dir", str(tmp_path / "cli")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]

    api = local_prefect.api_url
    deployment = httpx.get(f"{api}/deployments/name/tr/quickstart", timeout=10).json()
    created = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", timeout=10,
                         json={"parameters": {"spec": spec, "output_dir": str(tmp_path / "ui")}})
    created.raise_for_status()
    deadline = time.monotonic() + 600
    while (run := httpx.get(f"{api}/flow_runs/{created.json()['id']}", timeout=10).json())["state"]["type"] not in {
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
        assert time.monotonic() < deadline, run["state"]
        time.sleep(1)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    by_cli, by_ui = measured(tmp_path / "cli" / "mock-one"), measured(tmp_path / "ui" / "mock-one")
    assert set(by_cli) == set(TABLES)  # every part the spec names was measured
    assert by_ui == by_cli
    # one final state for the whole TR: the runs, then the load steps
    message = run["state"]["message"]
    assert "2 of 2 runs valid" in message and "load: 2 of 2 load steps valid" in message
    assert message.split("; report ")[0] in cli.stdout
    for where in ("cli", "ui"):
        report = (tmp_path / where / "mock-one" / "report" / "mock-one.md").read_text()
        assert "## Load" in report and "## Multi-agent results" in report and "## Quality" in report
