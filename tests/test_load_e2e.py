"""Load steps against a REAL llama.cpp server (the embedded engine, bundled SmolLM2, one thread, one
slot), through the real AsyncWireClient: at concurrency 1 the figures agree with the single-agent
path on the same cell; at concurrency 3 against one slot the wait shows as queueing, not as prefill."""

from __future__ import annotations

import statistics

import pytest
from conftest import llama_metrics

from trbench.backends import make_client
from trbench.config.load_section import LoadStep
from trbench.config.prompts import load_prompts
from trbench.config.spec import parse_spec
from trbench.engines.embedded import EmbeddedInstance
from trbench.run import load_step as runner
from trbench.run.single import RunPlan, execute_run
from tests import test_openai_client as openai_tests

pytestmark = pytest.mark.integration

SPEC = parse_spec({
    "tr_id": "load-e2e", "models": ["smollm2:135m"], "grid": {"num_ctx": [1024], "temperature": [0.0]},
    "max_tokens": 16, "seed": 5, "ttft": "cold", "requests_per_run": 6, "warmup_requests": 1,
    "load": {"concurrency": [1, 3], "requests": 6, "warmup_requests": 1},
})
CELL = SPEC.cells()[0]
PROMPTS = load_prompts(SPEC.prompts)


assert CELL == openai_tests.CELL
instance = openai_tests.instance  # its real llama.cpp server, a fixture: one thread, one slot, this cell


def _step(instance: EmbeddedInstance, concurrency: int, index: int) -> tuple[dict, list[dict]]:
    step = LoadStep(label=f"c{concurrency}", mode="concurrency", concurrency=concurrency)
    plan = runner.StepPlan(tr_id=SPEC.tr_id, cell=CELL, step=step, step_index=index, instance=instance.name,
                           instance_url=instance.url)
    return runner.execute_step(SPEC, plan, runner.wire_client(SPEC), PROMPTS, "digest")


SERVER_COUNTS: dict[int, dict[str, float]] = {}  # per step: what the server counted during it


@pytest.fixture(scope="module")
def steps(instance: EmbeddedInstance) -> dict[int, tuple[dict, list[dict]]]:
    out = {}
    for i, n in enumerate((1, 3)):
        before = llama_metrics(instance.url)
        out[n] = _step(instance, n, i)
        after = llama_metrics(instance.url)
        SERVER_COUNTS[n] = {k: after[k] - before.get(k, 0.0) for k in after}
    return out


# Some requests go out on a keep-alive connection llama.cpp has already closed ("Server disconnected
# without sending a response": 1 to 5 of 30 sequential requests here before the clients sent such a
# request once more on a new connection, tests/test_closed_keepalive.py). None may be lost now.
_CLOSED_KEEPALIVE = "Server disconnected without sending a response"


def _lost(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == "error" and _CLOSED_KEEPALIVE in (r["error_message"] or "")]


def test_every_request_of_a_step_is_recorded_and_measured(steps):
    for n, (row, rows) in steps.items():
        assert row["valid"], row["invalid_reason"]
        lost = [r for r in _lost(rows) if not r["is_warmup"]]
        assert (row["n_requests"], row["n_warmup"], row["n_ok"] + len(lost), row["n_errors"]) == (6, 1, 6, len(lost))
        assert row["n_ok"] >= 3
        ok = [r for r in rows if not r["is_warmup"] and r["status"] == "ok"]
        assert all(r["prefill_ms"] and r["ttft_ms"] and r["output_tokens"] for r in ok)
        assert row["output_tps"] > 0 and row["request_rps"] > 0
        assert row["ttft_ms_p50"] <= row["ttft_ms_p99"] and row["e2e_ms_p50"] <= row["e2e_ms_p99"]


def test_every_token_the_server_counted_is_in_the_step(steps):
    # llama.cpp's own counters over the step against the step's rows (warm-ups included: the server
    # answered them too): no request lost, none counted twice, on one stream and on three
    for n, (_, rows) in steps.items():
        assert sum(r["output_tokens"] for r in rows) == SERVER_COUNTS[n]["tokens_predicted_total"] > 0, n
        assert sum(r["prompt_tokens"] - (r["cached_tokens"] or 0) for r in rows) == SERVER_COUNTS[n]["prompt_tokens_total"], n


def test_every_output_is_max_tokens_long_by_default(steps):
    for n, (row, rows) in steps.items():
        ok = [r for r in rows if r["status"] == "ok" and not r["is_warmup"]]
        assert row["ignore_eos"] and row["n_ended_early"] == 0, n
        assert {r["output_tokens"] for r in ok} == {SPEC.max_tokens}, n
        assert row["prefill_tps_p50"] > 0 and row["prefill_tps_client_p50"] < row["prefill_tps_p50"], n


def test_concurrency_one_agrees_with_the_single_agent_path(instance, steps):
    plan = RunPlan(tr_id=SPEC.tr_id, cell=CELL, cell_hash="h", run_index=0, instance=instance.name,
                   instance_url=instance.url)
    client = make_client(SPEC.backend, instance.url, SPEC.timeout_s, SPEC.stall_timeout_s)
    try:
        single = execute_run(SPEC, plan, client, PROMPTS, None, "digest", warmups=1)
    finally:
        client.close()
    ok = [r for r in single.request_rows if not r["is_warmup"] and r["status"] == "ok"]
    load = [r for r in steps[1][1] if not r["is_warmup"] and r["status"] == "ok"]
    # the same prompts, each cold, at temperature 0: the same answers; TTFT, time per token and prefill
    # within run-to-run noise (on this shared 2-core machine, single requests wander up to 2x)
    by_prompt = {r["prompt_id"]: r["output_tokens"] for r in ok}
    assert all(r["output_tokens"] == by_prompt[r["prompt_id"]] for r in load if r["prompt_id"] in by_prompt)
    for name in ("ttft_ms", "tpot_ms", "prefill_ms", "decode_tps"):
        a, b = statistics.median(r[name] for r in load), statistics.median(r[name] for r in ok)
        assert 0.5 < a / b < 2.0, (name, a, b)
    # the server's speed wanders with the machine's load between the two runs (hence the factor 2 above);
    # what each client adds to the server's own prefill (sending, stamping) must agree within a few ms
    added = [statistics.median(r["ttft_ms"] - r["prefill_ms"] for r in rows) for rows in (load, ok)]
    assert abs(added[0] - added[1]) < 15.0, added
    # and each path's client view agrees with its own server's decode time alike
    for rows in (load, ok):
        assert statistics.median(r["tpot_ms"] * r["decode_tps"] / 1000 for r in rows) == pytest.approx(1.0, rel=0.25)
    # one request at a time: nearly all of TTFT is the server's own prefill
    assert steps[1][0]["queue_ms_p50"] < 0.5 * steps[1][0]["ttft_ms_p50"]


def test_three_streams_on_one_slot_queue_rather_than_prefill_slower(steps):
    one, three = steps[1][0], steps[3][0]
    # each request waits for the ones ahead of it on the single slot: client TTFT grows by about a
    # request's time, the server's prefill of the same prompts does not
    assert three["queue_ms_p50"] > 0.5 * one["e2e_ms_p50"]
    assert three["queue_ms_p50"] > 3 * one["queue_ms_p50"]
    assert three["prefill_ms_p50"] < 2 * one["prefill_ms_p50"]
    assert three["queue_ms_p50"] > three["prefill_ms_p50"]


def test_no_request_is_lost_to_a_closed_keepalive_connection(steps):
    assert not [r for _, rows in steps.values() for r in _lost(rows)]
