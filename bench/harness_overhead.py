"""Harness overhead: trbench's Python client against the Rust runner on a FAKE fixed-pace server.

The fake (tests/fakes/fake_paced.py) runs in a process of its own and logs, on the shared
CLOCK_MONOTONIC, when it read each request and wrote its first token; requests alternate between
the harnesses. Per harness, medians of: TTFT, the sending part of it (until the server had the
request), the receiving part (first token written -> stamped), the decode pace against the known
one, and client CPU per request (mean; the Python process for the Python client, the runner process for
the Rust one: trbench's own job/record handling is not counted against the runner).

    .venv/bin/python bench/harness_overhead.py [--requests 20] [--backend openai]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trbench.backends import ChatRequest, make_client  # noqa: E402
from trbench.measure.metrics import derive  # noqa: E402


def cpu_s(pid: int) -> float:
    """CPU time of every thread of a process, in ns precision (/proc/<pid>/task/*/schedstat; the
    ticks of cpu_times are 10 ms, as long as a request's whole cost)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended in between
    return total / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20, help="per harness")
    p.add_argument("--backend", default="openai", choices=["openai", "ollama"])
    p.add_argument("--pace-s", type=float, default=0.02)
    p.add_argument("--first-s", type=float, default=0.03)
    p.add_argument("--tokens", type=int, default=26)
    args = p.parse_args()
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.fake_paced", "--pace-s", str(args.pace_s),
                             "--first-s", str(args.first_s), "--n-tokens", str(args.tokens)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = fake.stdout.readline().strip()
    clients = {"python": make_client(args.backend, url, 60, 30), "rust": make_client(args.backend, url, 60, 30, "rust")}
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=args.tokens)
    try:
        for c in clients.values():
            c.chat(req)  # connections opened (and the runner started), not counted
        procs = {"python": os.getpid(), "rust": clients["rust"].runner._proc.pid}
        n_before = len(httpx.get(f"{url}/log").json())
        seen: dict[str, list] = {h: [] for h in clients}
        order = []
        for _ in range(args.requests):
            for h, c in clients.items():
                c0 = cpu_s(procs[h])
                ex = c.chat(req)
                seen[h].append((ex, cpu_s(procs[h]) - c0))
                order.append(h)
        log = httpx.get(f"{url}/log").json()[n_before:]
    finally:
        for c in clients.values():
            c.close()
        fake.stdin.close()
        fake.wait()
    entries = {h: [e for e, who in zip(log, order) if who == h] for h in clients}
    print(f"{args.backend}, {args.requests} requests per harness, known pace {args.pace_s * 1000:g} ms, "
          f"first token {args.first_s * 1000:g} ms after the server read the request; load {psutil.getloadavg()[0]:.1f}")
    print(f"{'harness':8} {'TTFT ms':>9} {'send ms':>8} {'recv ms':>8} {'pace ms':>8} {'CPU ms/req':>10}")
    for h in clients:
        rows = [(derive(ex), ex, entry, cpu) for (ex, cpu), entry in zip(seen[h], entries[h])]
        med = lambda xs: statistics.median(xs)  # noqa: E731
        ttft = med([m.ttft_ms for m, *_ in rows])
        send = med([(e["t_recv_ns"] - ex.t_send_ns) / 1e6 for _, ex, e, _ in rows])
        recv = med([(ex.token_times_ns[0] - e["t_first_sent_ns"]) / 1e6 for _, ex, e, _ in rows])
        pace = med([1000 / m.decode_tps_client for m, *_ in rows])
        cpu = statistics.fmean([c * 1000 for *_, c in rows])
        print(f"{h:8} {ttft:9.3f} {send:8.3f} {recv:8.3f} {pace:8.3f} {cpu:10.2f}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)")
