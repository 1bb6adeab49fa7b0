"""Is trbench's load client ever the bottleneck? (issue 13, item 5)

Starts bench/synthetic_server.py in a process of its own (a fixed token rate per stream, each token
carrying its send time), then, one after the other, each in a fresh process:
  trbench  N concurrent AsyncWireClient.chat() streams, exactly as load mode sends them; the tokens
           and their arrival times are read from the RawExchanges the client returns;
  bare     bench/bare_httpx.py: a bare httpx streaming loop (no trbench code), the same N streams;
  floor    bench/stamp_floor.py: a Protocol per stream that only stamps and keeps its reads, the least
           any client can do: when trbench's p99 misses, its p99 tells whether the machine did too;
and prints one line:

  harness: <N> streams, <X> tok/s ingested, timestamp error p99 <E> ms, client CPU <C> s per 1k tokens,
  bare httpx loop <B> s per 1k tokens, ratio <R>

X: tokens trbench's client received / (last arrival - first send); E: p99 of arrival - send time over
every token (both time.perf_counter_ns, CLOCK_MONOTONIC, one clock for both processes); C and B: CPU
time (user + system) of the client process over the streams, per 1000 tokens received; R = C / B.
Targets on 2 cores: X >= 50,000 with N >= 256, E < 1 ms, R <= 2; a missed one is named on stderr.
Run it on an otherwise idle machine: the server, the client and anything else share the two cores.

Run: `make bench-harness` or `python bench/harness.py [--streams 256] [--tokens 1000] [--rate 250] [--rounds 1]`;
`--rounds 4 --tokens 250`: each stream sends 4 requests of 125-375 tokens one after another, the pattern of
a load step (streams end, are read and start again while the others stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # first on the clients' PYTHONPATH: this checkout's trbench

LINE = ("harness: {streams} streams, {tok_s:.0f} tok/s ingested, timestamp error p99 {error_p99_ms:.3f} ms, "
        "client CPU {client_cpu:.4f} s per 1k tokens, bare httpx loop {bare_cpu:.4f} s per 1k tokens, "
        "ratio {ratio:.2f}")
TARGETS = {"streams": 256, "tok_s": 50_000.0, "error_p99_ms": 1.0, "ratio": 2.0}


async def trbench_phase(url: str, streams: int, tokens: int, rounds: int) -> dict:
    """N streams through trbench's AsyncWireClient, each sending `rounds` requests one after another; CPU
    over the whole of chat(), the exchanges' reading after each stream included."""
    from bare_httpx import request_tokens, summary  # this script's folder is the phase process's sys.path[0]

    from trbench.backends import AsyncWireClient, ChatRequest

    async def user(client: AsyncWireClient, stream: int) -> list:
        return [await client.chat(ChatRequest(model="synthetic", messages=[{"role": "user", "content": "go"}],
                                              max_tokens=request_tokens(stream, r, tokens, rounds)))
                for r in range(rounds)]

    async with AsyncWireClient("openai", url, timeout_s=600.0, max_connections=streams) as client:
        cpu0 = time.process_time()
        exchanges = [ex for exs in await asyncio.gather(*(user(client, s) for s in range(streams))) for ex in exs]
        cpu_s = time.process_time() - cpu0
    ok = [ex for ex in exchanges if ex.status == "ok"]
    for ex in exchanges:
        if ex.status != "ok":
            print(f"trbench client: {ex.error_kind}: {ex.error_message}", file=sys.stderr)
    # each token's text is its send time: arrival - send, token by token
    errors = [t - int(sent) for ex in ok for t, sent in zip(ex.token_times_ns, ex.text.split(), strict=True)]
    received = sum(len(ex.token_times_ns) for ex in exchanges)
    last = max((ex.token_times_ns[-1] for ex in exchanges if ex.token_times_ns), default=0)
    return summary(received, cpu_s, min(ex.t_send_ns for ex in exchanges), last, errors, len(exchanges) - len(ok))


def _child(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


class SyntheticServer:
    """bench/synthetic_server.py in its own process (own process group member: Ctrl-C stops it too)."""

    def __init__(self, rate: float) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "synthetic_server.py"), "--port", "0",
                                      "--rate", str(rate)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the synthetic server did not start (said {line!r})")
        self.url = f"http://{line.split()[1]}"

    def cpu_s(self) -> float:
        """Its CPU time so far (user + system), from /proc: the harness sees whether it kept up."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def measure(streams: int, tokens: int, rate: float, rounds: int = 1) -> dict:
    """The three clients, one after the other, against one synthetic server; the figures of the line, and
    each phase's summary (with the server's CPU time during it: did it keep up?)."""
    phases = {"trbench": [__file__, "--phase", "trbench"], "bare": [str(HERE / "bare_httpx.py")],
              "floor": [str(HERE / "stamp_floor.py")]}
    server = SyntheticServer(rate)
    got: dict[str, dict] = {}
    try:
        phase_args = ["--url", f"{server.url}/v1/chat/completions", "--streams", str(streams), "--tokens", str(tokens),
                      "--rounds", str(rounds)]
        for name, cmd in phases.items():
            cpu0 = server.cpu_s()
            got[name] = _child([*cmd, *phase_args])
            got[name]["server_cpu_s"] = server.cpu_s() - cpu0
    finally:
        server.stop()
    ours, bare = got["trbench"], got["bare"]
    client_cpu = ours["cpu_s"] / ours["tokens"] * 1000 if ours["tokens"] else float("nan")
    bare_cpu = bare["cpu_s"] / bare["tokens"] * 1000 if bare["tokens"] else float("nan")
    return {"streams": streams, "tok_s": ours["tokens"] / ours["span_s"] if ours["span_s"] > 0 else 0.0,
            "error_p99_ms": ours["error_p99_ms"] if ours["error_p99_ms"] is not None else float("nan"),
            "client_cpu": client_cpu, "bare_cpu": bare_cpu, "ratio": client_cpu / bare_cpu, **got}


def missed(fig: dict) -> list[str]:
    out = []
    if fig["streams"] < TARGETS["streams"]:
        out.append(f"streams {fig['streams']} < {TARGETS['streams']}")
    if not fig["tok_s"] >= TARGETS["tok_s"]:
        out.append(f"ingest {fig['tok_s']:.0f} < {TARGETS['tok_s']:.0f} tok/s")
    if not fig["error_p99_ms"] < TARGETS["error_p99_ms"]:
        floor = fig["floor"]["error_p99_ms"]
        out.append(f"timestamp error p99 {fig['error_p99_ms']:.3f} >= {TARGETS['error_p99_ms']} ms (a client that "
                   f"only stamps, bench/stamp_floor.py, had p99 {floor:.3f} ms in the same run"
                   f"{': the machine misses it too' if floor >= TARGETS['error_p99_ms'] else ''})")
    if not fig["ratio"] <= TARGETS["ratio"]:
        out.append(f"CPU ratio {fig['ratio']:.2f} > {TARGETS['ratio']}")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=256, help="concurrent streams (default 256)")
    ap.add_argument("--tokens", type=int, default=1000, help="tokens per stream (default 1000)")
    ap.add_argument("--rate", type=float, default=250.0, help="tokens/s per stream sent by the server (default 250)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="requests each stream sends one after another (default 1; above 1 their lengths are "
                         "spread between 0.5 and 1.5 x --tokens, so that streams end while others stream, as "
                         "in a load step)")
    ap.add_argument("--verbose", action="store_true", help="each phase's figures on stderr")
    ap.add_argument("--json", type=Path, help="also write every figure, each phase's included, to this file")
    ap.add_argument("--phase", choices=["trbench"], help=argparse.SUPPRESS)  # internal: one client process
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        from trbench.backends import event_loop

        result = event_loop.run(trbench_phase(args.url, args.streams, args.tokens, args.rounds))
        print(json.dumps(result))
        return result
    for name in ("streams", "tokens", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.rate <= 0:
        ap.error("--rate must be above 0 tokens/s")
    fig = measure(args.streams, args.tokens, args.rate, args.rounds)
    print(LINE.format(**fig), flush=True)
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1))
    if args.verbose:
        for phase in ("trbench", "bare", "floor"):
            print(f"  {phase}: {json.dumps(fig[phase])}", file=sys.stderr)
    for miss in missed(fig):
        print(f"harness: target missed: {miss}", file=sys.stderr)
    return fig


if __name__ == "__main__":
    main()
