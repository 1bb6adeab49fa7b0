"""Are two identical load steps the same? The same load step (c streams on a server with c slots,
SmolLM2 on the embedded llama.cpp engine) measured in two TRs one after the other, each step's TTFT
p50 and TPOT p50 with their bootstrap 95 % intervals over the step's measured ok requests, and
whether each median lies inside the other step's interval.

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
    figures: dict[str, tuple] = {}
    for metric in ("ttft_ms", "tpot_ms"):
        values = [float(v) for v in ok[metric].dropna()]
        figures[metric] = (float(ok[metric].median()), bootstrap_median_ci(values), len(values))
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
    print(f"{'figure':<10} {'step A p50 [95% CI]':>26} {'step B p50 [95% CI]':>26}  each inside the other's interval")
    for metric in ("ttft_ms", "tpot_ms"):
        (ma, ca, na), (mb, cb, nb) = a[metric], b[metric]
        inside = bool(ca and cb and ca[0] <= mb <= ca[1] and cb[0] <= ma <= cb[1])

        def show(m: float, ci: tuple[float, float] | None, n: int) -> str:
            return f"{m:8.1f} [{ci[0]:.1f}, {ci[1]:.1f}] n={n}" if ci else f"{m:8.1f} n={n}"
        print(f"{metric:<10} {show(ma, ca, na):>26} {show(mb, cb, nb):>26}  {'yes' if inside else 'no'}")
    print(f"ended early: step A {a['ended_early'][0]} of {a['ended_early'][1]}, "
          f"step B {b['ended_early'][0]} of {b['ended_early'][1]}")


if __name__ == "__main__":
    main()
