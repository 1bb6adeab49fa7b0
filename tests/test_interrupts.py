"""Killing or interrupting `trbench run` mid-matrix: finished runs stay intact, no server is left,
and the same command resumes with only the missing runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import llama_servers

ROOT = Path(__file__).resolve().parent.parent
RUNS = 6


def write_spec(tmp_path: Path, port: int, tr_id: str = "killme", runs: int = RUNS, max_tokens: int = 16) -> Path:
    """A run of about a second: a stop sent as a run file appears lands mid-matrix, and the resume is short.
    A stop that is slower to arrive (a worker's cancel) needs longer runs: more max_tokens."""
    spec = {"tr_id": tr_id, "models": ["smollm2:135m"], "ports": [port], "grid": {"num_ctx": [512]},
            "runs": runs, "requests_per_run": 3, "warmup_requests": 1, "max_tokens": max_tokens, "seed": 3}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_cli(spec: Path, out: Path, api_url: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    cmd = [sys.executable, "-m", "trbench.cli", "run", str(spec), "--output-dir", str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_runs(root: Path, n: int, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(list((root / "runs").rglob("*.parquet"))) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"CLI exited early ({proc.returncode}): {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"fewer than {n} runs finished within {timeout_s} s")


def wait_no_server(port: int, timeout_s: float = 10) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and llama_servers(port):
        time.sleep(0.1)
    return llama_servers(port)


def assert_intact(root: Path) -> list[str]:
    for f in root.rglob("*.parquet"):
        pq.read_table(f)  # every file that exists is whole
    runs = ds.dataset(root / "runs", partitioning="hive").to_table().to_pandas()
    requests = ds.dataset(root / "requests", partitioning="hive").to_table().to_pandas()
    for run_id in runs["run_id"]:
        assert (requests["run_id"] == run_id).sum() >= 3  # a finished run has all its requests
    return runs["run_id"].tolist()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill-9", "sigterm", "ctrl-c"])
def test_interrupt_keeps_finished_runs_and_leaves_no_server(prefect_api, tmp_path, free_ports, how):
    port = free_ports(1)[0]
    spec, out = write_spec(tmp_path, port), tmp_path / "out"
    root = out / "killme"
    proc = start_cli(spec, out, prefect_api)
    try:
        wait_for_runs(root, 1, proc)
        assert llama_servers(port), "the embedded server should be running mid-matrix"
        # nothing slow between seeing the second run file and the signal: on a busy machine the
        # rest of the matrix (about 1 s a run) must not finish before the signal lands
        wait_for_runs(root, 2, proc)
        proc.send_signal(how)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0
    assert wait_no_server(port) == []
    finished = assert_intact(root)
    assert 2 <= len(finished) < RUNS, proc.stdout.read().decode(errors="replace")[-3000:]  # the stop came too late

    # the same command again runs only what is missing; nothing finished is run twice or lost
    resumed = start_cli(spec, out, prefect_api)
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output[-3000:]
    after = assert_intact(root)
    assert sorted(after) == sorted(set(after)) and len(after) == RUNS
    assert set(finished) <= set(after)
    assert wait_no_server(port) == []
