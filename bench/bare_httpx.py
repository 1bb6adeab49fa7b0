"""The independent client of bench/harness.py: a bare httpx streaming loop, no trbench code.

N streams at once on one asyncio loop and one httpx.AsyncClient, each read stamped with
time.perf_counter_ns() on arrival and kept: the least a client that times tokens must do. Its process
CPU time over the streaming is the yardstick trbench's client is held to. Afterwards (not timed),
the tokens are counted from the bytes and the synthetic server's send times read out of them.

Run by the harness in a process of its own; prints one JSON object (see `summary`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

import httpx

_SENT = re.compile(rb'"content":" (\d+)"')  # the synthetic server's token: its send time


def summary(tokens: int, cpu_s: float, t_first_ns: int, t_last_ns: int, errors_ns: list[int], failed: int) -> dict:
    """What a client phase reports: tokens received, CPU, the span from first send to last arrival, and
    timestamp error (arrival - send) percentiles in ms."""
    errors = sorted(errors_ns)

    def pct(q: float) -> float | None:
        return errors[min(len(errors) - 1, int(q * len(errors)))] / 1e6 if errors else None

    return {"tokens": tokens, "cpu_s": cpu_s, "span_s": (t_last_ns - t_first_ns) / 1e9, "failed": failed,
            "error_min_ms": pct(0.0), "error_p50_ms": pct(0.50), "error_p99_ms": pct(0.99), "error_max_ms": pct(1.0)}


def _sent_times(reads: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """(arrival, send time) of each token, a token arriving with the read that completed its line."""
    found, pending = [], b""
    for t_ns, data in reads:
        *lines, pending = (pending + data).split(b"\n")
        found += [(t_ns, int(m[1])) for m in map(_SENT.search, lines) if m]
    return found


async def _stream(client: httpx.AsyncClient, url: str, body: dict) -> tuple[int, list[tuple[int, bytes]]]:
    reads: list[tuple[int, bytes]] = []
    t_send = time.perf_counter_ns()
    async with client.stream("POST", url, json=body) as resp:
        async for data in resp.aiter_raw():
            reads.append((time.perf_counter_ns(), data))
    return t_send, reads


async def run(url: str, streams: int, tokens: int) -> dict:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    body = {"model": "synthetic", "messages": [{"role": "user", "content": "go"}], "stream": True,
            "max_tokens": tokens}
    async with httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False,
                                 headers={"Accept-Encoding": "identity"}) as client:
        cpu0 = time.process_time()
        results = await asyncio.gather(*(_stream(client, url, body) for _ in range(streams)),
                                       return_exceptions=True)
        cpu_s = time.process_time() - cpu0
    done = [r for r in results if not isinstance(r, BaseException)]
    errors = [t - sent for _, reads in done for t, sent in _sent_times(reads)]
    last = max((reads[-1][0] for _, reads in done if reads), default=0)
    first = min((t for t, _ in done), default=0)
    return summary(len(errors), cpu_s, first, last, errors, streams - len(done))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the synthetic server's chat completions URL")
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True)
    args = ap.parse_args()
    try:  # the loop trbench's client runs on (trbench.backends.event_loop): the ratio compares clients, not loops
        import uvloop
    except ImportError:
        uvloop = None
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        print(json.dumps(runner.run(run(args.url, args.streams, args.tokens))))


if __name__ == "__main__":
    main()
