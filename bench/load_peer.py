"""Does an independent peer measure the same load step? One load step (c streams on a llama.cpp server
with c slots, SmolLM2 on the embedded engine, exact outputs) measured by trbench (a load TR, as
bench/load_repeatability.py runs it) and by guidellm (its concurrent profile), one after the other,
never at once, the first tool taking turns from round to round; each tool's TTFT p50, TPOT p50
(guidellm's "ITL"), chunk gap p50, output tok/s, requests/s and e2e p50, and whether the two agree
within --tolerance (5 %).

Both tools measure one llama.cpp server that this script starts the way the embedded engine starts
one: trbench reaches it as an external server (the OpenAI-compatible backend, which still reads
llama.cpp's timings), guidellm at the same URL. A llama.cpp server's decode speed differs by a few
percent from one start to the next, and with a server per step that difference, not the tools, decides
the comparison. --fresh-servers starts a server per step instead (trbench's own, as an embedded-provider
TR does, and one for guidellm), for contrast. What one step leaves in the server's prompt cache does
not help the next: trbench's prompts open with a unique prefix and guidellm's are sent with
cache_prompt off (the prefilled-token row shows it).

What each sends (both /v1/chat/completions, streamed, warm-ups left out of every figure):
- trbench: the spec's prompts (datasets/prompts/single_agent.yaml: a system prompt and a short task,
  about 70 tokens after llama.cpp's chat template), each opening with a unique prefix so that only
  the template's first 4 tokens come from llama.cpp's prompt cache (about 66 prefilled);
  max_tokens 64, ignore_eos, temperature 0.8, seed 42.
- guidellm: its synthetic_text data, --prompt-tokens tokens of Faker words (counted by the tokenizer
  below) as one user message, to which SmolLM2's chat template adds its default system prompt and the
  role markers (30 tokens): 36 makes 66, all prefilled, as cache_prompt is sent off (without it
  llama.cpp serves the shared system prompt, 26 tokens, from the cache and guidellm's TTFT drops by a
  third); max_completion_tokens 64 and ignore_eos (guidellm's output_tokens), llama.cpp's default
  sampling (temperature 0.8).
Every server: 1024 tokens of context per slot, c slots, the embedded engine's default threads.
Beside the figures: llama.cpp's own decode time per token during each step (its timings), which
tells a server that ran slower from a client that measured differently.

guidellm needs a Hugging Face tokenizer to make its prompts; with no model hub reachable it is built
offline from the bundled GGUF (transformers' GGUF loading, needs the gguf package beside guidellm)
and saved to a folder, unless --tokenizer names one.

    .venv/bin/python bench/load_peer.py [--guidellm /tmp/gl/bin/guidellm] [--requests 40] [--rounds 1]
        [--guidellm-first] [--fresh-servers] [--tokenizer DIR] [--keep DIR]

At 40 requests guidellm's requests/s reads about 8 % high (its window opens at a batch's end and counts
that batch: docs/load-mode.md); use --requests 120 to compare it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml
from load_repeatability import (  # this script's folder is sys.path[0]
    MODEL, NUM_CTX, busy_share, cpu_ticks, cpu_wait_share, sched_ns, shared_server, spec)

from trbench.data import store
from trbench.data.cells import Cell
from trbench.engines import bundled
from trbench.engines.embedded import EmbeddedInstance

ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = 64  # load_repeatability.spec's
GUIDELLM_PORT = 18475
FIGURES = [  # (label, trbench load_steps column, guidellm metric name and statistic)
    ("TTFT p50 ms", "ttft_ms_p50", ("time_to_first_token_ms", "median")),
    ("TPOT p50 ms", "tpot_ms_p50", ("inter_token_latency_ms", "median")),  # guidellm's ITL is trbench's TPOT
    ("e2e p50 ms", "e2e_ms_p50", ("request_latency", "median")),  # seconds in guidellm: scaled below
    ("output tok/s", "output_tps", ("output_tokens_per_second", "mean")),
    ("requests/s", "request_rps", ("requests_per_second", "mean")),
]

BUILD_TOKENIZER = """
import sys
from pathlib import Path
from transformers import AutoTokenizer
gguf = Path(sys.argv[1])
AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(sys.argv[2])
"""


def build_tokenizer(guidellm: Path, folder: Path) -> Path:
    """SmolLM2's tokenizer as a Hugging Face tokenizer folder, made from the bundled GGUF by the
    transformers that guidellm runs with (no model hub needed)."""
    python = guidellm.parent / "python"
    done = subprocess.run([str(python), "-c", BUILD_TOKENIZER, str(bundled.resolve(MODEL)), str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the tokenizer could not be built from the GGUF ({python}: pip install gguf?):\n{done.stderr[-2000:]}")
    return folder


def trbench_step(out: Path, tr_id: str, concurrency: int, requests: int,
                 shared: EmbeddedInstance | None) -> dict[str, float]:
    """A load TR against the `shared` server (reached as an external one), or (None) against its own."""
    path = out / f"{tr_id}.yaml"
    path.write_text(yaml.safe_dump(spec(tr_id, concurrency, requests, exact=True, url=shared and shared.url)))
    pid = shared.pid if shared else None
    t0, s0 = cpu_ticks(), sched_ns(pid)
    done = subprocess.run([str(Path(sys.executable).parent / "trbench"), "run", str(path), "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{tr_id}: trbench run exited {done.returncode}:\n{done.stderr[-2000:]}")
    step = store.read_frame(out / tr_id, "load_steps").iloc[0]
    rows = store.read_frame(out / tr_id, "load_requests")
    ok = rows[(~rows["is_warmup"].astype(bool)) & (rows["status"] == "ok")]
    figures = {label: float(step[column]) for label, column, _ in FIGURES}
    figures["ITL (chunk gap) p50 ms"] = float(step["itl_ms_p50"])
    figures["prompt tokens p50"] = float(ok["prompt_tokens"].median())
    figures["prefilled tokens p50"] = float((ok["prompt_tokens"] - ok["cached_tokens"].fillna(0)).median())
    figures["output tokens p50"] = float(ok["output_tokens"].median())
    figures["measured requests"] = float(len(ok))
    figures["server ms/token p50"] = float((ok["server_decode_ms"] / ok["server_decode_tokens"]).median())
    figures["TPOT less server's"] = figures["TPOT p50 ms"] - figures["server ms/token p50"]
    figures["requests with server timings"] = float(ok["server_decode_ms"].notna().sum())
    figures["machine CPU busy %"] = busy_share(t0)
    figures["server CPU wait %"] = cpu_wait_share(pid, s0)
    return figures


def scenario(url: str, tokenizer: Path, concurrency: int, requests: int, prompt_tokens: int, result: Path) -> dict:
    """guidellm's run configuration: `concurrency` streams, `concurrency` warm-up requests left out,
    then `requests` measured ones (max_requests counts the warm-ups too)."""
    return {"spec": {
        # cache_prompt off (llama.cpp's own field): guidellm's prompts share SmolLM2's default system prompt,
        # which llama.cpp would otherwise serve from the slot's cache, while trbench's load requests open
        # with a unique prefix, so that nothing past their first tokens is cached
        "backend": {"kind": "openai_http", "target": url, "model": MODEL, "request_format": "/v1/chat/completions",
                    "extras": {"body": {"cache_prompt": False}}},
        "profile": {"kind": "concurrent", "streams": [concurrency], "warmup": {"mode": "requests", "value": concurrency}},
        "constraints": [{"kind": "max_requests", "count": requests + concurrency}],
        "tokenizer": {"kind": "huggingface_auto", "model": str(tokenizer)},
        "data": [{"kind": "synthetic_text", "prompt_tokens": prompt_tokens, "output_tokens": MAX_TOKENS}],
        "outputs": [{"kind": "json", "path": str(result)}],
    }}


def guidellm_step(guidellm: Path, out: Path, name: str, tokenizer: Path, concurrency: int, requests: int,
                  prompt_tokens: int, workers: int, shared: EmbeddedInstance | None) -> dict[str, float]:
    """guidellm's step against the `shared` server, or (None) against one started for this step alone."""
    server = shared or EmbeddedInstance("peer", "127.0.0.1", GUIDELLM_PORT, None, out / "logs", slots=concurrency)
    config, result = out / f"{name}.json", out / f"{name}-result.json"
    config.write_text(json.dumps(scenario(server.url, tokenizer, concurrency, requests, prompt_tokens, result)))
    log = out / "logs" / f"{server.name}.log"
    offset = log.stat().st_size if log.exists() else 0  # the log is kept across restarts: this step's from here
    t0, s0 = cpu_ticks(), sched_ns(shared.pid if shared else None)
    try:
        server.prepare(Cell(model=MODEL, num_gpu=0, num_ctx=NUM_CTX, temperature=0.8))  # the shared one: a no-op
        # guidellm spreads the streams over worker processes (one per stream, up to 10); here one, as
        # trbench's client is one event loop: on 2 cores more processes compete with the server's thread
        env = {**os.environ, "GUIDELLM__MAX_WORKER_PROCESSES": str(workers)}
        done = subprocess.run([str(guidellm), "run", "-c", str(config), "--disable-console-interactive"],
                              capture_output=True, text=True, env=env)
    finally:
        if shared is None:
            server.stop()
    if done.returncode != 0:
        sys.exit(f"{name}: guidellm exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    figures = read_guidellm(result)
    figures["server ms/token p50"] = server_ms_per_token(log, offset, skip=concurrency)
    figures["TPOT less server's"] = figures["TPOT p50 ms"] - figures["server ms/token p50"]
    figures["requests with server timings"] = float("nan")  # read from the server's log
    figures["machine CPU busy %"] = busy_share(t0)
    figures["server CPU wait %"] = cpu_wait_share(shared.pid if shared else None, s0)
    return figures


# llama.cpp's own decode timing of each request: "... |        eval time =  1972.42 ms /    64 tokens (..."
_EVAL = re.compile(r"\|\s+eval time =\s+([\d.]+) ms /\s+(\d+) tokens")


def server_ms_per_token(log: Path, offset: int, skip: int) -> float:
    """The median over the step's requests of llama.cpp's decode time per token, as trbench's
    server_decode_ms / server_decode_tokens: whether the server itself ran slower. The log says which
    requests ended, not whose: the first `skip` to end are taken as the warm-ups (sent first, in step)."""
    with log.open() as f:
        f.seek(offset)
        found = _EVAL.findall(f.read())[skip:]
    return statistics.median(float(ms) / int(n) for ms, n in found) if found else float("nan")


def read_guidellm(result: Path) -> dict[str, float]:
    bench = json.loads(result.read_text())["benchmarks"][0]
    metrics = bench["metrics"]

    def stat(name: str, statistic: str) -> float:
        return float(metrics[name]["successful"][statistic])
    figures = {label: stat(*metric) for label, _, metric in FIGURES}
    figures["e2e p50 ms"] *= 1000  # guidellm's request_latency is in seconds
    figures["ITL (chunk gap) p50 ms"] = float("nan")  # guidellm keeps no per-chunk gaps
    figures["prompt tokens p50"] = stat("prompt_token_count", "median")
    inputs = [r["input_metrics"] for r in bench["requests"]["successful"]]
    figures["prefilled tokens p50"] = statistics.median(i["text_tokens"] - (i["cached_tokens"] or 0) for i in inputs)
    figures["output tokens p50"] = stat("output_token_count", "median")
    figures["measured requests"] = float(metrics["request_totals"]["successful"])
    return figures


def show(title: str, tr: dict[str, float], gl: dict[str, float], tolerance: float) -> bool:
    print(f"\n{title}")
    print(f"{'figure':<24} {'trbench':>10} {'guidellm':>10} {'diff':>8}")
    agree = True
    for label in tr:
        a, b = tr[label], gl[label]
        if b != b:  # nan: no counterpart
            print(f"{label:<24} {a:>10.2f} {'-':>10}")
            continue
        diff = (b - a) / a * 100 if a else float("nan")
        checked = label in {f[0] for f in FIGURES}
        verdict = ("PASS" if abs(diff) <= tolerance else "FAIL") if checked else ""
        agree = agree and verdict != "FAIL"
        print(f"{label:<24} {a:>10.2f} {b:>10.2f} {diff:>+7.1f}% {verdict}")
    return agree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guidellm", type=Path, default=Path("/tmp/gl/bin/guidellm"), help="guidellm's executable (its venv)")
    ap.add_argument("--tokenizer", type=Path, help="a Hugging Face tokenizer folder (default: built from the GGUF)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=40, help="measured requests per step")
    ap.add_argument("--prompt-tokens", type=int, default=36,
                    help="guidellm's synthetic prompt, before the chat template's 30 tokens: 36 prefills as many as trbench")
    ap.add_argument("--rounds", type=int, default=1, help="both tools' steps, this many times, the first tool taking turns")
    ap.add_argument("--guidellm-workers", type=int, default=1, help="guidellm's worker processes")
    ap.add_argument("--keep", type=Path, help="keep both tools' outputs in this folder (default: a temporary one)")
    ap.add_argument("--guidellm-first", action="store_true", help="guidellm's step first in round 1 (trbench's by default)")
    ap.add_argument("--fresh-servers", action="store_true",
                    help="a fresh llama.cpp server for each step (default: one server for every step)")
    ap.add_argument("--tolerance", type=float, default=5.0, help="percent")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        tokenizer = args.tokenizer or build_tokenizer(args.guidellm, out / "tokenizer")
        version = subprocess.run([str(args.guidellm), "--version"], capture_output=True, text=True).stdout.strip()
        print(f"c = {args.concurrency} on {args.concurrency} slots, {args.requests} measured requests of "
              f"{MAX_TOKENS} tokens (ignore_eos) per step, {MODEL}; {version}; "
              f"{'a fresh llama.cpp server per step' if args.fresh_servers else 'one llama.cpp server for every step'}")
        with ExitStack() as stack:
            shared = None if args.fresh_servers else stack.enter_context(shared_server(out, args.concurrency))
            rounds = [run_round(args, n, out, tokenizer, shared) for n in range(1, args.rounds + 1)]
    if len(rounds) > 1:
        show_rounds(rounds, args.tolerance)
    print(f"\nwithin {args.tolerance:g} % on every checked figure: "
          + ", ".join(f"round {i}: {'yes' if v else 'no'}" for i, (_, _, v) in enumerate(rounds, 1)))


def run_round(args: argparse.Namespace, n: int, out: Path, tokenizer: Path,
              shared: EmbeddedInstance | None) -> tuple[dict[str, float], dict[str, float], bool]:
    """Round n: both tools' steps, guidellm's first in every other round (which one opens round 1:
    --guidellm-first), so that neither always meets the server as the other left it."""
    t0 = time.perf_counter()
    guidellm_first = args.guidellm_first != (n % 2 == 0)
    order = ["guidellm", "trbench"] if guidellm_first else ["trbench", "guidellm"]
    steps = {"trbench": lambda: trbench_step(out, f"peer-tr{n}", args.concurrency, args.requests, shared),
             "guidellm": lambda: guidellm_step(args.guidellm, out, f"peer-gl{n}", tokenizer, args.concurrency,
                                               args.requests, args.prompt_tokens, args.guidellm_workers, shared)}
    done = {tool: steps[tool]() for tool in order}
    result = (done["trbench"], done["guidellm"],
              show(f"round {n} ({order[0]} first)", done["trbench"], done["guidellm"], args.tolerance))
    print(f"(round took {time.perf_counter() - t0:.0f} s)")
    return result


def show_rounds(rounds: list[tuple[dict[str, float], dict[str, float], bool]], tolerance: float) -> None:
    """Each tool's median over the rounds, compared, and each tool's own spread between its rounds
    ((max - min) / median): where one tool's rounds differ by more than the tolerance, the machine's
    noise, not the tools, decides the verdict."""
    tr = {label: statistics.median(r[0][label] for r in rounds) for label, _, _ in FIGURES}
    gl = {label: statistics.median(r[1][label] for r in rounds) for label, _, _ in FIGURES}
    show(f"median of {len(rounds)} rounds", tr, gl, tolerance)
    print(f"{'own spread over rounds':<24} {'trbench':>10} {'guidellm':>10}")
    for label, _, _ in FIGURES:
        spread = [(max(v) - min(v)) / statistics.median(v) * 100
                  for v in ([r[0][label] for r in rounds], [r[1][label] for r in rounds])]
        print(f"{label:<24} {spread[0]:>9.1f}% {spread[1]:>9.1f}%")

if __name__ == "__main__":
    main()
