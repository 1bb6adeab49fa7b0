"""tr on load specs on the Ollama providers, end to end on a real Prefect server, against FAKES of what cannot
run here: a fake `ollama` command (tests/fakes/bin/ollama, whose `serve` answers the fake Ollama HTTP
API of tests/fakes/fake_ollama.py) and a fake Docker engine (tests/fakes/fake_docker.py) that starts a
fake Ollama per container. The fake engine is kept here because it lets a test configure and look inside
the Ollama of each container (its models' load delays and out-of-memory ladder; what it was sent, how many
requests it ran at once); the provider on a REAL Docker engine is tests/test_ollama_docker_engine.py.

The fake Ollama queues as Ollama's docs/faq.md ("How does Ollama handle concurrent requests?") and
envconfig say: each model works on OLLAMA_NUM_PARALLEL requests at once, OLLAMA_MAX_QUEUE more wait,
and "the server will return 503 when the queue is full" (server/sched.go ErrMaxQueue, HTTP 503
{"error": "server busy, please try again.  maximum pending requests exceeded"}). With num_parallel 2
and max_queue 2, a step of 6 streams has two answered at once, two waiting, and the rest refused.
(A queue of 2 also holds a 2-stream step whose next requests arrive before the server has let go of
their last ones, so only the 6-stream step can be refused.)

Extended for these tests, after Ollama's docs and source: the fake (re)loads a model only when it is not
loaded with the request's num_ctx (server/sched.go needsReload; before, every request paid the load), and a
load without a prompt (docs/api.md "Load a model") schedules with the request's options, out of memory
as a prompt's load is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psutil
import pytest

from conftest import free_port_in

from flows.tr import tr
from tests.fakes.fake_docker import FakeDocker
from tests.fakes.fake_ollama import DEFAULT_MODEL, MAX_QUEUE_MESSAGE, FakeModel
from trbench.data import store
from trbench.prose import count

FAKE_BIN = Path(__file__).resolve().parent / "fakes" / "bin"
NUM_PARALLEL, MAX_QUEUE = 2, 2
STEPS = [1, 2, 6]  # the last one more than NUM_PARALLEL + MAX_QUEUE streams: some requests are refused


def port_in_range() -> int:
    """A free port of this test file's range (shared machine: each engineer has one)."""
    port = free_port_in(18500, 18600)
    assert port is not None, "no free port in 18500-18599"
    return port


def load_spec(tr_id: str, provider: str, **server) -> dict:
    return {"tr_id": tr_id, "provider": provider, "backend": "ollama", "models": [DEFAULT_MODEL],
            "single_agent": False, "grid": {"num_ctx": [512]}, "max_tokens": 8, "seed": 1, "load_timeout_s": 20,
            "server": {"ports": [port_in_range()], "num_parallel": NUM_PARALLEL, "max_queue": MAX_QUEUE, **server},
            "load": {"concurrency": STEPS, "requests": 10, "warmup_requests": 1, "slo": {"ttft_ms": 60_000},
                     "embeddings": {"batch_sizes": [2], "requests": 3, "warmup": 1}}}


def check_load_tr(root: Path, provider: str, state) -> None:
    """Every step a task, written with the provider and backend; the refused requests recorded as such."""
    assert state.is_completed(), state.message
    assert f"{len(STEPS)} of {count(len(STEPS), 'load step')} valid, 1 of 1 embeddings step" in state.message
    steps = store.read_frame(root, "load_steps").sort_values("step_index")
    requests = store.read_frame(root, "load_requests")
    assert steps["step_label"].tolist() == [f"c{n}" for n in STEPS]
    for frame in (steps, requests):
        assert set(frame["provider"]) == {provider} and set(frame["backend"]) == {"ollama"}
        assert set(frame["instance"]) == {f"{provider}-0"}
    # the server's parallelism is the step's: a baseline at another OLLAMA_NUM_PARALLEL is another step
    assert (steps["slots"] == NUM_PARALLEL).all() and (steps["max_queue"] == MAX_QUEUE).all()
    assert (steps["n_requests"] == 10).all() and (steps["n_warmup"] == 1).all()

    ok = requests[requests["status"] == "ok"]
    assert (ok["output_tokens"] == 8).all() and ok["ttft_ms"].notna().all()  # num_predict 8 over NDJSON
    assert ok["prefill_ms"].notna().all()  # the server's own prefill_eval_duration: queueing is computed
    errors = requests[requests["status"] != "ok"]
    # within num_parallel + max_queue nothing is refused; past it, 503 with Ollama's message, nothing streamed
    assert set(errors["concurrency"]) == {STEPS[-1]}
    assert len(errors) >= STEPS[-1] - NUM_PARALLEL - MAX_QUEUE
    assert (errors["error_kind"] == "http_5xx").all() and (errors["http_status"] == 503).all()
    assert errors["error_message"].str.contains(MAX_QUEUE_MESSAGE, regex=False).all()
    assert errors["ttft_ms"].isna().all() and (errors["output_tokens"].fillna(0) == 0).all()

    for _, step in steps.iterrows():
        mine = requests[(requests["run_id"] == step["run_id"]) & ~requests["is_warmup"]]
        refused = int((mine["status"] != "ok").sum())
        assert step["n_errors"] == refused and step["n_ok"] == len(mine) - refused
        assert step["error_rate_pct"] == pytest.approx(refused / len(mine) * 100)
        assert list(step["error_kinds"]) == ([{"kind": "http_5xx", "count": refused}] if refused else [])
        # goodput counts only the ok ones (every ok request meets the generous SLO)
        assert step["n_good"] == step["n_ok"] and step["goodput_rps"] == pytest.approx(step["request_rps"])
    busy = steps.iloc[-1]
    assert busy["n_errors"] > 0 and busy["n_ok"] > 0 and busy["valid"]
    assert busy["goodput_rps"] < busy["offered_rps"]

    manifest = store.read_manifest(next((root / "load_steps").rglob("*.parquet")))
    (inst,) = manifest.instances
    assert inst.concurrency == {"num_parallel": NUM_PARALLEL, "max_queue": MAX_QUEUE}
    md = (root / "report" / f"{root.name}.md").read_text()
    assert "### Embeddings" in md.split("## Load", 1)[1]
    load = (root / "report" / f"{root.name}-appendix.md").read_text().split("## Load tables", 1)[1]  # per step
    assert f"| c{STEPS[-1]} |" in load and "http_5xx" in load
    emb = store.read_frame(root, "emb_steps")  # Ollama's /api/embed, after the load steps
    assert emb["provider"].tolist() == [provider] and emb["n_ok"].tolist() == [3]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    assert sorted(r.name for r in runs if r.name.startswith("load ")) == sorted(f"load {i}" for i in steps["run_id"])


def test_fake_ollama_cli_tr_load_queues_refuses_past_the_queue_and_leaves_no_process(prefect_api, tmp_path,
                                                                                        monkeypatch):
    records = tmp_path / "records"
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OLLAMA_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_OLLAMA_RECORD_DIR", str(records))
    monkeypatch.setenv("FAKE_OLLAMA_RUNNER", "1")  # a child in its group, as `ollama serve` starts runners
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", "1000")  # a user's own setting: the spec's wins
    spec = load_spec("loadproc", "ollama-process")
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    check_load_tr(tmp_path / "loadproc", "ollama-process", state)
    (record,) = [json.loads(p.read_text()) for p in records.glob("serve-*.json")]
    assert record["env"]["OLLAMA_NUM_PARALLEL"] == str(NUM_PARALLEL)
    assert record["env"]["OLLAMA_MAX_QUEUE"] == str(MAX_QUEUE)
    assert record["env"]["OLLAMA_HOST"] == f"127.0.0.1:{spec['server']['ports'][0]}"
    left = [pid for pid in (record["pid"], record["runner_pid"]) if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not left, "the flow left the fake `ollama serve` (or its runner) running"


class KeptFakeDocker(FakeDocker):
    """FakeDocker that keeps each container's fake Ollama after it stops, to look at what it served."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.served = []

    def _start(self, c):
        answer = super()._start(c)
        self.served += c.ollama
        return answer


def test_fake_docker_tr_load_queues_refuses_past_the_queue_and_removes_its_container(prefect_api, tmp_path,
                                                                                       monkeypatch):
    with KeptFakeDocker(images=["ollama/ollama:latest"]) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
        state = tr(spec=load_spec("loaddock", "ollama-docker"), output_dir=str(tmp_path), return_state=True)
        check_load_tr(tmp_path / "loaddock", "ollama-docker", state)
        (body,) = engine.create_bodies
        env = dict(e.split("=", 1) for e in body["Env"])
        assert (env["OLLAMA_NUM_PARALLEL"], env["OLLAMA_MAX_QUEUE"]) == (str(NUM_PARALLEL), str(MAX_QUEUE))
        (inside,) = engine.served
        assert (inside.num_parallel, inside.max_queue) == (NUM_PARALLEL, MAX_QUEUE)
        assert inside.max_running_seen[DEFAULT_MODEL] == NUM_PARALLEL  # never more at once than it was told
        chats = inside.bodies("/api/chat")
        assert chats and all(b["stream"] is not False and b["options"]["num_predict"] == 8 for b in chats)
        assert len(inside.bodies("/api/embed")) == 1 + 3  # the embeddings step: warm-up and measured
        assert engine.wait_until(lambda: not engine.containers)
        assert not any(c.running for c in engine.removed)


LOAD_S = 0.5  # what the fake Ollama takes to (re)load the model: well above a request here (~30 ms)


def test_fake_docker_model_load_is_never_measured_as_a_load_step_request(prefect_api, tmp_path, monkeypatch):
    # Ollama loads a model at its first request, and again when num_ctx changes (server/sched.go
    # needsReload); the embedded engine loads before a cell's steps (prepare). Without warm-ups, the
    # load must not land in the first step's requests (as TTFT, and as queueing) on Ollama either.
    spec = load_spec("loadcold", "ollama-docker")
    spec["grid"] = {"num_ctx": [512, 1024]}  # the second cell reloads the model
    spec["load"] = {"concurrency": [2], "requests": 4, "warmup_requests": 0}
    with KeptFakeDocker(images=["ollama/ollama:latest"],
                        ollama_models=lambda: {DEFAULT_MODEL: FakeModel(load_delay_s=LOAD_S)}) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
        state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
        assert state.is_completed(), state.message
        (inside,) = engine.served
        loads = [c["load_duration"] / 1e9 for c in inside.final_chunks]
    requests = store.read_frame(tmp_path / "loadcold", "load_requests")
    assert len(requests) == 8 and (requests["status"] == "ok").all() and not requests["is_warmup"].any()
    assert sorted(set(requests["num_ctx"])) == [512, 1024]
    assert max(loads) < LOAD_S / 2  # no chat request found the model to (re)load: it was loaded before
    assert (requests["load_ms"] < LOAD_S * 1000 / 2).all()
    assert (requests["queue_ms"] < LOAD_S * 1000 / 2).all()


def test_fake_docker_a_cell_that_does_not_fit_is_recorded_and_the_others_run(prefect_api, tmp_path, monkeypatch):
    # Ollama answers a load that does not fit with HTTP 500 and its message (server/routes.go
    # handleScheduleError), for a load without a prompt as for a chat
    spec = load_spec("loadoom", "ollama-docker")
    spec["grid"] = {"num_gpu": [0, 99], "num_ctx": [512]}
    spec["load"] = {"concurrency": [1], "requests": 2}
    with KeptFakeDocker(images=["ollama/ollama:latest"],
                        ollama_models=lambda: {DEFAULT_MODEL: FakeModel(oom_above_num_gpu=50)}) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
        state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
        (inside,) = engine.served
        chats = inside.bodies("/api/chat")
    assert state.is_completed() and "1 of 2 load steps valid" in state.message, state.message
    steps = store.read_frame(tmp_path / "loadoom", "load_steps").set_index("num_gpu")
    assert steps.loc[0, "valid"] and steps.loc[0, "n_ok"] == 2
    assert not steps.loc[99, "valid"] and steps.loc[99, "n_requests"] == 0
    assert "memory layout cannot be allocated with num_gpu = 99" in steps.loc[99, "invalid_reason"]
    assert {b["options"]["num_gpu"] for b in chats} == {0}  # nothing sent to the cell that did not load
