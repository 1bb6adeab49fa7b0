"""Probe the telemetry sampler on this machine: what NVML and psutil report, and the energy of a
short load measured both ways (the GPU's energy counter and the integral of its power samples).

    python bench/telemetry_probe.py                 # 10 s measured, load 'auto'
    python bench/telemetry_probe.py --seconds 20 --load idle --json out.json

Phases: 2 s idle, 2 s warm-up, --seconds measured, 2 s idle; energy is counted over the measured
phase only, exactly as a benchmark run's (trbench/measure/energy.py). Loads:
  idle   nothing: the GPUs' idle power
  cpu    a busy child process (the 'server' whose RSS and CPU are sampled)
  gpu    matrix multiplications on GPU 0 with torch or cupy, whichever imports (else idle)
  auto   gpu when torch or cupy imports, else cpu
Needs only the standard library and nvidia-ml-py (psutil for the host figures), so that it runs
on a bare GPU machine: `PYTHONPATH=. python3 bench/telemetry_probe.py`. Prints "no GPU" (and
why) where NVML sees none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trbench.measure import energy  # noqa: E402
from trbench.measure.sampler import Sampler  # noqa: E402

BUSY_CHILD = "import time\nx = bytearray(64 * 2**20)\nwhile True:\n    pass\n"


def gpu_load(stop: threading.Event) -> str | None:
    """Matrix multiplications on the first GPU until stop is set; the library used, or None."""
    try:
        import torch

        if torch.cuda.is_available():
            a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)

            def loop() -> None:
                while not stop.is_set():
                    for _ in range(20):
                        a @ a
                    torch.cuda.synchronize()

            threading.Thread(target=loop, daemon=True).start()
            return "torch"
    except Exception:
        pass
    try:
        import cupy

        a = cupy.random.rand(8192, 8192, dtype=cupy.float32)

        def loop_cp() -> None:
            while not stop.is_set():
                for _ in range(5):
                    a @ a
                cupy.cuda.Device(0).synchronize()

        threading.Thread(target=loop_cp, daemon=True).start()
        return "cupy"
    except Exception:
        return None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured phase length")
    ap.add_argument("--interval", type=float, default=0.5, help="sampling interval in seconds")
    ap.add_argument("--load", choices=["auto", "idle", "cpu", "gpu"], default="auto")
    ap.add_argument("--json", type=Path, help="also write the summary and every sample here")
    args = ap.parse_args(argv)

    child = None
    stop = threading.Event()
    load = args.load
    pids: list[int] = []
    if load in ("cpu", "auto"):
        child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD])
        pids.append(child.pid)
    sampler = Sampler(args.interval, pids=pids)
    try:
        with sampler:
            time.sleep(2.0)
            sampler.mark("warmup")
            used = None
            if load in ("gpu", "auto") and sampler.gpu_available:
                used = gpu_load(stop)
                if used is None and load == "gpu":
                    print("gpu load asked for, but neither torch nor cupy can use the GPU: the GPU stays idle")
            time.sleep(2.0)
            sampler.mark("measured")
            time.sleep(args.seconds)
            sampler.mark("idle")
            stop.set()
            time.sleep(2.0)
    finally:
        stop.set()
        if child is not None:
            child.kill()
            child.wait()

    rows = sampler.rows()
    load_text = {"idle": "idle", "cpu": "busy child process", "gpu": f"GPU matmul ({used or 'none: idle'})",
                 "auto": f"busy child process{' + GPU matmul (' + used + ')' if used else ''}"}[load]
    print(f"telemetry probe: {sampler.n_samples} samples every {args.interval:g} s; load: {load_text}; "
          f"measured {args.seconds:g} s")
    cols = energy.run_energy(rows, None, note=sampler.note())
    per_gpu = {g.gpu_index: g for g in energy.gpu_energy(rows)}
    summary: dict = {"gpu_available": sampler.gpu_available, "gpu_reason": sampler.gpu_reason, "load": load_text,
                     "interval_s": args.interval, "seconds": args.seconds, "n_samples": sampler.n_samples,
                     "run_columns": cols, "gpus": []}
    if not sampler.gpu_available:
        print(f"no GPU: {sampler.gpu_reason}")
    for gpu in sampler.gpus:
        i = gpu["index"]
        g_rows = [r for r in rows if r["gpu_index"] == i]
        phase = {p: [r for r in g_rows if r["phase"] == p] for p in ("idle", "warmup", "measured")}
        power = [r["power_w"] for r in phase["measured"] if r["power_w"] is not None]
        idle_power = [r["power_w"] for r in phase["idle"] if r["power_w"] is not None]
        e = per_gpu.get(i)
        diff = (100.0 * (e.integral_j - e.counter_j) / e.counter_j
                if e and e.counter_j and e.integral_j is not None else None)
        info = {
            "index": i, "name": gpu["name"], "energy_counter": gpu["energy_counter"],
            "power_w_mean_measured": statistics.mean(power) if power else None,
            "power_w_min_measured": min(power) if power else None,
            "power_w_max_measured": max(power) if power else None,
            "power_w_mean_idle": statistics.mean(idle_power) if idle_power else None,
            "distinct_power_readings_measured": len(set(power)),
            "window_s": e.window_s if e else None,
            "energy_j_counter": e.counter_j if e else None,
            "energy_j_power_integral": e.integral_j if e else None,
            "integral_vs_counter_pct": diff,
            "energy_j_used": e.energy_j if e else None, "method": e.method if e else None,
            "util_pct_mean_measured": energy.interval_mean(g_rows, "util_pct"),
            "mem_used_mib_max": max((r["mem_used_mib"] for r in g_rows if r["mem_used_mib"] is not None), default=None),
            "temp_c_max": max((r["temp_c"] for r in g_rows if r["temp_c"] is not None), default=None),
        }
        summary["gpus"].append(info)
        print(f"GPU {i} {gpu['name']}: energy counter {'yes' if gpu['energy_counter'] else 'no'}")
        print(f"  power W (measured): mean {fmt(info['power_w_mean_measured'])}, min {fmt(info['power_w_min_measured'])}, "
              f"max {fmt(info['power_w_max_measured'])}, {info['distinct_power_readings_measured']} distinct readings; "
              f"idle mean {fmt(info['power_w_mean_idle'])}")
        print(f"  energy over {fmt(info['window_s'], '.3f')} s: counter {fmt(info['energy_j_counter'], '.2f')} J, "
              f"power integral {fmt(info['energy_j_power_integral'], '.2f')} J "
              f"(integral vs counter {fmt(diff, '+.2f')} %); used: {info['method']}")
        print(f"  utilization mean {fmt(info['util_pct_mean_measured'])} %, memory used max "
              f"{fmt(info['mem_used_mib_max'], '.0f')} MiB, temperature max {fmt(info['temp_c_max'], '.0f')} C")
    print(f"run columns: energy_j {fmt(cols['energy_j'], '.2f')}, gpu_power_w_mean {fmt(cols['gpu_power_w_mean'])}, "
          f"gpu_mem_used_mib_max {fmt(cols['gpu_mem_used_mib_max'], '.0f')}, gpu_util_pct_mean "
          f"{fmt(cols['gpu_util_pct_mean'])}, cpu_pct_mean {fmt(cols['cpu_pct_mean'])}, server_rss_mib_max "
          f"{fmt(cols['server_rss_mib_max'])}")
    if cols["telemetry_note"]:
        print(f"note: {cols['telemetry_note']}")
    if args.json:
        samples = [{**r, "t": r["t"].isoformat()} for r in rows]
        args.json.write_text(json.dumps({"summary": summary, "samples": samples}, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
