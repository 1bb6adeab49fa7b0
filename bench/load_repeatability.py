"""Are two identical load steps the same? The same load step (c streams on a server with c slots,
SmolLM2 on the embedded llama.cpp engine) measured in two TRs one after the other, each step's TTFT
p50 and TPOT p50 with the step's own bootstrap 95 % interval (blocks of the requests in flight together,
load_metrics.LOAD_DEFINITIONS['p50 interval']), and whether each median lies inside the other step's
interval; beside it the same with an interval that draws the requests one by one.

With exact outputs (load.exact_output, the default: ignore_eos) every stream runs max_tokens long and
the streams stay in lockstep; --free lets them stop at EOS, as trbench did before, and shows how far
apart two identical steps then land.

    .venv/bin/python bench/load_repeatability.py [--concurrency 4] [--requests 40] [--free]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from trbench.data import store
from trbench.measure.metrics import bootstrap_median_ci

ROOT = Path(__file__).resolve().parent.parent


def spec(tr_id: str, concurrency: int, requests: int, exact: bool) -> dict:
    return {"tr_id": tr_id, "provider": "embedded", "backend": "openai",
            "server": {"ports": [18474], "slots": concurrency}, "models": ["smollm2:135m"], "single_agent": False,
            "grid": {"num_gpu": [0], "num_ctx": [1024], "temperature": [0.8]}, "max_tokens": 64,
            "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"), "timeout_s": 300, "seed": 42,
            "telemetry": {"enabled": False},
            "load": {"concurrency": [concurrency], "requests": requests, "warmup_requests": concurrency,
                     "exact_output": exact}}


def measure(out: Path, tr_id: str, concurrency: int, requests: int, exact: bool) -> dict[str, tuple]:
    path = out / f"{tr_id}.yaml"
    path.write_text(yaml.safe_dump(spec(tr_id, concurrency, requests, exact)))
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
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=40, help="measured requests per step")
    ap.add_argument("--free", action="store_true", help="outputs end at EOS (load.exact_output: false)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        a = measure(out, "rep-a", args.concurrency, args.requests, not args.free)
        b = measure(out, "rep-b", args.concurrency, args.requests, not args.free)
    print(f"c = {args.concurrency}, {args.requests} measured requests per step, outputs "
          f"{'free (EOS ends them)' if args.free else 'exact (ignore_eos, 64 tokens)'}")
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


if __name__ == "__main__":
    main()
