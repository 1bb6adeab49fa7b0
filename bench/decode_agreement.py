"""How well the client-measured decode rate agrees with llama.cpp's own timings.

Starts the embedded engine with each bundled model, sends N requests, and prints per model the
median decode_tps (server: predicted_n / predicted_ms) and decode_tps_client ((n-1) / span of
text-chunk arrivals), and their difference in %. Run: `make bench` (or with --requests N).
Run it on an otherwise idle machine: two CPU-bound processes on 2 cores distort every figure.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
from pathlib import Path

from trbench import metrics
from trbench.backends import OpenAIClient
from trbench.engines.instances import EmbeddedInstance
from trbench.prompts import load_prompts
from trbench.runner import RunPlan, build_request
from trbench.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(model: str, requests: int, max_tokens: int) -> tuple[list[float], list[float]]:
    spec = parse_spec({"tr_id": "bench", "models": [model], "max_tokens": max_tokens, "seed": 7})
    cell = spec.cells()[0]
    prompts = load_prompts(ROOT / spec.prompts)
    inst = EmbeddedInstance("bench", "127.0.0.1", free_port(), None, Path(tempfile.mkdtemp()))
    client = OpenAIClient(inst.url)
    server, client_side = [], []
    try:
        inst.prepare(cell)
        plan = RunPlan(tr_id="bench", cell=cell, cell_hash="-", run_index=0, instance="bench", instance_url=inst.url)
        for i in range(requests + 1):
            m = metrics.derive(client.chat(build_request(spec, plan, prompts, i)[1]))
            if i == 0 or m.status != "ok":
                continue  # the first request warms up
            server.append(m.decode_tps)
            client_side.append(m.decode_tps_client)
    finally:
        client.close()
        inst.stop()
    return server, client_side


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--models", default="smollm2:135m,gemma3:270m")
    args = ap.parse_args()
    print(f"{'model':<14} {'n':>3} {'server tok/s':>13} {'client tok/s':>13} {'diff %':>8}")
    for model in args.models.split(","):
        server, client_side = measure(model, args.requests, args.max_tokens)
        s, c = statistics.median(server), statistics.median(client_side)
        print(f"{model:<14} {len(server):>3} {s:>13.1f} {c:>13.1f} {(c - s) / s * 100:>+8.2f}")


if __name__ == "__main__":
    main()
