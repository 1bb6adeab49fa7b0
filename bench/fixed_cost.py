"""The fixed cost of `trbench run`: its wall time less the requests' own time, on a tiny TR.

The TR: one run of 2 requests on the mock provider (5 ms to the first token, 1 ms per token, 16
tokens), so nearly all of the wall time is what every run pays whatever it measures: start-up and
imports, the Prefect record of the run, validation and the report. Each round runs the CLI as a
user does, in a fresh process and a fresh output folder; the requests' own time is the run's
wall_s as stored in its run row.

    .venv/bin/python bench/fixed_cost.py [--rounds 3] [--prefect-api URL] [--prefect] [--repo DIR]

Without --prefect-api the CLI runs as on a fresh machine (no PREFECT_API_URL); with it, against
that server (the run recorded there); --prefect passes `trbench run --prefect` (a temporary local
Prefect server). --repo times another checkout of trbench (e.g. an older commit, for a before and
after) with this environment.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parent.parent

SPEC = """tr_id: mock-fixedcost
provider: mock
backend: openai
server: {{ports: [{port}], first_token_ms: 5, token_ms: 1}}
models: ["mock:model"]
grid: {{num_gpu: [0], num_ctx: [512], temperature: [0.0]}}
runs: 1
requests_per_run: 2
warmup_requests: 0
min_ok_requests: 1
max_tokens: 16
prompts: {root}/datasets/prompts/single_agent.yaml
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_round(workdir: Path, env: dict[str, str], repo: Path, extra: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s of the CLI and its children, the requests' own s)."""
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(port=free_port(), root=repo))
    out = workdir / "out"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trbench.cli", "run", str(spec), "--output-dir", str(out), *extra],
                          cwd=repo, env={**env, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"trbench run failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = ds.dataset(out / "mock-fixedcost" / "runs", partitioning="hive").to_table().to_pandas()
    return wall, cpu, float(runs["wall_s"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefect-api", default=None, help="PREFECT_API_URL of a running Prefect server")
    parser.add_argument("--prefect", action="store_true", help="trbench run --prefect: a temporary Prefect server")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the trbench checkout to time (default: this one)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    if args.prefect_api:
        env["PREFECT_API_URL"] = args.prefect_api
    rows = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="trbench-fixed-") as tmp:
            wall, cpu, requests = one_round(Path(tmp), env, args.repo.resolve(), ["--prefect"] if args.prefect else [])
        rows.append((wall, cpu, requests))
        print(f"round {i + 1}: wall {wall:.2f} s, CPU {cpu:.2f} s, requests {requests:.3f} s, "
              f"fixed cost {wall - requests:.2f} s", flush=True)
    fixed = [w - r for w, _, r in rows]
    where = (f"against {args.prefect_api}" if args.prefect_api else "--prefect, a temporary Prefect server"
             if args.prefect else "no Prefect API configured")
    print(f"fixed cost of `trbench run` ({where}, {os.cpu_count()} cores): median {statistics.median(fixed):.2f} s "
          f"(min {min(fixed):.2f}, max {max(fixed):.2f}); CPU median {statistics.median(c for _, c, _ in rows):.2f} s")


if __name__ == "__main__":
    main()
