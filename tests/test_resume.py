"""Crash safety: kill -9 of `trbench run` at ten random points, resuming after each; in the end
every planned run exists exactly once, with all its requests, and no server is left."""

from __future__ import annotations

import random
import time

import pyarrow.dataset as ds
import yaml
from conftest import llama_servers
from test_interrupts import start_cli, wait_no_server

KILL_POINTS = 10


def test_kill_9_at_ten_random_points_then_resume(prefect_api, tmp_path, free_ports):
    ports = free_ports(2)
    spec = {"tr_id": "resume", "models": ["smollm2:135m"], "ports": ports, "grid": {"num_ctx": [512, 1024]},
            "runs": 3, "requests_per_run": 2, "max_tokens": 12, "seed": 9, "ttft": "cold",
            "multi_agent": {"scenarios": ["chimera_homo"], "runs": 2, "max_tokens": 8,
                            "chimera": {"num_gpu": 80, "num_ctx": 1024, "temperature": 1.0}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out, root = tmp_path / "out", tmp_path / "out" / "resume"
    rng = random.Random(20261123)
    finished_before: set[str] = set()
    for _ in range(KILL_POINTS):
        proc = start_cli(path, out, prefect_api)
        time.sleep(rng.uniform(0.5, 9.0))  # before Prefect is up, mid-run, mid-write, between runs
        proc.kill()
        proc.wait(timeout=30)
        assert wait_no_server(ports[0]) == [] and wait_no_server(ports[1]) == []
        now = {p.stem for p in root.rglob("*runs/*/*.parquet")}
        assert finished_before <= now  # nothing finished is ever lost
        finished_before = now

    final = start_cli(path, out, prefect_api)
    output = final.communicate(timeout=300)[0].decode()
    assert final.returncode == 0, output[-3000:]
    runs = ds.dataset(root / "runs", partitioning="hive").to_table().to_pandas()
    requests = ds.dataset(root / "requests", partitioning="hive").to_table().to_pandas()
    ma_runs = ds.dataset(root / "ma_runs", partitioning="hive").to_table().to_pandas()
    assert len(runs) == 2 * 3 and runs["run_id"].is_unique
    assert len(ma_runs) == 2 and ma_runs["run_id"].is_unique
    assert runs["valid"].all() and ma_runs["valid"].all()
    measured = requests[~requests["is_warmup"]]
    # every run has exactly its own requests, once: no run was measured twice
    assert (measured.groupby("run_id").size() == 2).all() and set(measured["run_id"]) == set(runs["run_id"])
    assert not requests.duplicated(["run_id", "request_index"]).any()
    assert not llama_servers(ports[0]) and not llama_servers(ports[1])
