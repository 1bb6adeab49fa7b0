"""Telemetry beside every run: the sampler against a fake NVML, the energy arithmetic, the no-GPU
path against a real child process, and a real tr run writing telemetry aligned to its runs."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from trbench.data.environment import Manifest
from trbench.measure import energy
from trbench.data import store
from trbench.measure import vram
from trbench.measure.sampler import Sampler

pytestmark = pytest.mark.integration




def gpu_rows(rows: list[dict], index: int) -> list[dict]:
    return [r for r in rows if r["gpu_index"] == index]


def host_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["gpu_index"] is None]


# --- the sampler ------------------------------------------------------------------------------


def test_samples_every_interval_per_gpu_and_host(fake_nvml):
    fake = fake_nvml([{"power_w": 123.456, "mem_mib": 2048, "util": 77, "temp": 61},
                      {"counter": False, "util_error": True}])
    with Sampler(0.05) as s:
        time.sleep(1.0)
    rows = s.rows(run_id="r")
    assert s.gpu_available and s.gpu_reason is None and fake.initialized == 1  # once per process
    host = host_rows(rows)
    # one row per GPU and one host row per tick, sharing the tick number
    assert len(gpu_rows(rows, 0)) == len(gpu_rows(rows, 1)) == len(host) == s.n_samples
    assert {r["sample"] for r in host} == set(range(s.n_samples))
    # at the interval: at most 1 s / 0.05 s ticks plus the samples at start and stop (a busy
    # machine may delay ticks, never add them)
    assert 10 <= s.n_samples <= 23
    gaps = [b["t_rel_s"] - a["t_rel_s"] for a, b in zip(host[1:-2], host[2:-1])]
    assert 0.045 <= statistics.median(gaps) <= 0.1
    g0 = gpu_rows(rows, 0)[3]
    assert g0["power_w"] == pytest.approx(123.456) and g0["mem_used_mib"] == pytest.approx(2048)
    assert g0["util_pct"] == 77 and g0["temp_c"] == 61 and g0["gpu_name"] == "Fake GPU 0"
    assert g0["energy_mj"] > 1e9 and g0["cpu_pct"] is None and g0["server_rss_mib"] is None
    g1 = gpu_rows(rows, 1)[3]
    assert g1["energy_mj"] is None and g1["util_pct"] is None and g1["power_w"] == pytest.approx(100.0)
    assert host[3]["power_w"] is None and host[3]["cpu_pct"] is not None
    assert host[3]["server_rss_mib"] is None  # no server pids given
    # wall clock and monotonic clock agree on the spacing
    span_wall = (host[-1]["t"] - host[0]["t"]).total_seconds()
    assert span_wall == pytest.approx(host[-1]["t_rel_s"] - host[0]["t_rel_s"], abs=0.01)
    note = s.note()
    assert "GPU 1: no energy counter" in note and "GPU 1: utilization unreadable" in note


def test_energy_from_the_counter_and_from_the_power_integral(fake_nvml):
    fake_nvml([{"power_w": 250.0}, {"power_w": 100.0, "counter": False}])
    with Sampler(0.05) as s:
        time.sleep(0.2)
        s.mark("measured")
        time.sleep(1.0)  # constant power P for T = 1 s
        s.mark("idle")
        time.sleep(0.1)
    rows = s.rows()
    per_gpu = {g.gpu_index: g for g in energy.gpu_energy(rows)}
    g0, g1 = per_gpu[0], per_gpu[1]
    # GPU 0 has a counter: both methods, the counter is used; P x T within the timing of the marks
    assert g0.method == "energy counter" and g0.energy_j == g0.counter_j
    assert g0.counter_j == pytest.approx(250.0 * g0.window_s, rel=0.01)
    assert g0.integral_j == pytest.approx(250.0 * g0.window_s, rel=1e-6)
    assert 1.0 <= g0.window_s < 1.3  # the sleep between the marks, and whatever a busy machine adds
    # GPU 1 has none: the power integral
    assert g1.counter_j is None and g1.method == "power integral"
    assert g1.energy_j == pytest.approx(100.0 * g1.window_s, rel=1e-6)
    cols = energy.run_energy(rows, 1000, note=s.note())
    assert cols["energy_j"] == pytest.approx(g0.energy_j + g1.energy_j)
    assert cols["energy_method"] == "GPU 0: energy counter, GPU 1: power integral"
    assert cols["energy_window_s"] == pytest.approx(g0.window_s, abs=0.005)
    assert cols["gpu_power_w_mean"] == pytest.approx(350.0, rel=0.02)
    assert cols["gpu_mem_used_mib_max"] == pytest.approx(2000.0)  # summed over the two GPUs
    assert cols["gpu_util_pct_mean"] == pytest.approx(50.0)
    assert "GPU 1: no energy counter" in cols["telemetry_note"]


def test_warmup_and_idle_are_excluded(fake_nvml):
    fake = fake_nvml([{"power_w": 400.0}])
    with Sampler(0.05) as s:
        s.mark("warmup")
        time.sleep(0.4)  # warm-up at 400 W
        fake.set_power(0, 100.0)
        s.mark("measured")
        time.sleep(0.8)  # measured at 100 W
        s.mark("idle")
        fake.set_power(0, 400.0)
        time.sleep(0.3)  # idle at 400 W again
    rows = s.rows()
    assert {r["phase"] for r in rows} == {"idle", "warmup", "measured"}
    (g,) = energy.gpu_energy(rows)
    measured = [r for r in gpu_rows(rows, 0) if r["phase"] == "measured"]
    assert all(r["power_w"] == 100.0 for r in measured)
    assert g.counter_j == pytest.approx(100.0 * g.window_s, rel=0.02)
    assert g.integral_j == pytest.approx(100.0 * g.window_s, rel=1e-6)
    assert 0.8 <= g.window_s < 1.1
    cols = energy.run_energy(rows, 40)
    assert cols["gpu_power_w_mean"] == pytest.approx(100.0, rel=0.02)
    assert cols["j_per_token"] == pytest.approx(g.counter_j / 40)
    # the window starts at the mark and ends at the next one
    (start,) = [m for m in s.marks if m["label"] == "measured"]
    (end,) = [m for m in s.marks if m["label"] == "idle"]
    assert g.window_s == pytest.approx(end["t_rel_s"] - start["t_rel_s"], abs=0.005)


def test_multi_agent_phases_both_count_as_measured(fake_nvml):
    fake_nvml([{"power_w": 200.0}])
    with Sampler(0.05) as s:
        s.mark("warmup")
        time.sleep(0.2)
        s.mark("concurrent")
        time.sleep(0.3)
        s.mark("solo")
        time.sleep(0.3)
        s.mark("idle")
    cols = energy.run_energy(s.rows(), 10)
    assert 0.6 <= cols["energy_window_s"] < 0.9  # concurrent + solo, not the warm-up
    assert cols["energy_j"] == pytest.approx(200.0 * cols["energy_window_s"], rel=0.02)


# --- the arithmetic, on rows made by hand -----------------------------------------------------


def synthetic_rows(power_w: float = 200.0, seconds: int = 10, gpus: int = 1) -> list[dict]:
    rows = []
    for k in range(seconds + 3):  # 1 s idle, `seconds` measured, then the boundary and 1 s idle
        phase = "idle" if k == 0 or k > seconds else "measured"
        for g in range(gpus):
            rows.append({"sample": k, "phase": phase, "gpu_index": g, "t_rel_s": float(k), "power_w": power_w,
                         "energy_mj": int(5e6 + power_w * k * 1000), "util_pct": 80.0, "mem_used_mib": 1000.0 + k,
                         "cpu_pct": None, "server_rss_mib": None})
        rows.append({"sample": k, "phase": phase, "gpu_index": None, "t_rel_s": float(k), "power_w": None,
                     "energy_mj": None, "util_pct": None, "mem_used_mib": None, "cpu_pct": 25.0,
                     "server_rss_mib": 300.0 + k})
    return rows


def test_j_per_token_tokens_per_joule_and_tokens_per_dollar_arithmetic():
    rows = synthetic_rows(power_w=200.0, seconds=10)  # measured 1 s .. 11 s: 10 s at 200 W = 2000 J
    cols = energy.run_energy(rows, 500)
    assert cols["energy_j"] == pytest.approx(2000.0) and cols["energy_method"] == "energy counter"
    assert cols["energy_window_s"] == pytest.approx(10.0)
    assert cols["j_per_token"] == pytest.approx(4.0) and cols["tokens_per_j"] == pytest.approx(0.25)
    assert cols["gpu_power_w_mean"] == pytest.approx(200.0)
    assert cols["tokens_per_dollar"] is None and cols["cost_basis"] is None  # no price given
    assert cols["gpu_mem_used_mib_max"] == pytest.approx(1012.0)  # whole run, idle included
    assert cols["server_rss_mib_max"] == pytest.approx(312.0) and cols["cpu_pct_mean"] == pytest.approx(25.0)
    assert cols["gpu_util_pct_mean"] == pytest.approx(80.0)
    # electricity: 2000 J = 2000 / 3.6e6 kWh at 0.36 per kWh = 0.0002 -> 500 / 0.0002 tokens per unit
    by_kwh = energy.run_energy(rows, 500, price_per_kwh=0.36)
    assert by_kwh["tokens_per_dollar"] == pytest.approx(2.5e6) and "kWh" in by_kwh["cost_basis"]
    # GPU hour: 10 s x 1 GPU at 3.6 per hour = 0.01 -> 50 000 tokens per unit
    by_hour = energy.run_energy(rows, 500, price_per_gpu_hour=3.6)
    assert by_hour["tokens_per_dollar"] == pytest.approx(5e4) and "GPU-hour" in by_hour["cost_basis"]
    # both given: the GPU-hour price wins (it already includes the electricity)
    both = energy.run_energy(rows, 500, price_per_kwh=0.36, price_per_gpu_hour=3.6)
    assert both["tokens_per_dollar"] == pytest.approx(5e4)
    # the GPU-hour price counts every sampled GPU; the power integral agrees with the counter
    two = energy.run_energy(synthetic_rows(gpus=2), 500, price_per_gpu_hour=3.6)
    assert two["energy_j"] == pytest.approx(4000.0) and two["tokens_per_dollar"] == pytest.approx(2.5e4)
    (g,) = energy.gpu_energy(rows)
    assert g.integral_j == pytest.approx(g.counter_j)
    # a counter that went backwards (driver reload) falls back to the power integral
    reset = [{**r, "energy_mj": 0 if r["gpu_index"] == 0 and r["sample"] == 11 else r["energy_mj"]} for r in rows]
    assert energy.run_energy(reset, 500)["energy_method"] == "power integral"
    # no tokens: nothing per token; no GPU rows: no energy and no price, never made up
    assert energy.run_energy(rows, 0)["j_per_token"] is None
    host_only = [r for r in rows if r["gpu_index"] is None]
    none = energy.run_energy(host_only, 500, price_per_kwh=0.36, price_per_gpu_hour=3.6, note="no GPU visible")
    assert all(none[c] is None for c in ("energy_j", "j_per_token", "tokens_per_j", "tokens_per_dollar",
                                         "gpu_power_w_mean", "gpu_mem_used_mib_max", "gpu_util_pct_mean"))
    assert none["energy_window_s"] == pytest.approx(10.0) and none["telemetry_note"] == "no GPU visible"


# --- no GPU: host figures of a real server process ---------------------------------------------

CHILD = """
import subprocess, sys, time
# a 'runner' grandchild holding 80 MiB, as `ollama serve` keeps models in child processes
kid = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(80 * 2**20); time.sleep(30)"])
x = bytearray(40 * 2**20)
t = time.time()
while time.time() - t < 30:
    pass  # busy: CPU
"""


def test_no_gpu_records_the_server_process_and_says_gpu_metrics_are_unavailable(fake_nvml):
    fake_nvml(init_error="Driver Not Loaded")
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        time.sleep(1.0)
        with Sampler(0.1, pids=[child.pid]) as s:
            s.mark("measured")
            time.sleep(1.0)
            s.mark("idle")
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait()
    rows = s.rows()
    assert not s.gpu_available and s.gpu_reason == "NVML: Driver Not Loaded"
    assert s.note() == "no GPU visible: GPU metrics unavailable (NVML: Driver Not Loaded)"
    assert all(r["gpu_index"] is None and r["power_w"] is None and r["mem_used_mib"] is None for r in rows)
    rss = [r["server_rss_mib"] for r in rows]
    assert min(rss) > 120  # parent 40 MiB + grandchild 80 MiB, summed over the family
    busy = [r["server_cpu_pct"] for r in rows if r["phase"] == "measured" and r["server_cpu_pct"] is not None]
    assert busy and statistics.mean(busy) > 20
    cols = energy.run_energy(rows, 100, price_per_kwh=0.3, note=s.note())
    assert cols["energy_j"] is None and cols["tokens_per_dollar"] is None and cols["gpu_power_w_mean"] is None
    assert cols["server_rss_mib_max"] > 120 and cols["cpu_pct_mean"] is not None
    assert cols["telemetry_note"].startswith("no GPU visible: GPU metrics unavailable (NVML:")


def test_without_nvidia_ml_py_the_sampler_still_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with Sampler(0.05, pids=[2**22 + 12345]) as s:  # a pid that does not exist
        time.sleep(0.2)
    assert not s.gpu_available and "not importable" in s.gpu_reason
    assert "server process" in s.note() and all(r["server_rss_mib"] is None for r in s.rows())


def test_telemetry_rows_round_trip_through_storage(tmp_path, fake_nvml):
    fake_nvml([{"power_w": 150.0}])
    with Sampler(0.05) as s:
        s.mark("measured")
        time.sleep(0.2)
        s.mark("idle")
    row = {"tr_id": "t", "run_id": "m_r00_a1", "attempt": 1, "model": "m:1b", **energy.run_energy(s.rows(), 10)}
    tele = s.rows(tr_id="t", run_id="m_r00_a1", attempt=1, model="m:1b")
    store.write_run(tmp_path, row, [], Manifest(), telemetry_rows=tele)
    assert (tmp_path / "telemetry" / "model_slug=m_1b" / "m_r00_a1.parquet").is_file()
    back = store.read_frame(tmp_path, "telemetry")
    assert len(back) == len(tele) and set(back["kind"]) == {"single"}
    assert back["gpu_index"].isna().sum() == s.n_samples  # one host row per tick
    # the energy recomputed from the stored table is the run row's
    again = energy.run_energy(back.to_dict("records"), 10)
    assert again["energy_j"] == pytest.approx(row["energy_j"])
    runs = store.read_frame(tmp_path, "runs")
    assert runs.loc[0, "energy_j"] == pytest.approx(row["energy_j"])


# --- a real run: telemetry written beside it, aligned to its window ----------------------------


def test_tr_matrix_writes_telemetry_aligned_to_each_run(prefect_api, tmp_path, free_ports):
    from flows.tr import tr
    from test_flow import tiny_spec

    port = free_ports(1)[0]
    interval = 0.2
    spec = tiny_spec("teletest", port, grid={"num_ctx": [512]},
                     telemetry={"interval_s": interval, "price_per_kwh": 0.3})
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "teletest"
    runs = store.read_frame(root, "runs").set_index("run_id")
    tele = store.read_frame(root, "telemetry")
    assert len(runs) == 2
    assert {p.stem for p in (root / "telemetry").rglob("*.parquet")} == set(runs.index)
    assert set(tele["kind"]) == {"single"} and set(tele["model"]) == {"smollm2:135m"}
    no_gpu = vram.gpu_free_mib() is None
    slack = pd.Timedelta(seconds=interval)
    for run_id, run in runs.iterrows():
        t = tele[tele["run_id"] == run_id]
        host = t[t["gpu_index"].isna()]
        end = run["started_at"] + pd.Timedelta(seconds=run["wall_s"])
        assert t["t"].min() >= run["started_at"] - slack and t["t"].max() <= end + slack
        # the measured window lies inside the run's (its opening mark is sampled just before the
        # run's clock starts, so that sampling never adds to wall_s)
        measured = host[host["phase"] == "measured"]
        assert len(measured) >= 1
        assert measured["t"].min() >= run["started_at"] - slack and measured["t"].max() <= end
        assert (host["server_rss_mib"] > 0).all()
        assert 0 < run["energy_window_s"] <= run["wall_s"] + 0.05
        assert run["server_rss_mib_max"] > 0 and run["cpu_pct_mean"] >= 0
        if no_gpu:
            assert run["telemetry_note"].startswith("no GPU visible: GPU metrics unavailable")
            assert run["energy_j"] != run["energy_j"] and run["tokens_per_dollar"] != run["tokens_per_dollar"]  # NaN
        else:
            assert run["energy_j"] > 0 and run["tokens_per_dollar"] > 0
    # the first run of the cell warms up, the second does not
    phases = tele.groupby("run_id")["phase"].agg(set)
    first, second = sorted(runs.index, key=lambda r: runs.loc[r, "run_index"])
    assert "warmup" in phases[first] and "warmup" not in phases[second]
    assert {"idle", "measured"} <= phases[second]


def test_spec_telemetry_section_and_what_it_leads_to(fake_nvml):
    from trbench.engines.external import ExternalInstance
    from trbench.config.spec import SpecError, parse_spec

    fake_nvml(init_error="Driver Not Loaded")
    spec = parse_spec({"tr_id": "t", "models": ["m"], "telemetry": {"interval_s": 0.25, "price_per_kwh": 0.3}})
    t = spec.telemetry
    assert t.enabled and t.interval_s == 0.25 and t.price_per_kwh == 0.3 and t.price_per_gpu_hour is None
    assert parse_spec({"tr_id": "t", "models": ["m"]}).telemetry.interval_s == 0.5
    for bad in ({"interval_s": 0}, {"price_per_kwh": -1}, {"price_per_gpu_hour": 0}, {"gpu_indices": [-1]},
                {"rate": 1}):
        with pytest.raises(SpecError, match="telemetry"):
            parse_spec({"tr_id": "t", "models": ["m"], "telemetry": bad})
    with pytest.raises(SpecError, match=r"allowed: enabled, interval_s, gpu_indices, price_per_kwh, price_per_gpu_hour"):
        parse_spec({"tr_id": "t", "models": ["m"], "telemetry": {"rate": 1}})
    # an external server is no local process: said, not guessed
    sampler = energy.sampler_for(spec.telemetry, [ExternalInstance("external-0", "http://127.0.0.1:1", "openai")])
    assert sampler.pids == [] and sampler.interval_s == 0.25
    with sampler:
        sampler.mark("measured")
        time.sleep(0.05)
        sampler.mark("idle")
    row = {"tr_id": "t", "run_id": "r", "attempt": 1, "model": "m"}
    rows = energy.finish(sampler, row, 10, spec.telemetry)
    assert rows and all(r["run_id"] == "r" and r["model"] == "m" for r in rows)
    assert row["energy_j"] is None and row["tokens_per_dollar"] is None
    assert "no GPU visible" in row["telemetry_note"] and "no local server process for external-0 (external)" in row["telemetry_note"]
    # telemetry off: no sampler, no rows, and the run says so
    off = parse_spec({"tr_id": "t", "models": ["m"], "telemetry": {"enabled": False}})
    assert energy.sampler_for(off.telemetry, []) is None
    row = {"tr_id": "t", "run_id": "r", "attempt": 1, "model": "m"}
    assert energy.finish(None, row, 10, off.telemetry) is None
    assert row["telemetry_note"].startswith("telemetry off") and row["energy_j"] is None


def test_parallel_lanes_are_named_in_the_telemetry_note(fake_nvml):
    from trbench.config.spec import parse_spec

    fake_nvml(init_error="Driver Not Loaded")
    base = {"tr_id": "t", "models": ["a", "b"]}
    parallel = parse_spec({**base, "execution": {"mode": "parallel", "max_parallel": 2}})
    assert parallel.shared_lanes and parallel.lanes == 2
    assert not parse_spec(base).shared_lanes  # serial
    assert not parse_spec({**base, "models": ["a"], "execution": {"mode": "parallel"}}).shared_lanes  # one lane
    shared = energy.sampler_for(parallel.telemetry, [], parallel.shared_lanes)
    alone = energy.sampler_for(parallel.telemetry, [], False)
    with shared, alone:
        pass
    assert "shared with the other lanes" in shared.note() and "shared" not in (alone.note() or "")
