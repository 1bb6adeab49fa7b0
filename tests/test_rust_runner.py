"""The Rust reference runner (runners/rust, docs/runner-contract.md) against trbench's Python clients.

Servers: the FAKE Ollama server (tests/fakes/fake_ollama.py: Ollama cannot run here), a FAKE
fixed-pace server (tests/fakes/fake_paced.py: the only way to know the true answer times) for
timing and truncated streams, and the REAL llama.cpp server (embedded engine, bundled SmolLM2) for
the OpenAI-compatible wire format. Each case sends the same request through both harnesses and
compares the RawExchange trbench builds from the runner's raw records with its own client's.

Skipped only where cargo is absent; with cargo, the runner is built (offline, Debian's crates) if
`make setup` has not built it yet.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from tests.fakes.fake_ollama import FakeModel, FakeOllama
from tests.fakes.fake_paced import FakePacedServer
from trbench.backends import BACKENDS, ChatRequest, make_client
from trbench.backends.external_runner import (PREVIOUS_PLACEHOLDER, REPO_ROOT, ExternalRunner, ExternalRunnerClient,
                                              RunnerMissing, job, job_request, runner_path, to_exchange)
from trbench.backends.openai import SSE_PREFIX, read_sse_chunk
from trbench.backends.streaming import http_timeout, stream_exchange
from trbench.config.agents import load_agents
from trbench.config.prompts import load_prompts
from trbench.config.spec import Cell, SpecError, parse_spec
from trbench.run.spec_checks import check_spec
from trbench.engines.embedded import EmbeddedInstance
from trbench.measure.metrics import derive
from trbench.config.sections import OptionSet
from trbench.run.multi import AgentSlot, MultiRunPlan, execute_multi_run
from trbench.run.multi_external import runner_phase
from trbench.run.single import RunPlan, execute_run

pytestmark = pytest.mark.rust

SMOL = "smollm2:135m"
PACE_S, FIRST_S, N_PACED = 0.02, 0.03, 26
CRATE = REPO_ROOT / "runners" / "rust"
HI = [{"role": "user", "content": "hi there, how are you"}]


@pytest.fixture(scope="module")
def runner() -> Path:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is absent: the Rust runner cannot be built here (make setup builds it where cargo is)")
    path = runner_path("rust")
    if not path.exists():
        done = subprocess.run(["cargo", "build", "--release", "--offline"], cwd=CRATE, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return path


def both(backend: str, url: str, req: ChatRequest, timeout_s: float = 30.0, stall_s: float | None = 10.0):
    """The same request through the Rust runner and the Python client: (rust, python) RawExchanges."""
    rust = ExternalRunnerClient("rust", backend, url, timeout_s, stall_s)
    py = make_client(backend, url, timeout_s, stall_s)
    try:
        return rust.chat(req), py.chat(req)
    finally:
        rust.close()
        py.close()


# --- FAKE Ollama: NDJSON, counts as received, error kinds -----------------------------------------

def test_fake_ollama_same_exchange_as_python(runner: Path) -> None:
    models = {"m:1b": FakeModel(token_delay_s=0.002, think_tokens=["hmm", " ok"])}
    with FakeOllama(models) as fake:
        rust, py = both("ollama", fake.url, ChatRequest(model="m:1b", messages=HI, max_tokens=50, num_ctx=2048))
        bodies = fake.bodies("/api/chat")
    assert bodies[0] == bodies[1]  # both harnesses sent the identical request
    assert rust.status == py.status == "ok"
    assert (rust.text, rust.reasoning_text, rust.token_kinds) == (py.text, py.reasoning_text, py.token_kinds)
    for field in ("prompt_tokens", "output_tokens", "server_decode_tokens", "finish_reason"):
        assert getattr(rust, field) == getattr(py, field) is not None, field
    # the durations in the final chunk differ per request; they arrive as the server sent them
    assert rust.server_decode_ms > 0 and rust.server_total_ms >= rust.server_decode_ms
    assert rust.t_send_ns < rust.token_times_ns[0] <= rust.token_times_ns[-1] <= rust.t_end_ns
    assert derive(rust).decode_tps_client is not None


@pytest.mark.parametrize(("model", "expected"), [
    (FakeModel(fail="oom"), "oom"),            # HTTP 500 with Ollama's OOM message: trbench's own classifier
    (FakeModel(fail="http_500"), "http_5xx"),
    (FakeModel(fail="mid_stream"), "bad_response"),  # an error line inside the stream
    (FakeModel(stall_after_tokens=2), "stall"),
    (None, "http_4xx"),                        # a model the server does not have: 404
], ids=["oom", "http_5xx", "stream_error", "stall", "http_4xx"])
def test_fake_ollama_error_kinds(runner: Path, model: FakeModel | None, expected: str) -> None:
    with FakeOllama({"m:1b": model} if model else {}) as fake:
        rust, py = both("ollama", fake.url, ChatRequest(model="m:1b", messages=HI, max_tokens=50), stall_s=0.5)
    assert rust.error_kind == py.error_kind == expected
    assert rust.error_message == py.error_message
    assert rust.token_kinds == py.token_kinds  # what arrived before the failure is kept by both


def test_connection_refused_is_connect(runner: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        rust, py = both("openai", url, ChatRequest(model="m", messages=HI, max_tokens=4))
    assert rust.error_kind == py.error_kind == "connect"
    assert url in rust.error_message


def test_whole_request_timeout(runner: Path) -> None:
    # every token on time, the whole answer too slow: timeout, not stall
    with FakePacedServer(pace_s=0.05, first_s=0.01, n_tokens=40) as fake:
        rust, py = both("openai", fake.url, ChatRequest(model="m", messages=HI, max_tokens=40), timeout_s=0.5, stall_s=5)
    assert rust.error_kind == py.error_kind == "timeout"
    assert 0 < len(rust.token_times_ns) < 40


# --- FAKE fixed-pace server: truncated streams and timing agreement ------------------------------

@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_truncated_stream_is_bad_response(runner: Path, backend: str) -> None:
    with FakePacedServer(pace_s=0.002, first_s=0.002, truncate_after=3) as fake:
        rust, py = both(backend, fake.url, ChatRequest(model="m", messages=HI, max_tokens=20))
    assert rust.error_kind == py.error_kind == "bad_response"
    assert rust.text == py.text == "t0 t1 t2 "  # the tokens before the cut are kept
    assert len(rust.token_times_ns) == 3


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_line_not_json_is_bad_response(runner: Path, backend: str) -> None:
    with FakePacedServer(pace_s=0.002, first_s=0.002, garbage_after=2) as fake:
        rust, py = both(backend, fake.url, ChatRequest(model="m", messages=HI, max_tokens=20))
    assert rust.error_kind == py.error_kind == "bad_response"
    assert rust.error_message == py.error_message == "not JSON: this is not json"


@pytest.fixture(scope="module")
def paced_url() -> Iterator[str]:
    """The FAKE fixed-pace server in a process of its own: no GIL shared with the Python client measured."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.fake_paced", "--pace-s", str(PACE_S), "--first-s",
                             str(FIRST_S), "--n-tokens", str(N_PACED)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO_ROOT)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_timing_agrees_with_python_at_a_known_pace(runner: Path, paced_url: str, backend: str) -> None:
    """Both harnesses measure the fake's known pace within 1 %, and their TTFTs agree within 1 ms once
    each one's own request-sending time is taken out (medians of interleaved requests on warm
    connections). The fake logs, on the shared CLOCK_MONOTONIC, when it read each request and wrote
    its first token: the sending time is what the harness overhead table reports, not a disagreement."""
    rust, py = ExternalRunnerClient("rust", backend, paced_url, 30, 10), make_client(backend, paced_url, 30, 10)
    req = ChatRequest(model="m", messages=HI, max_tokens=N_PACED)
    try:
        rust.chat(req), py.chat(req)  # connections opened, not counted
        n_before = len(httpx.get(f"{paced_url}/log").json())
        exchanges = [ex for _ in range(11) for ex in (rust.chat(req), py.chat(req))]
        log = httpx.get(f"{paced_url}/log").json()[n_before:]
    finally:
        rust.close()
        py.close()
    first_token_ms: dict[str, list[float]] = {}
    for name, i in (("rust", 0), ("python", 1)):
        pairs = list(zip(exchanges, log))[i::2]
        ms = [derive(ex) for ex, _ in pairs]
        assert all(m.status == "ok" and m.n_chunks == N_PACED for m in ms), name
        pace_ms = statistics.median(1000 / m.decode_tps_client for m in ms)
        assert pace_ms == pytest.approx(PACE_S * 1000, rel=0.01), name
        # TTFT less the time until the server had the request: the server's wait plus the reading of the answer
        first_token_ms[name] = [(ex.token_times_ns[0] - entry["t_recv_ns"]) / 1e6 for ex, entry in pairs]
        assert statistics.median(first_token_ms[name]) == pytest.approx(FIRST_S * 1000, rel=0.1), name
    # neighbours compared (a shared machine's load drifts): the median of the pairwise differences
    differences = [r - p for r, p in zip(first_token_ms["rust"], first_token_ms["python"])]
    assert abs(statistics.median(differences)) < 1.0, first_token_ms


# --- REAL llama.cpp server: the OpenAI-compatible wire format as a real server streams it -------------

@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedInstance]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # one thread: llama.cpp's spin-waiting worker threads crawl when a shared CPU is busy
    inst = EmbeddedInstance("test-rust-runner", "127.0.0.1", port, threads=1,
                            log_dir=tmp_path_factory.mktemp("llamacpp-logs"), load_timeout_s=120)
    try:
        inst.prepare(Cell(model=SMOL, num_gpu=0, num_ctx=1024, temperature=0.0))
        yield inst
    finally:
        inst.stop()


@pytest.mark.parametrize("prompt", [None, "The capital of France is"], ids=["chat", "completion"])
def test_real_llamacpp_same_answer_and_counts(runner: Path, llamacpp: EmbeddedInstance, prompt: str | None) -> None:
    req = ChatRequest(model=SMOL, messages=[{"role": "user", "content": "Name three colours."}], prompt=prompt,
                      max_tokens=12, temperature=0.0, seed=42, cache_prompt=False)
    rust, py = both("openai", llamacpp.url, req, timeout_s=120, stall_s=60)
    assert rust.status == py.status == "ok", (rust.error_message, py.error_message)
    assert rust.text == py.text and rust.text.strip()  # greedy decoding: the same tokens
    for field in ("prompt_tokens", "output_tokens", "server_decode_tokens", "finish_reason"):
        assert getattr(rust, field) == getattr(py, field) is not None, field
    # llama.cpp's own timings arrive in the runner's raw lines and are read by trbench's code
    assert rust.server_prefill_ms > 0 and rust.server_decode_ms > 0 and rust.server_decode_tps_reported > 0
    assert derive(rust).decode_tps is not None


def test_real_llamacpp_rejected_body_is_http_error(runner: Path, llamacpp: EmbeddedInstance) -> None:
    body = {"model": SMOL, "messages": "not a list", "stream": True}  # the server refuses it
    one = job("openai", llamacpp.url, SMOL, 60, 30, requests=[{"id": 0, "path": "/v1/chat/completions", "body": body}])
    r = ExternalRunner([str(runner)])
    try:
        rust = to_exchange("openai", SMOL, next(r.run_job(one)))
    finally:
        r.close()
    with httpx.Client(timeout=http_timeout(60, 30), trust_env=False) as http:
        py = stream_exchange(http, "openai", f"{llamacpp.url}/v1/chat/completions", SMOL, body, read_sse_chunk,
                             SSE_PREFIX, 60, 30)
    assert rust.http_status == py.http_status and rust.http_status >= 400
    assert rust.error_kind == py.error_kind and rust.error_kind in ("http_4xx", "http_5xx")
    assert rust.error_message == py.error_message


def test_single_agent_run_with_the_rust_harness(runner: Path, llamacpp: EmbeddedInstance) -> None:
    """A spec with harness: [rust] runs its cells through the Rust runner: trbench.run.single unchanged,
    every row derived from the runner's raw records."""
    spec = parse_spec({"tr_id": "rs", "models": [SMOL], "max_tokens": 8, "requests_per_run": 2, "seed": 42,
                       "ttft": "both", "grid": {"num_ctx": [1024], "temperature": [0.0]}, "harness": ["rust"]})
    cell = spec.cells()[0]
    plan = RunPlan(tr_id="rs", cell=cell, cell_hash=spec.cell_hash(cell, "p", "rust"), run_index=0, instance="i",
                   instance_url=llamacpp.url, harness="rust")
    client = make_client(spec.backend, llamacpp.url, spec.timeout_s, spec.stall_timeout_s, plan.harness)
    assert isinstance(client, ExternalRunnerClient)
    try:
        result = execute_run(spec, plan, client, load_prompts(REPO_ROOT / spec.prompts), None, "d", 1)
    finally:
        client.close()
    rows = result.request_rows
    assert [r["is_warmup"] for r in rows] == [True, False, False, False, False]
    assert all(r["status"] == "ok" and r["ttft_ms"] > 0 and r["decode_tps"] for r in rows), rows
    assert [r["cache_state"] for r in rows[1:]] == ["cold", "cached", "cold", "cached"]  # llama.cpp's counts, as received
    assert result.run_row["valid"] and result.run_row["harness"] == "rust" and "_rust_" in result.run_row["run_id"]
    # the runner's own CPU time per request (its cpu_ns), a real reading: above zero, below the request's wall time
    assert all(r["harness"] == "rust" and 0 < r["client_cpu_s"] < r["e2e_ms"] / 1000 for r in rows), rows


# --- multi-agent: two agents as tokio tasks on two instances --------------------------------------

def test_agents_run_concurrently_on_two_instances_and_chain_answers(runner: Path) -> None:
    a_model = FakeModel(content_tokens=["alpha", " answer"], token_delay_s=0.05)
    b_model = FakeModel(content_tokens=["beta", " answer"], token_delay_s=0.05)
    with FakeOllama({"m:1b": a_model}) as a, FakeOllama({"m:1b": b_model}) as b:
        def calls(role: str) -> list[dict]:
            out = []
            for i, text in enumerate(["first question", f"go on from: {PREVIOUS_PLACEHOLDER}"]):
                req = ChatRequest(model="m:1b", messages=[{"role": "user", "content": text}], max_tokens=8)
                out.append(job_request("ollama", req, f"{role}-{i}"))
            return out

        agents = [{"role": "collector", "url": a.url, "calls": calls("collector")},
                  {"role": "insight", "url": b.url, "calls": calls("insight")}]
        r = ExternalRunner([str(runner)])
        try:
            records = list(r.run_job(job("ollama", "", "m:1b", 30, 10, agents=agents)))
        finally:
            r.close()
        second_a = a.bodies("/api/chat")[1]["messages"][0]["content"]
        second_b = b.bodies("/api/chat")[1]["messages"][0]["content"]
    assert [x.id for x in records if x.agent == "collector"] == ["collector-0", "collector-1"]
    ex = {x.id: to_exchange("ollama", "m:1b", x) for x in records}
    assert all(e.status == "ok" for e in ex.values())
    assert second_a == "go on from: alpha answer" and second_b == "go on from: beta answer"
    # each agent's first call was on the wire while the other's was: the tasks ran at once
    ca, ib = ex["collector-0"], ex["insight-0"]
    assert ca.t_send_ns < ib.t_end_ns and ib.t_send_ns < ca.t_end_ns
    assert ca.url.startswith(a.url) and ib.url.startswith(b.url)


def test_multi_agent_run_through_the_runners_own_tasks(runner: Path) -> None:
    """execute_multi_run with the Rust harness: the concurrent and solo phases go to the runner as one
    job (its tokio tasks on the two FAKE Ollama instances), each second call fed the agent's first answer."""
    a_model = FakeModel(content_tokens=["alpha", " facts"], token_delay_s=0.03)
    b_model = FakeModel(content_tokens=["beta", " ideas"], token_delay_s=0.03)
    with FakeOllama({"m:1b": a_model}) as a, FakeOllama({"m:1b": b_model}) as b:
        spec = parse_spec({"tr_id": "ma", "provider": "external", "backend": "ollama", "server": {"urls": [a.url, b.url]},
                           "models": ["m:1b"], "ttft": "cached", "harness": ["rust"],
                           "multi_agent": {"scenarios": ["chimera_homo"], "runs": 1, "max_tokens": 8}})
        suite = load_agents(REPO_ROOT / spec.multi_agent.agents)
        slots = [AgentSlot(role="collector", instance="i0", instance_url=a.url, options=OptionSet()),
                 AgentSlot(role="insight", instance="i1", instance_url=b.url, options=OptionSet())]
        plan = MultiRunPlan(tr_id="ma", model="m:1b", scenario="chimera_homo", run_index=0, slots=slots, config_hash="h")
        clients = {s.role: make_client("ollama", s.instance_url, 30, 10, "rust") for s in slots}
        try:
            result = execute_multi_run(spec, plan, suite, clients, 0, "d", phase_runner=runner_phase)
        finally:
            for c in clients.values():
                c.close()
        second_calls = [body["messages"][1]["content"] for body in a.bodies("/api/chat")[1::2]]
    rows = result.request_rows
    assert [(r["phase"], r["agent"], r["call"]) for r in rows] == [
        (phase, role, call) for phase in ("concurrent", "solo") for role in ("collector", "insight")
        for call in ("analysis", "report")]
    assert all(r["status"] == "ok" for r in rows)
    assert all("alpha facts" in text and PREVIOUS_PLACEHOLDER not in text for text in second_calls), second_calls
    assert result.run_row["valid"] and result.run_row["speedup"] > 1.2  # two instances at once: faster than in turn


# --- the spec: harness field, its check, the hash ----------------------------------------------------

def test_spec_asking_for_a_missing_runner_fails_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRBENCH_RUST_RUNNER", str(tmp_path / "nowhere"))
    rust = parse_spec({"tr_id": "x", "models": [SMOL], "harness": ["rust"], "output_dir": str(tmp_path)})
    with pytest.raises(SpecError) as err:
        check_spec(rust, "spec x.yaml")
    line = str(err.value)
    assert "\n" not in line and line.startswith("spec x.yaml: field 'harness': the rust runner ")
    assert "fix: `make setup` with cargo" in line
    # the Python harness needs no runner
    assert check_spec(parse_spec({"tr_id": "x", "models": [SMOL], "output_dir": str(tmp_path)}), "spec x.yaml") is not None


def test_harness_in_the_cell_hash() -> None:
    base = {"tr_id": "x", "models": [SMOL]}
    spec = parse_spec(base)
    cell = spec.cells()[0]
    assert spec.cell_hash(cell, "p") == spec.cell_hash(cell, "p", "python")  # TR runs from before the field stay comparable
    assert spec.cell_hash(cell, "p", "rust") != spec.cell_hash(cell, "p")


# --- what a missing runner says -------------------------------------------------------------------

def test_missing_runner_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRBENCH_RUST_RUNNER", str(tmp_path / "nowhere"))
    with pytest.raises(RunnerMissing, match=r"not built; fix: `make setup` with cargo.*TRBENCH_RUST_RUNNER"):
        ExternalRunnerClient("rust", "openai", "http://127.0.0.1:1")


def test_job_carries_the_python_clients_exact_request() -> None:
    req = ChatRequest(model="m", messages=HI, max_tokens=7, cache_prompt=False, temperature=0.5)
    for backend, client in BACKENDS.items():
        one = job_request(backend, req, 1)
        assert (one["path"], one["body"]) == (client.path(req), client.body(req))
        assert one["request"]["cache_prompt"] is False and one["request"]["max_tokens"] == 7


def test_the_runner_sends_the_key_it_gets_in_its_environment(runner: Path, monkeypatch) -> None:
    """A server that asks for a key (the mock server with one, as vLLM --api-key): the runner sends
    `Authorization: Bearer $TRBENCH_RUNNER_API_KEY`, which trbench sets from server.api_key_env in the
    runner's environment only (not its argv, not a job)."""
    import secrets

    from trbench.engines.mock_server import Pace, serve

    key = f"trbk-{secrets.token_hex(16)}"
    monkeypatch.setenv("TRBENCH_TEST_API_KEY", key)
    server, _ = serve("127.0.0.1", free_port(), Pace(first_token_ms=1, token_ms=0, invalid_every=0), ["m"], api_key=key)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    req = ChatRequest(model="m", messages=HI, max_tokens=4)
    try:
        for api_key_env, status in (("TRBENCH_TEST_API_KEY", 200), (None, 401)):
            client = ExternalRunnerClient("rust", "openai", url, 30, 10, api_key_env)
            try:
                ex = client.chat(req)
                assert key not in " ".join(client.runner.command)
            finally:
                client.close()
            assert ex.http_status == status, ex.error_message
            assert (ex.status == "ok" and ex.text) if status == 200 else ex.error_kind == "http_4xx"
        assert server.refused == 1
    finally:
        server.shutdown()
        server.server_close()
