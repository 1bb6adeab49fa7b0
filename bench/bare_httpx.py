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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

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


def on_trbench_loop(coro: Coroutine[Any, Any, dict]) -> dict:
    """Run on the loop trbench's client runs on (uvloop where installed, as trbench.backends.event_loop):
    the figures compare clients, not event loops."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        return runner.run(coro)


def request_tokens(stream: int, round_: int, tokens: int, rounds: int) -> int:
    """Tokens asked for by a stream's request in a round: `tokens` when each stream sends one request;
    with rounds, spread between half and 1.5 times `tokens`, so that streams end at different times and
    each one's reading overlaps the others' streaming, as in a load step (the same for both clients)."""
    if rounds == 1:
        return tokens
    return max(1, round(tokens * (0.5 + (stream * 0.6180339887 + round_ * 0.3819660113) % 1.0)))


async def _user(client: httpx.AsyncClient, url: str, stream: int, tokens: int, rounds: int) -> Exchanges:
    body = {"model": "synthetic", "messages": [{"role": "user", "content": "go"}], "stream": True}
    return [await _stream(client, url, body | {"max_tokens": request_tokens(stream, r, tokens, rounds)})
            for r in range(rounds)]


Exchanges = list[tuple[int, list[tuple[int, bytes]]]]  # a stream's requests: (send time, its stamped reads)


async def timed_streams(users: list[Awaitable[Exchanges]], requests: int) -> dict:
    """Run every stream at once, the process's CPU time taken over them alone; then (not timed) read the
    tokens and their send times out of the bytes. A stream that failed counts its requests as failed."""
    cpu0 = time.process_time()
    results = await asyncio.gather(*users, return_exceptions=True)
    cpu_s = time.process_time() - cpu0
    done = [r for user in results if not isinstance(user, BaseException) for r in user]
    errors = [t - sent for _, reads in done for t, sent in _sent_times(reads)]
    last = max((reads[-1][0] for _, reads in done if reads), default=0)
    first = min((t for t, _ in done), default=0)
    return summary(len(errors), cpu_s, first, last, errors, requests - len(done))


async def run(url: str, streams: int, tokens: int, rounds: int = 1) -> dict:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False,
                                 headers={"Accept-Encoding": "identity"}) as client:
        return await timed_streams([_user(client, url, s, tokens, rounds) for s in range(streams)],
                                   streams * rounds)


def phase_main(description: str, run: Callable[[str, int, int, int], Coroutine[Any, Any, dict]]) -> None:
    """A client phase of bench/harness.py as a process: its arguments in, one JSON object out."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--url", required=True, help="the synthetic server's chat completions URL")
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    print(json.dumps(on_trbench_loop(run(args.url, args.streams, args.tokens, args.rounds))))


if __name__ == "__main__":
    phase_main(__doc__.splitlines()[0], run)
