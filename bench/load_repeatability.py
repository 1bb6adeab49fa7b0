"""Are two identical load steps the same? The same load step (c streams on a server with c slots,
SmolLM2 on the embedded llama.cpp engine) measured in two TRs one after the other, each step's TTFT
p50 and TPOT p50 with the step's own bootstrap 95 % interval (blocks of the requests in flight together,
load_metrics.LOAD_DEFINITIONS['p50 interval']), and whether each median lies inside the other step's
interval; beside it the same with an interval that draws the requests one by one.

With exact outputs (load.exact_output, the default: ignore_eos) every stream runs max_tokens long and
the streams stay in lockstep; --free lets them stop at EOS, as trbench did before, and shows how far
apart two identical steps then land.

Both steps go to one llama.cpp server that this script starts (as the embedded engine starts one) and
that each TR reaches as an external server: a llama.cpp server's decode speed differs by a few percent
from one start to the next, which would otherwise decide the comparison. --fresh-servers lets each TR
start its own server, as an embedded-provider TR does. Beside each step: llama.cpp's own decode time
per token (its timings), which tells a server that ran slower from a client that measured differently.

    .venv/bin/python bench/load_repeatability.py [--concurrency 4] [--requests 40] [--free] [--fresh-servers]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml

from trbench.data import store
from trbench.data.cells import Cell
from trbench.engines.embedded import EmbeddedInstance
from trbench.measure.metrics import bootstrap_median_ci

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2:135m"
NUM_CTX = 1024
SERVER_PORT = 18474  # the TR's own server (--fresh-servers) and the shared one: never both at once


def cpu_ticks() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far, all cores (/proc/stat's first line)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def busy_share(since: tuple[int, int]) -> float:
    """The machine's CPU busy share (all cores) since `since`, in percent: with the server's threads and
    the client on a small machine, a share well above theirs means something else competed for the CPU."""
    busy, total = cpu_ticks()
    return (busy - since[0]) / max(total - since[1], 1) * 100


def sched_ns(pid: int | None) -> tuple[int, int]:
    """Nanoseconds the process's threads have so far run on a CPU and waited, runnable, for one
    (/proc/<pid>/task/*/schedstat); (0, 0) without a process."""
    run = wait = 0
    for f in Path(f"/proc/{pid}/task").glob("*/schedstat") if pid else []:
        try:
            r, w, _ = f.read_text().split()
        except (OSError, ValueError):  # a thread that ended meanwhile
            continue
        run, wait = run + int(r), wait + int(w)
    return run, wait


def cpu_wait_share(pid: int | None, since: tuple[int, int]) -> float:
    """The share of the server's CPU demand since `since` that waited for a CPU (percent): a server
    slowed by other processes on the machine, not by its own start, shows here."""
    run, wait = sched_ns(pid)
    run, wait = run - since[0], wait - since[1]
    return wait / (run + wait) * 100 if run + wait > 0 else float("nan")


@contextmanager
def shared_server(out: Path, concurrency: int) -> Iterator[EmbeddedInstance]:
    """One llama.cpp server for every step, started as the embedded provider starts a TR's: `concurrency`
    slots, NUM_CTX tokens each, the engine's default threads; its log under out/logs/shared.log."""
    server = EmbeddedInstance("shared", "127.0.0.1", SERVER_PORT, None, out / "logs", slots=concurrency)
    try:
        server.prepare(Cell(model=MODEL, num_gpu=0, num_ctx=NUM_CTX, temperature=0.8))
        yield server
    finally:
        server.stop()


def spec(tr_id: str, concurrency: int, requests: int, exact: bool, url: str | None = None) -> dict:
    """The load TR; with `url` it measures the llama.cpp server running there (provider external, the
    OpenAI-compatible backend, which reads llama.cpp's timings and sends ignore_eos), otherwise the TR
    starts its own."""
    server: dict = ({"provider": "external", "server": {"urls": [url]}} if url else
                    {"provider": "embedded", "server": {"ports": [SERVER_PORT], "slots": concurrency}})
    return {"tr_id": tr_id, **server, "backend": "openai", "models": [MODEL], "single_agent": False,
            "grid": {"num_gpu": [0], "num_ctx": [NUM_CTX], "temperature": [0.8]}, "max_tokens": 64,
            "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"), "timeout_s": 300, "seed": 42,
            "telemetry": {"enabled": False},
            "load": {"concurrency": [concurrency], "requests": requests, "warmup_requests": concurrency,
                     "exact_output": exact}}


def measure(out: Path, tr_id: str, concurrency: int, requests: int, exact: bool,
            server: EmbeddedInstance | None = None) -> dict[str, tuple]:
    """One load TR: against `server` (reached as an external server), or (None) against its own."""
    url, pid = (server.url, server.pid) if server else (None, None)
    path = out / f"{tr_id}.yaml"
    path.write_text(yaml.safe_dump(spec(tr_id, concurrency, requests, exact, url)))
    t0, s0 = cpu_ticks(), sched_ns(pid)
    done = subprocess.run([str(Path(sys.executable).parent / "trbench"), "run", str(path), "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{tr_id}: trbench run exited {done.returncode}:\n{done.stderr[-2000:]}")
    rows = store.read_frame(out / tr_id, "load_requests")
    ok = rows[(~rows["is_warmup"].astype(bool)) & (rows["status"] == "ok")]
    step = store.read_frame(out / tr_id, "load_steps").iloc[0]
    figures: dict[str, tuple] = {}
    for metric in ("ttft_ms", "tpot_ms"):
        values = [float(v) for v in ok[metric].dropna()]
        # the step's own interval (blocks of requests in flight together) and, beside it, one that draws the
        # requests one by one as if they were independent
        blocks = (float(step[f"{metric}_p50_ci_low"]), float(step[f"{metric}_p50_ci_high"]))
        figures[metric] = (float(step[f"{metric}_p50"]), blocks, bootstrap_median_ci(values), len(values))
    figures["ended_early"] = (int((ok["output_tokens"] < 64).sum()), len(ok))
    figures["server"] = server_figures(ok)
    figures["busy"] = (busy_share(t0), cpu_wait_share(pid, s0))
    return figures


def server_figures(ok: pd.DataFrame) -> tuple[float, int, float]:
    """llama.cpp's own decode time per token (median over the measured requests, from the timings the
    TR stored), how many requests carried timings, and the median of the prompt tokens not served from
    the server's cache (prefilled): whether a cache left by an earlier step served more of them."""
    timed = ok.dropna(subset=["server_decode_ms", "server_decode_tokens"])
    ms = (timed["server_decode_ms"] / timed["server_decode_tokens"]).median() if len(timed) else float("nan")
    prefilled = (ok["prompt_tokens"] - ok["cached_tokens"].fillna(0)).median()
    return float(ms), len(timed), float(prefilled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=40, help="measured requests per step")
    ap.add_argument("--free", action="store_true", help="outputs end at EOS (load.exact_output: false)")
    ap.add_argument("--fresh-servers", action="store_true",
                    help="each TR starts its own llama.cpp server (default: both measure one server started here)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.fresh_servers:
            a = measure(out, "rep-a", args.concurrency, args.requests, not args.free)
            b = measure(out, "rep-b", args.concurrency, args.requests, not args.free)
        else:
            with shared_server(out, args.concurrency) as server:
                a = measure(out, "rep-a", args.concurrency, args.requests, not args.free, server)
                b = measure(out, "rep-b", args.concurrency, args.requests, not args.free, server)
    print(f"c = {args.concurrency}, {args.requests} measured requests per step, outputs "
          f"{'free (EOS ends them)' if args.free else 'exact (ignore_eos, 64 tokens)'}, "
          f"{'a fresh llama.cpp server per step' if args.fresh_servers else 'one llama.cpp server for both steps'}")
    print(f"{'figure':<10} {'step A p50 [95% CI]':>28} {'step B p50 [95% CI]':>28}  each inside the other's: "
          "step interval / request-by-request interval")
    for metric in ("ttft_ms", "tpot_ms"):
        (ma, ca, ia, na), (mb, cb, ib, nb) = a[metric], b[metric]

        def inside(x: tuple[float, float] | None, y: tuple[float, float] | None) -> str:
            return "yes" if x and y and x[0] <= mb <= x[1] and y[0] <= ma <= y[1] else "no"

        def show(m: float, ci: tuple[float, float], n: int) -> str:
            return f"{m:8.1f} [{ci[0]:.1f}, {ci[1]:.1f}] n={n}"
        print(f"{metric:<10} {show(ma, ca, na):>28} {show(mb, cb, nb):>28}  {inside(ca, cb)} / {inside(ia, ib)}")
    print(f"ended early: step A {a['ended_early'][0]} of {a['ended_early'][1]}, "
          f"step B {b['ended_early'][0]} of {b['ended_early'][1]}")
    (ms_a, n_a, pre_a), (ms_b, n_b, pre_b) = a["server"], b["server"]
    print(f"server ms/token p50 (llama.cpp timings): step A {ms_a:.3f} ({n_a} requests timed), "
          f"step B {ms_b:.3f} ({n_b} timed), B/A {(ms_b / ms_a - 1) * 100:+.1f}%")
    print(f"prefilled tokens p50: step A {pre_a:.0f}, step B {pre_b:.0f}")
    print(f"machine CPU busy ({os.cpu_count()} cores) during the step: step A {a['busy'][0]:.0f}%, "
          f"step B {b['busy'][0]:.0f}%" + ("" if args.fresh_servers else
                                          f"; the shared server's CPU demand that waited for a CPU: "
                                          f"step A {a['busy'][1]:.1f}%, step B {b['busy'][1]:.1f}%"))


if __name__ == "__main__":
    main()
