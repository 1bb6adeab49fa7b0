"""Decode rate three ways on a real llama.cpp server (the embedded engine), per model and output length.

For each bundled model and each max_tokens in --lengths (default 16, 64, 256), it sends --requests
requests through trbench's own client and prints the medians of:
  server    llama.cpp's own timings.predicted_per_second, as the server reported it
  trbench   trbench's decode_tps (server view: (predicted_n - 1) / predicted_ms)
  client    trbench's decode_tps_client ((streamed tokens - 1) / first-to-last text chunk)
  indep     an independent client (plain httpx, no trbench code): its own (text chunks - 1) / span
and the median per-request disagreement of client and indep against the server, in %.
Target (issue 9): |median disagreement| <= 0.5 % at each length on both models.

Run: `make bench` (or `python bench/decode_agreement.py --requests 8`). Run it on an otherwise idle
machine: two CPU-bound processes on 2 cores distort every figure.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from trbench.measure import metrics
from trbench.backends import OpenAIClient
from trbench.engines.embedded import EmbeddedInstance
from trbench.engines.model_kind import prompt_style
from trbench.config.prompts import load_prompts
from trbench.run.single import RunPlan, build_request, request_slots
from trbench.config.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = (16, 64, 256)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def independent_rate(url: str, body: dict) -> tuple[float | None, float | None]:
    """(own rate, server's predicted_per_second) of one streamed request, read with nothing but httpx."""
    stamps: list[int] = []
    timings: dict = {}
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=300) as resp:
        for line in resp.iter_lines():
            now = time.perf_counter_ns()
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content") or choice.get("text"):
                    stamps.append(now)
            timings = chunk.get("timings") or timings
    own = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9) if len(stamps) > 2 else None
    return own, timings.get("predicted_per_second")


def _pct(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else (a - b) / b * 100.0


def measure(model: str, max_tokens: int, requests: int, port: int | None = None) -> dict[str, list[float]]:
    """Per-request figures of one model at one output length; the first request of each client warms up."""
    spec = parse_spec({"tr_id": "bench", "models": [model], "max_tokens": max_tokens, "seed": 7, "ttft": "cold",
                       "requests_per_run": requests + 1, "grid": {"num_ctx": [1024]}})
    cell = spec.cells()[0]
    prompts = load_prompts(ROOT / spec.prompts)
    inst = EmbeddedInstance("bench", "127.0.0.1", port or free_port(), None, Path(tempfile.mkdtemp()))
    client = OpenAIClient(inst.url)
    out: dict[str, list[float]] = {k: [] for k in ("server", "trbench", "client", "indep", "client_pct", "indep_pct")}
    try:
        inst.prepare(cell)
        plan = RunPlan(tr_id="bench", cell=cell, cell_hash="-", run_index=0, instance="bench", instance_url=inst.url,
                       prompt_style=prompt_style(inst.model_facts(model)))
        for i, slot in enumerate(request_slots(spec, plan, 0)):
            _, req = build_request(spec, plan, prompts, slot)
            ex = client.chat(req)
            m = metrics.derive(ex)
            indep, indep_server = independent_rate(inst.url, client.body(req))
            if i == 0 or m.status != "ok":
                continue
            for key, value in (("server", ex.server_decode_tps_reported), ("trbench", m.decode_tps),
                               ("client", m.decode_tps_client), ("indep", indep),
                               ("client_pct", _pct(m.decode_tps_client, ex.server_decode_tps_reported)),
                               ("indep_pct", _pct(indep, indep_server))):
                if value is not None:
                    out[key].append(value)
    finally:
        client.close()
        inst.stop()
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    ap.add_argument("--models", default="smollm2:135m,gemma3:270m")
    args = ap.parse_args()
    print(f"{'model':<14} {'max_tok':>7} {'n':>3} {'server':>8} {'trbench':>8} {'client':>8} {'indep':>8} "
          f"{'client-server %':>16} {'indep-server %':>15}")
    for model in args.models.split(","):
        for length in map(int, args.lengths.split(",")):
            f = measure(model, length, args.requests)
            print(f"{model:<14} {length:>7} {len(f['server']):>3} {median(f['server']):>8.1f} "
                  f"{median(f['trbench']):>8.1f} {median(f['client']):>8.1f} {median(f['indep']):>8.1f} "
                  f"{median(f['client_pct']):>+16.2f} {median(f['indep_pct']):>+15.2f}", flush=True)


if __name__ == "__main__":
    main()
