"""TTFT on a server that reports no cache counts (Ollama before prompt_eval_cached_count): each
measured request is kept by the cache state it asked for, labelled as not verified, so a cold and
a cached prefill are never pooled into one figure, in any table, finding, winner row, regression
check or outlier flag. Against a FAKE Ollama server (tests/fakes/fake_ollama.py), without the
count and with it."""

from __future__ import annotations

import pytest

from flows.tr import tr
from tests.fakes.fake_ollama import FakeModel, FakeOllama
from trbench.data import store
from trbench.data.rows import CACHE_STATES, ttft_state
from trbench.measure.metrics import cache_state
from trbench.measure.outliers import read_flags
from trbench.report.build import build_report, compare_tr
from trbench.report.findings import build_findings

MODELS = ["alpha:1b", "beta:1b"]
LONG = " ".join(f"w{i}" for i in range(120))  # a long prompt: a cached prefill is visibly shorter


def _spec(url: str) -> dict:
    return {"tr_id": "asked", "provider": "external", "backend": "ollama", "urls": [url], "models": MODELS,
            "grid": {"num_gpu": [99], "num_ctx": [1024]}, "runs": 3, "requests_per_run": 2, "max_tokens": 4,
            "ttft": "both"}


@pytest.mark.parametrize("asked, counts, state", [
    ("cold", None, "cold_asked"), ("cached", None, "cached_asked"), (None, None, "unknown"),
    ("cached", 0, "cold"),  # the server's own count wins over what was asked
    ("cold", 199, "cached"),
])
def test_the_state_is_the_servers_count_else_what_was_asked(asked, counts, state):
    assert cache_state(200, counts, asked) == state


def test_ttft_state_names_the_longest_state_of_a_field():
    assert ttft_state("ttft_cold_asked_p50_ms") == "cold_asked"
    assert ttft_state("ttft_cold_p50_ms") == "cold"
    assert ttft_state("ttft_cached_asked_ms_p50") == "cached_asked"
    assert ttft_state("decode_tps_p50") is None


@pytest.fixture(scope="module")
def tr_without_counts(tmp_path_factory, prefect_api):
    out = tmp_path_factory.mktemp("asked")
    models = {m: FakeModel(prefill_delay_s=0.2) for m in MODELS}
    with FakeOllama(models, reports_cached=False) as server:
        state = tr(spec=_spec(server.url), output_dir=str(out), return_state=True)
    assert state.is_completed(), state.message
    return out / "asked"


def test_every_measured_request_is_kept_by_what_it_asked_for(tr_without_counts):
    reqs = store.read_frame(tr_without_counts, "requests")
    measured = reqs[~reqs["is_warmup"]]
    assert measured["cached_tokens"].isna().all()  # the server said nothing of its cache
    assert (measured["cache_state"] == measured["cache_target"] + "_asked").all()
    assert set(measured["cache_state"]) == {"cold_asked", "cached_asked"}


def test_run_rows_hold_one_ttft_per_asked_state_and_none_pooled(tr_without_counts):
    runs = store.read_frame(tr_without_counts, "runs")
    assert runs["valid"].all()
    assert (runs["n_cold_asked"] == 2).all() and (runs["n_cached_asked"] == 2).all()
    assert runs["ttft_unknown_ms_p50"].isna().all() and runs["n_unknown"].fillna(0).eq(0).all()
    # the fake evaluates only the uncached part of a prompt: the asked-cold figure is the slower one
    assert (runs["ttft_cold_asked_ms_p50"] > runs["ttft_cached_asked_ms_p50"]).all()


def test_report_tables_findings_and_winners_keep_the_asked_states_apart(tr_without_counts):
    data = build_report(tr_without_counts)
    assert data.cache.states == ["cold_asked", "cached_asked"] and data.cache.unverified
    for cell in data.cells:
        assert cell.ttft_unknown_n == 0 and cell.ttft_cold_asked_n == 6 and cell.ttft_cached_asked_n == 6
    scenarios = {w.scenario for w in data.winners}
    assert {"single-agent TTFT cold (asked, unverified)", "single-agent TTFT cached (asked, unverified)"} <= scenarios
    assert not any("unknown" in s for s in scenarios)
    report = (tr_without_counts / "report" / "asked.md").read_text()
    md = (tr_without_counts / "report" / "asked-appendix.md").read_text()  # the tables per cache state
    assert "TTFT cold (asked, unverified) p50 ms" in md and "TTFT cached (asked, unverified) p50 ms" in md
    assert "TTFT unknown" not in md and "TTFT unknown" not in report
    assert "no cache count (kept as asked, unverified)" in md
    assert "A request's cache state comes from the server's own counts (cached / prompt tokens) wherever" in md
    cache = [s for s in build_findings(data).key if "KV cache" in s]
    assert len(cache) == 1 and "(as asked; the server reports no cache counts)" in cache[0]


def test_outlier_flags_and_regressions_compare_each_asked_state_alone(tr_without_counts):
    flags = read_flags(tr_without_counts)
    ttft = set(flags.loc[flags["metric"].str.startswith("ttft_"), "metric"])
    assert ttft == {"ttft_cold_asked_ms_p50", "ttft_cached_asked_ms_p50"}
    result = compare_tr(tr_without_counts, tr_without_counts)
    metrics = {c.metric for c in result.comparisons}
    assert {"TTFT cold (asked, unverified) p50 ms", "TTFT cached (asked, unverified) p50 ms"} <= metrics
    assert not any("unknown" in m for m in metrics)


def test_a_server_that_counts_its_cache_gets_verified_states(prefect_api, tmp_path):
    models = {m: FakeModel(prefill_delay_s=0.05) for m in MODELS[:1]}
    with FakeOllama(models, reports_cached=True) as server:
        spec = {**_spec(server.url), "models": MODELS[:1], "runs": 1}
        state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    reqs = store.read_frame(tmp_path / "asked", "requests")
    measured = reqs[~reqs["is_warmup"]]
    assert set(measured["cache_state"]) == {"cold", "cached"}
    assert (measured["cache_state"] == measured["cache_target"]).all()
    assert not any(st.endswith("_asked") for st in build_report(tmp_path / "asked").cache.states)


def test_cache_states_are_declared_once():
    assert CACHE_STATES == ("cold", "partial", "cached", "cold_asked", "cached_asked", "unknown")
