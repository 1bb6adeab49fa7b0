"""Multi-agent runs: the arithmetic of one run, and the real thing on two embedded llama.cpp servers."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import llama_servers

from flows.tr import tr
from trbench.data import store
from trbench.backends import RawExchange
from trbench.run.multi import AgentRun, AgentSlot, MultiRunPlan, multi_run_row
from trbench.config.spec import OptionSet, parse_spec

SPEC = parse_spec({"tr_id": "ma", "models": ["m"], "single_agent": False,
                   "multi_agent": {"contention": {"throughput_drop_pct": 25, "ttft_factor": 3}}})


def exchange(t0_ns: int, ttft_ms: float, tokens: int, decode_ms: float) -> RawExchange:
    first = t0_ns + int(ttft_ms * 1e6)
    times = [first + int(i * decode_ms / tokens * 1e6) for i in range(tokens)]
    return RawExchange(backend="openai", url="u", model="m", sent_at_unix=0.0, t_send_ns=t0_ns, t_end_ns=times[-1] + 1000,
                       token_times_ns=times, token_kinds=["content"] * tokens, text="x" * tokens, output_tokens=tokens,
                       server_decode_tokens=tokens, server_decode_ms=decode_ms)


def agent(role: str, phase: str, start_s: float, wall_s: float, ttft_ms: float, tps: float) -> AgentRun:
    t0 = int(start_s * 1e9)
    tokens = 20
    decode_ms = (tokens - 1) / tps * 1000  # the first token comes out of prefill: n - 1 steps at tps
    calls = [("analysis", exchange(t0, ttft_ms, tokens, decode_ms), "analysis prompt"),
             ("report", exchange(t0 + int(wall_s / 2 * 1e9), ttft_ms, tokens, decode_ms), "report prompt")]
    return AgentRun(role=role, phase=phase, calls=calls, t_start_ns=t0, t_end_ns=t0 + int(wall_s * 1e9))


def plan() -> MultiRunPlan:
    slots = [AgentSlot(role=r, instance=f"i{n}", instance_url="u", options=OptionSet(num_ctx=2048))
             for n, r in enumerate(["collector", "insight"])]
    return MultiRunPlan(tr_id="ma", model="m", scenario="chimera_homo", run_index=0, slots=slots, config_hash="h")


def row_for(conc_tps: float, conc_ttft: float) -> dict:
    conc = {"collector": agent("collector", "concurrent", 10.0, 3.0, conc_ttft, conc_tps),
            "insight": agent("insight", "concurrent", 10.5, 4.0, conc_ttft + 50, conc_tps)}
    solo = {"collector": agent("collector", "solo", 20.0, 2.0, 100.0, 100.0),
            "insight": agent("insight", "solo", 22.0, 2.5, 120.0, 100.0)}
    return multi_run_row(SPEC, plan(), conc, solo, [], 0.0, True, "d")


def test_speedup_efficiency_and_deltas_follow_their_definitions():
    row = row_for(conc_tps=90.0, conc_ttft=150.0)
    assert row["concurrent_wall_s"] == pytest.approx(4.5)  # first start 10.0 -> last end 14.5
    assert row["sequential_wall_s"] == pytest.approx(4.5)  # 2.0 + 2.5, measured solo walls
    assert row["speedup"] == pytest.approx(1.0)
    assert row["efficiency_pct"] == pytest.approx(50.0)
    assert row["delta_ttft_ms"] == pytest.approx(50.0, abs=0.01)  # insight minus collector
    assert row["collector_solo_decode_tps"] == pytest.approx(100.0, rel=1e-6)
    assert row["contention"] is False and row["valid"]


@pytest.mark.parametrize("tps, ttft, expected", [(74.0, 150.0, True), (76.0, 150.0, False), (90.0, 301.0, True)])
def test_contention_rule_is_the_stated_one(tps, ttft, expected):
    # solo: 100 tok/s and TTFT 100 ms; rule: more than 25 % slower or more than 3x the TTFT
    row = row_for(conc_tps=tps, conc_ttft=ttft)
    assert row["collector_contended"] is expected
    assert row["contention"] is expected
    assert "more than 25% below its solo run" in row["contention_rule"] and "3x" in row["contention_rule"]


def ma_spec(tr_id: str, ports: list[int], **extra) -> dict:
    return {"tr_id": tr_id, "models": ["smollm2:135m"], "single_agent": False, "ports": ports, "seed": 5,
            "multi_agent": {"scenarios": ["baseline_vs_chimera", "chimera_homo"], "runs": 2, "max_tokens": 16,
                            "chimera": {"num_gpu": 80, "num_ctx": 1024, "temperature": 1.0}}, **extra}


def test_multi_agent_on_two_real_embedded_servers(prefect_api, tmp_path, free_ports):
    ports = free_ports(2)
    state = tr(spec=ma_spec("matest", ports), output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "matest"
    runs = store.read_frame(root, "ma_runs")
    assert sorted(runs["scenario"]) == ["baseline_vs_chimera"] * 2 + ["chimera_homo"] * 2
    assert runs["sequential_wall_s"].gt(0).all() and runs["concurrent_wall_s"].gt(0).all()
    assert (runs["speedup"] - runs["sequential_wall_s"] / runs["concurrent_wall_s"]).abs().max() < 1e-9
    assert (runs["efficiency_pct"] - runs["speedup"] / 2 * 100).abs().max() < 1e-9
    assert set(runs["phase_order"]) == {"concurrent,solo", "solo,concurrent"}
    requests = store.read_frame(root, "ma_requests")
    measured = requests[requests["phase"] != "warmup"]
    # each agent: two calls concurrently and two alone, on its own instance, with real tokens
    assert (measured.groupby(["run_id", "agent", "phase"]).size() == 2).all()
    assert set(requests.loc[requests["agent"] == "collector", "instance_url"]) == {f"http://127.0.0.1:{ports[0]}"}
    assert set(requests.loc[requests["agent"] == "insight", "instance_url"]) == {f"http://127.0.0.1:{ports[1]}"}
    assert (measured["output_tokens"] > 0).all()
    # baseline_vs_chimera: the collector on the embedded defaults, the insight on the chimera options
    base = measured[measured["scenario"] == "baseline_vs_chimera"]
    assert set(base.loc[base["agent"] == "collector", "num_ctx"]) == {4096}
    assert set(base.loc[base["agent"] == "insight", "num_ctx"]) == {1024}
    # warm-up: each agent's whole workflow, twice, before run 0 of each scenario
    warm = requests[requests["phase"] == "warmup"]
    assert (warm.groupby(["run_id", "agent", "call"]).size() == 2).all() and set(warm["call"]) == {"analysis", "report"}
    assert set(warm["run_index"]) == {0}
    # so run 0 meets the prompt cache the later runs meet: its follow-up (report) prompt is cached
    # too, not only its first one (a single cold round answers differently: a new report prompt)
    first = measured[measured["run_index"] == 0]
    assert (first["cached_tokens"] >= first["prompt_tokens"] - 16).all(), first[["call", "cached_tokens", "prompt_tokens"]]
    # telemetry beside each run: both servers' processes; the measured window is the concurrent
    # and solo phases together, warm-ups outside it
    tele = store.read_frame(root, "telemetry")
    assert set(tele["run_id"]) == set(runs["run_id"]) and set(tele["kind"]) == {"multi"}
    assert {"warmup", "concurrent", "solo", "idle"} <= set(tele["phase"])
    assert (tele.loc[tele["gpu_index"].isna(), "server_rss_mib"] > 0).all()
    assert (runs["energy_window_s"] >= runs["concurrent_wall_s"] + runs["sequential_wall_s"] - 0.01).all()
    assert runs["server_rss_mib_max"].gt(0).all()
    report = (root / "report" / "matest.md").read_text()
    appendix = (root / "report" / "matest-appendix.md").read_text()  # the definitions are the appendix's
    assert "## Multi-agent results" in report and "speedup / n_agents x 100" in appendix
    assert not llama_servers(ports[0]) and not llama_servers(ports[1])


def test_parallel_mode_measures_models_at_once_on_their_own_instances(prefect_api, tmp_path, free_ports):
    ports = free_ports(2)
    spec = {"tr_id": "par", "models": ["smollm2:135m", "gemma3:270m"], "ports": ports, "runs": 3,
            "requests_per_run": 3, "max_tokens": 32, "execution": {"mode": "parallel", "max_parallel": 2}}
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    runs = store.read_frame(tmp_path / "par", "runs")
    assert runs.groupby("model")["instance_url"].nunique().eq(1).all()
    assert runs["instance_url"].nunique() == 2  # one instance per model
    windows = runs.assign(end=runs["started_at"] + pd.to_timedelta(runs["wall_s"], unit="s")).groupby("model").agg(
        start=("started_at", "min"), end=("end", "max"))
    a, b = windows.iloc[0], windows.iloc[1]
    assert a["start"] < b["end"] and b["start"] < a["end"]  # the two models were measured at the same time
    assert not llama_servers(ports[0]) and not llama_servers(ports[1])
