"""Post-processing at scale: a synthetic TR of N request rows, then the report, the outlier flags and
the validation, each timed in a fresh process (wall time and peak RSS).

The TR is written with pyarrow directly, in trbench's real schema (store.REQUEST_SCHEMA and
RUN_SCHEMA, the manifest in each file's metadata): run files of 625 requests (1 warm-up, then 312
prompts sent cold and again cached, ttft: both, TTFT tenfold apart), 8 models x 8 configs, a few
failed requests, a few invalid runs and a few re-run attempts. Run rows carry the aggregates the
runner would compute from their requests.

Each step is one fresh process, as a person runs it:
  report    `trbench report <tr_id> --output-dir <dir>` (the CLI, in the process: Markdown, HTML, plots)
  flags     trbench.measure.outliers.flag_outliers + write_flags (what the flow does after the runs)
  validate  trbench.validation.validate.validate_tr with the expected runs and the report just written
and prints `scale: <step> <N> rows: X s, peak Y MB` (X: wall time of the whole process, imports
included, the figure the targets apply to; Y: its peak resident memory, from wait4). A second line
splits X: the imports the step needs (pandas, pyarrow, matplotlib, Jinja, Great Expectations: seconds,
paid once by a process that serves many TRs, such as the flow's worker) are warmed first and timed on
their own; then the step itself ("work", wall and CPU time), which is what every TR pays. The same
again at N/10 shows how each step scales: a last line per step splits its work into a part per 100k
rows and a fixed part per TR (the plots of the 64 cells, Great Expectations' per-expectation work).
Targets (issue 12), 1M rows on 2 cores: report <= 20 s and <= 2 GB, validation <= 20 s and <= 2 GB.

Run: `make bench-scale` or `python bench/scale.py --rows 1000000 [--out DIR] [--keep]`.
Run it on an otherwise idle machine: another CPU-bound process on 2 cores doubles every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# before the imports below: a step's child process counts them with the imports it warms
_STARTED, _STARTED_CPU = time.perf_counter(), time.process_time()

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from trbench.data import store  # noqa: E402
from trbench.data.cells import config_label, single_key  # noqa: E402

ROWS_PER_RUN = 625  # 1 warm-up + 312 prompts x (cold, cached)
MODELS = [f"synth-{name}:{size}" for name, size in
          [("alpha", "1b"), ("bravo", "3b"), ("charlie", "7b"), ("delta", "8b"),
           ("echo", "13b"), ("foxtrot", "14b"), ("golf", "27b"), ("hotel", "32b")]]
CONFIGS = [(g, c, t) for g in (0, 99) for c in (2048, 8192) for t in (0.0, 0.8)]  # 8 configs
MIN_OK = 250  # per cache state, of 312
TR_PREFIX = "TRscale"
_WORDS = ("the server streams tokens while the model decodes each step of the answer and the client "
          "measures every chunk as it arrives over the wire").split()


def manifest(tr_id: str, runs_per_cell: int) -> dict:
    spec = {"tr_id": tr_id, "title": f"Synthetic scale TR ({tr_id})", "provider": "external",
            "urls": ["http://127.0.0.1:1"], "backend": "openai", "models": MODELS, "baseline_model": MODELS[0],
            "grid": {"num_gpu": [0, 99], "num_ctx": [2048, 8192], "temperature": [0.0, 0.8]},
            "runs": runs_per_cell, "requests_per_run": 312, "warmup_requests": 1, "min_ok_requests": MIN_OK,
            "ttft": "both", "max_tokens": 96}
    return {"command": f"trbench run synthetic/{tr_id}.yaml", "spec": spec,
            "git": {"commit": "0" * 40, "dirty": False}, "packages": {"pyarrow": pa.__version__},
            "hardware": {"cpu": "synthetic", "cpu_cores_logical": 2, "memory_gib": 24.0, "gpus": [],
                         "platform": "linux", "python": sys.version.split()[0]}}


class _Constant:
    """Columns that are the same in every run file, built once."""

    def __init__(self) -> None:
        n = ROWS_PER_RUN
        idx = np.arange(n)
        self.warm = idx == 0
        self.cold = (idx % 2 == 1)  # measured: odd rows cold, the even ones after them the same prompt cached
        prompt = np.where(self.warm, 0, (idx - 1) // 2)
        self.prompt = prompt
        self.request_index = pa.array(idx, pa.int32())
        self.is_warmup = pa.array(self.warm)
        self.prompt_id = pa.array([f"p{p:03d}" for p in prompt])
        self.cache_target = pa.array([None if w else ("cold" if c else "cached") for w, c in zip(self.warm, self.cold)])
        rng = np.random.default_rng(1)
        self.prompt_tokens = rng.integers(60, 400, size=n)[prompt]
        texts = [" ".join(rng.choice(_WORDS, size=int(k))) for k in rng.integers(40, 90, size=256)]
        self.texts = pa.array(texts)
        self.content = pa.array(["content"])


def _percentiles(a: np.ndarray) -> tuple:
    if not a.size:
        return None, None, None, None
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return float(a.mean()), float(p50), float(p95), float(p99)


def _cell_base(model_i: int, config_i: int) -> tuple[float, float]:
    """(decode tok/s, cold TTFT ms) of a cell: bigger models slower, GPU offload faster."""
    g, c, _ = CONFIGS[config_i]
    tps = 220.0 / (1 + model_i) * (3.0 if g else 1.0)
    ttft = 40.0 * (1 + model_i) * (0.3 if g else 1.0) * (1.4 if c == 8192 else 1.0)
    return tps, ttft


def run_tables(k: _Constant, tr_id: str, model_i: int, config_i: int, run_index: int, attempt: int,
               seed: int, invalid: bool, started: dt.datetime, meta: dict) -> tuple[pa.Table, pa.Table]:
    """One run: its request table and its one-row run table."""
    n = ROWS_PER_RUN
    rng = np.random.default_rng(seed)
    model = MODELS[model_i]
    g, c, t = CONFIGS[config_i]
    label = config_label(g, c, t)
    run_id = f"{store.slug(model)}_{label}_r{run_index:02d}_a{attempt}"
    base_tps, base_ttft = _cell_base(model_i, config_i)

    error = np.zeros(n, dtype=bool)
    if invalid:
        error[rng.random(n) < 0.3] = True  # a server in trouble: too few ok requests per cache state
    elif rng.random() < 0.5:
        error[rng.integers(1, n)] = True  # the odd timeout
    ok = ~error
    warm, cold = k.warm, k.cold
    cached_req = ~warm & ~cold
    partial = cached_req & (rng.random(n) < 0.01)
    state = np.where(cold | warm, "cold", np.where(partial, "partial", "cached")).astype(object)
    state[error] = "unknown"

    out_tok = rng.integers(32, 97, size=n)
    tps = base_tps * rng.lognormal(0, 0.02) * rng.lognormal(0, 0.05, size=n)
    ttft = np.where(cold | warm, base_ttft, base_ttft / 10) * rng.lognormal(0, 0.1, size=n)
    ttft[partial] *= 5
    decode_ms = (out_tok - 1) / tps * 1000.0
    e2e = ttft + decode_ms + rng.uniform(0.5, 3.0, size=n)
    prompt_tokens = k.prompt_tokens
    cached_tokens = np.where(cold | warm, 4, np.where(partial, prompt_tokens // 2, prompt_tokens - 1))
    itl = 1000.0 / tps
    e2e[error] = 300_000.0
    n_chunks = np.where(ok, out_tok, 0)

    def masked(values, typ):
        return pa.array(values, typ, mask=error)

    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(n_chunks, out=offsets[1:])
    step = np.repeat(itl, n_chunks)
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], n_chunks)
    chunk_offsets = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.repeat(ttft, n_chunks) + within * step))
    chunk_kinds = pa.ListArray.from_arrays(pa.array(offsets), k.content.take(np.zeros(offsets[-1], dtype=np.int64)))
    text = k.texts.take(rng.integers(0, len(k.texts), size=n))
    sent = np.datetime64(started.replace(tzinfo=None), "us") + np.cumsum(e2e * 1000).astype("timedelta64[us]")

    keys = {"tr_id": tr_id, "run_id": run_id, "attempt": attempt, "cell_hash": f"hash-{model_i}-{config_i}",
            "model": model, "provider": "external", "backend": "openai", "instance": "external-0",
            "instance_url": "http://127.0.0.1:1", "num_gpu": g, "num_ctx": c, "temperature": t, "ttft_mode": "both",
            "prompt_style": "chat", "run_index": run_index, "harness": "python",
            "server_settings": ""}
    cols = {name: pa.array([v] * n, store.REQUEST_SCHEMA.field(name).type) for name, v in keys.items()}
    cols.update({
        "request_index": k.request_index, "is_warmup": k.is_warmup, "prompt_id": k.prompt_id,
        "cache_target": k.cache_target, "cache_state": pa.array(state, pa.string()),
        "answer_check": pa.array(np.where(ok, "ok", None).astype(object), pa.string()),
        "sent_at": pa.array(sent, pa.timestamp("us", tz="UTC")),
        "status": pa.array(np.where(ok, "ok", "error").astype(object), pa.string()),
        "error_kind": pa.array(np.where(error, "timeout", None).astype(object), pa.string()),
        "error_message": pa.array(np.where(error, "no complete response within timeout_s=300", None).astype(object),
                                  pa.string()),
        "http_status": masked(np.full(n, 200), pa.int32()),
        "finish_reason": pa.array(np.where(ok, "length", None).astype(object), pa.string()),
        "ttft_ms": masked(ttft, pa.float64()), "ttfat_ms": masked(ttft, pa.float64()),
        "e2e_ms": pa.array(e2e), "prompt_tokens": masked(prompt_tokens, pa.int64()),
        "output_tokens": masked(out_tok, pa.int64()), "cached_tokens": masked(cached_tokens, pa.int64()),
        "decode_tps": masked(tps, pa.float64()),
        "decode_tps_client": masked(tps * rng.normal(1.0, 0.003, size=n), pa.float64()),
        "prefill_ms": masked(ttft * 0.8, pa.float64()), "load_ms": pa.nulls(n, pa.float64()),
        "tpot_ms": masked((e2e - ttft) / (out_tok - 1), pa.float64()),
        "itl_p50_ms": masked(itl, pa.float64()), "itl_p95_ms": masked(itl * 1.3, pa.float64()),
        "itl_max_ms": masked(itl * 2.0, pa.float64()), "n_chunks": pa.array(n_chunks, pa.int32()),
        "reasoning_tokens": masked(np.zeros(n, dtype=np.int64), pa.int64()), "answer_tokens": masked(out_tok, pa.int64()),
        "decode_tps_reasoning": pa.nulls(n, pa.float64()),
        "decode_tps_answer": masked(tps, pa.float64()),
        "server_decode_tokens": masked(out_tok, pa.int64()), "server_decode_ms": masked(decode_ms, pa.float64()),
        "server_decode_tps_reported": masked(tps, pa.float64()),
        "server_total_ms": masked(ttft * 0.8 + decode_ms, pa.float64()), "client_cpu_s": pa.nulls(n, pa.float64()),
        "chunk_offsets_ms": chunk_offsets, "chunk_kinds": chunk_kinds,
        "output_text": pa.array(np.where(ok, text.to_numpy(zero_copy_only=False), "").astype(object), pa.string()),
        "reasoning_text": pa.nulls(n, pa.string()), "gpu_memory_at_error": pa.nulls(n, pa.string()),
    })
    schema = store.REQUEST_SCHEMA.with_metadata(meta)
    requests = pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)

    measured, good = ~warm, ok & ~warm
    n_ok_state = {tgt: int((good & sel).sum()) for tgt, sel in (("cold", cold), ("cached", cached_req))}
    short = {tgt: v for tgt, v in n_ok_state.items() if v < MIN_OK}
    row = {**keys, "started_at": started, "wall_s": float(e2e.sum() / 1000), "instance_load_ms": None,
           "n_requests": int(measured.sum()), "n_warmup": int(warm.sum()), "n_ok": int(good.sum()),
           "n_errors": int((error & measured).sum()), "min_ok_requests": MIN_OK, "valid": not short,
           "invalid_reason": None if not short else (
               f"{int(good.sum())} ok request(s) of {int(measured.sum())}, fewer than min_ok_requests={MIN_OK} "
               "per cache state (" + ", ".join(f"{tgt}: {v}" for tgt, v in short.items()) + ")"),
           "error_kinds": ["timeout"] if (error & measured).any() else [],
           "output_tokens_total": int(out_tok[good].sum()), "cached_tokens_total": int(cached_tokens[good].sum()),
           "answers_flagged": 0, "manifest_digest": "synthetic"}
    for name, values in (("decode_tps", tps), ("decode_tps_client", tps), ("e2e_ms", e2e),
                         ("tpot_ms", (e2e - ttft) / (out_tok - 1))):
        row.update(zip([f"{name}_{s}" for s in ("mean", "p50", "p95", "p99")], _percentiles(values[good])))
    for st in ("cold", "partial", "cached", "unknown"):
        sel = ttft[good & (state == st)]
        mean, p50, _, _ = _percentiles(sel)
        row.update({f"n_{st}": int(sel.size), f"ttft_{st}_ms_mean": mean, f"ttft_{st}_ms_p50": p50})
    a = tps[good]
    row["decode_tps_cv_pct_within_run"] = float(a.std(ddof=1) / a.mean() * 100) if a.size > 1 else None
    run_schema = store.RUN_SCHEMA.with_metadata(meta)
    return requests, pa.Table.from_pylist([row], schema=run_schema)


def plan_runs(n_files: int) -> list[tuple[int, int, int, int, bool]]:
    """(model, config, run_index, attempt, invalid) per run file: cells in turn, one re-run attempt in a
    hundred (attempt 2 of an early run_index), one invalid run in eight hundred."""
    cells = len(MODELS) * len(CONFIGS)
    reruns = n_files // 100
    out = []
    for i in range(n_files - reruns):
        out.append((i % cells // len(CONFIGS), i % len(CONFIGS), i // cells, 1, i % 800 == 400))
    for j in range(reruns):
        m, cfg, ri, _, _ = out[j * 7 % len(out)]
        out.append((m, cfg, ri, 2, False))
    return out


def build(root: Path, rows: int) -> dict[str, int]:
    """Write the synthetic TR under root; returns the expected runs per config key (validation's format)."""
    n_files = max(1, rows // ROWS_PER_RUN)
    plan = plan_runs(n_files)
    tr_id = root.name
    expected: dict[str, int] = {}
    for m, cfg, ri, _, _ in plan:
        key = single_key(MODELS[m], *CONFIGS[cfg])
        expected[key] = max(expected.get(key, 0), ri + 1)
    man = manifest(tr_id, max(expected.values()))
    meta = {store.MANIFEST_KEY: json.dumps(man, sort_keys=True).encode()}
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(man, indent=2, sort_keys=True))
    k = _Constant()
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for i, (m, cfg, ri, attempt, invalid) in enumerate(plan):
        started = t0 + dt.timedelta(minutes=5 * i)
        req, run = run_tables(k, tr_id, m, cfg, ri, attempt, 1000 + i, invalid, started, meta)
        run_id = run.column("run_id")[0].as_py()
        for table, data in (("requests", req), ("runs", run)):
            path = root / table / f"model_slug={store.slug(MODELS[m])}" / f"{run_id}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(data, path)
    (root / "expected_runs.json").write_text(json.dumps(expected, indent=1, sort_keys=True))
    return expected


# --- the timed steps, each in a fresh process ---------------------------------------------------------

# What each step imports, warmed before its clock starts: a process that serves many TRs (the flow's
# worker, a notebook) pays these once, not once per TR, so the bench times them on their own line.
WARM = {
    "report": ("trbench.cli", "trbench.report.publishing", "trbench.report.plots", "trbench.report.render",
               "pyarrow.dataset"),
    "flags": ("trbench.measure.outliers",),
    "validate": ("trbench.validation.validate", "great_expectations", "great_expectations.expectations",
                 "great_expectations.expectations.row_conditions"),
}


def _warm(step: str) -> None:
    import importlib  # noqa: PLC0415

    if step == "validate":
        from trbench.validation.gx import import_gx  # noqa: PLC0415 (GX's analytics off before its import)

        import_gx()
    for module in WARM[step]:
        importlib.import_module(module)


def _work(step: str, root: Path) -> None:
    """One step on one TR, imports warmed: what a long-lived process does per TR."""
    if step == "report":
        from trbench.cli import app  # noqa: PLC0415 (`trbench report`, in this process)

        app(["report", root.name, "--output-dir", str(root.parent)], standalone_mode=False)
    elif step == "flags":
        from trbench.measure.outliers import flag_outliers, write_flags  # noqa: PLC0415

        write_flags(root, flag_outliers(root))
    elif step == "validate":
        from trbench.validation.validate import validate_tr  # noqa: PLC0415

        expected = json.loads((root / "expected_runs.json").read_text())
        report = root / "report" / f"{root.name}.md"
        result = validate_tr(root, expected, report if report.is_file() else None)
        bad = [r.message for r in result.results if not r.success]
        if bad:
            print("\n".join(bad[:5]), file=sys.stderr)
        print(f"validation: {'ok' if result.success else 'FAILED'}, {len(result.results)} expectations, "
              f"{len(bad)} not passed", file=sys.stderr)
    else:
        raise SystemExit(f"unknown step {step!r}")


def _step(step: str, root: Path, timing: Path) -> None:
    """Child process: warm the step's imports, then do the step; writes both durations to `timing`."""
    t0, c0 = _STARTED, _STARTED_CPU  # this script's own imports (numpy, pyarrow, trbench.data) count too
    _warm(step)
    t1, c1 = time.perf_counter(), time.process_time()
    _work(step, root)
    t2, c2 = time.perf_counter(), time.process_time()
    timing.write_text(json.dumps({"imports_s": t1 - t0, "imports_cpu_s": c1 - c0,
                                  "work_s": t2 - t1, "work_cpu_s": c2 - c1}))


def timed(step: str, root: Path, rows: int) -> tuple[float, float, int, dict]:
    """Run one step in a fresh process: (wall s, peak RSS MB, exit code, its split into imports and
    work); prints the scale lines."""
    timing = root.parent / f".timing-{step}-{rows}.json"
    timing.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--root", str(root), "--timing", str(timing)]
    t0 = time.perf_counter()
    # run from the TR's folder, as `trbench report` is run beside its outputs; the child imports
    # trbench from where this script does (PYTHONPATH or the installed package)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=root.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    peak_mb = usage.ru_maxrss / 1024  # Linux: KiB
    flag = "" if proc.returncode == 0 else f" (exit {proc.returncode})"
    print(f"scale: {step} {rows} rows: {wall:.1f} s, peak {peak_mb:.0f} MB{flag}", flush=True)
    split = json.loads(timing.read_text()) if timing.is_file() else {}
    timing.unlink(missing_ok=True)
    if split:
        print(f"scale: {step} {rows} rows: imports {split['imports_s']:.1f} s (once per process), "
              f"work {split['work_s']:.2f} s (cpu {split['work_cpu_s']:.2f} s), interpreter start and exit the rest",
              flush=True)
    return wall, peak_mb, proc.returncode, split


def scaling(step: str, big: int, small: int, work: dict[int, dict]) -> str:
    """The two work times (imports apart) as time = fixed + rows x per-row: what grows with the rows
    and what does not (per TR: the plots of its 64 cells, Great Expectations' per-expectation work).
    CPU time beside wall time: on a shared machine the wall time also holds the other processes' turns."""
    t_big, t_small = work[big]["work_s"], work[small]["work_s"]
    per_100k = (t_big - t_small) / (big - small) * 100_000
    fixed = t_small - per_100k * small / 100_000
    cpu = work[small]["work_cpu_s"] / work[big]["work_cpu_s"]
    return (f"scale: {step} scaling (work, imports apart): {small} rows take {t_small / t_big:.0%} of the time of "
            f"{big} ({cpu:.0%} of its CPU time); {per_100k:.2f} s per 100k rows + {fixed:.2f} s fixed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="request rows of the large TR (default 1,000,000)")
    ap.add_argument("--out", type=Path, default=None, help="where to build the TRs (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the built TRs")
    ap.add_argument("--no-tenth", action="store_true", help="skip the N/10 run")
    ap.add_argument("--steps", default="report,flags,validate", help="comma-separated steps to time")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--timing", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        _step(args.step, args.root, args.timing)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="trbench-scale-"))
    sizes = [args.rows] + ([] if args.no_tenth else [args.rows // 10])
    steps = args.steps.split(",")
    works: dict[str, dict[int, dict]] = {step: {} for step in args.steps.split(",")}
    print(f"scale: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    failed = 0
    try:
        for rows in sizes:
            root = out / f"{TR_PREFIX}{rows}"
            if not (args.keep and (root / "expected_runs.json").is_file()):
                shutil.rmtree(root, ignore_errors=True)
                t0 = time.perf_counter()
                build(root, rows)
                print(f"built {root} ({rows} rows) in {time.perf_counter() - t0:.0f} s", flush=True)
            shutil.rmtree(root / "report", ignore_errors=True)
            for step in steps:
                _, _, code, split = timed(step, root, rows)
                works[step][rows] = split or {"work_s": float("nan"), "work_cpu_s": float("nan")}
                failed += code != 0
        if len(sizes) == 2:
            for step in steps:
                print(scaling(step, sizes[0], sizes[1], works[step]))
        print(f"scale: load average {os.getloadavg()[0]:.2f} at the end (this bench itself counts about 1)")
    finally:
        if not args.keep and args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
