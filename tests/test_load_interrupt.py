"""Stopping `trbench run SPEC` in the middle of a load step (a spec with a `load:` section), the load
client on uvloop (trbench.backends.event_loop): Ctrl-C in a terminal (SIGINT to the whole process
group, as a shell sends it to its foreground job) and SIGTERM to the group (`kill -- -PGID`; Prefect's
SIGTERM bridge turns it into TerminationSignal during a flow run). The llama.cpp server runs in a
session of its own (engines/embedded.py): trbench stops it.

What load mode promises (tasks/load.py, run.single.Gate): a step is written whole once it has
finished, requests then its step row (the ledger); a step cut short is not written at all, so the
resume measures it again instead of keeping a broken one. So after the stop: trbench exits 130 within
seconds with no server left and no traceback, the finished step is kept whole, the cut one left no
file, one line says what was kept and the command that resumes, and that command runs only the steps
left. The real embedded llama.cpp engine serves the bundled smollm2:135m; no PREFECT_API_URL, so the
CLI starts its temporary Prefect server, as when run by hand.

The in-process tests below pin the event loop part alone (event_loop.run): a stop signal mid-step
cancels every request in flight, closes the client and raises what the signal's handler raised, even
when that handler ran inside a protocol callback (where uvloop would hand the exception to the loop's
exception handler and go on); under the CLI's handler, Python's default one (asyncio.Runner's own) and
Prefect's SIGTERM bridge, on uvloop and on asyncio's loop.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import free_port_in, llama_metrics, llama_servers
from test_stopping import STOP_BOUND_S, cli_env, group_alive, kill_all, start_cli, stop_cli

from trbench.backends import ChatRequest, RawExchange, event_loop
from trbench.config.prompts import PromptSuite
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.run import load_step as runner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TR_ID = "loadstop"
STREAMS = [2, 1, 3]  # three steps: one finished, one cut by the Ctrl-C, one not started
REQUESTS, WARMUP = 8, 1
STEP = "smollm2_135m_gpu0_ctx512_temp0.8_load{:02d}_c{}_a1"
STEP_IDS = [STEP.format(i, n) for i, n in enumerate(STREAMS)]
# noise a stop must not print: Python's and asyncio's (uvloop's) reports of what went wrong at shutdown
NOISE = ("Traceback", "EventsWorker", "Task was destroyed", "exception was never retrieved", "Exception ignored",
         "Unclosed", "unhandled exception")


def port_in_my_range() -> int:
    """A free port among 18400-18499: the ports this test may use on the shared machine."""
    port = free_port_in(18400, 18500)
    if port is None:
        pytest.skip("no free port in 18400-18499")
    return port


def write_spec(tmp_path: Path, port: int) -> Path:
    spec = {"tr_id": TR_ID, "provider": "embedded", "backend": "openai", "server": {"ports": [port], "slots": 2},
            "models": ["smollm2:135m"], "single_agent": False,
            "grid": {"num_gpu": [0], "num_ctx": [512], "temperature": [0.8]}, "max_tokens": 32, "seed": 7,
            "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"),
            "load": {"concurrency": STREAMS, "requests": REQUESTS, "warmup_requests": WARMUP}}
    path = tmp_path / "load.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def wait_mid_step(root: Path, port: int, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Until the first step's file is written, then the second step has had a request answered and
    has another in flight: the Ctrl-C lands in the middle of a step, with requests on the wire."""
    deadline = time.monotonic() + timeout_s
    answered = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"CLI exited early ({proc.returncode})")
        if answered is None:
            if store.finished_run_ids(root, "load"):  # step one done: the server is idle until step two
                answered = llama_metrics(f"http://127.0.0.1:{port}").get("tokens_predicted_total")
        else:
            m = llama_metrics(f"http://127.0.0.1:{port}")
            if m.get("tokens_predicted_total", 0) > answered and m.get("requests_processing", 0) > 0:
                return
        time.sleep(0.02)
    pytest.fail(f"the second load step had no request answered and one in flight within {timeout_s} s")


def load_files(root: Path) -> dict[str, dict[Path, int]]:
    """Every Parquet file of the load tables (read whole: pq.read_table fails on a torn file), with its mtime."""
    files = {}
    for table in ("load_requests", "load_steps"):
        for f in sorted(f for f in (root / table).rglob("*") if f.is_file()):
            assert f.suffix == ".parquet" and not f.name.startswith("."), f"not a finished file: {f}"
            pq.read_table(f)
        files[table] = {f: f.stat().st_mtime_ns for f in (root / table).rglob("*.parquet")}
    return files


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c-group", "sigterm-group"])
def test_a_stop_mid_load_step_keeps_finished_steps_and_resume_runs_only_the_rest(tmp_path, how):
    import uvloop

    assert event_loop.loop_factory() is uvloop.new_event_loop  # the CLI below times its load on uvloop
    port = port_in_my_range()
    spec, out = write_spec(tmp_path, port), tmp_path / "out"
    root, env = out / TR_ID, cli_env(tmp_path)
    cmd = [sys.executable, "-m", "trbench.cli", "run", str(spec), "--output-dir", str(out)]
    proc = start_cli(cmd, env, tmp_path / "stop.log")
    commands, left = stop_cli(proc, lambda: wait_mid_step(root, port, proc), lambda pid: os.killpg(pid, how))
    output = (tmp_path / "stop.log").read_text(errors="replace")
    assert left == [], f"still running after {STOP_BOUND_S} s: {[p.cmdline() for p in left]}\n{output[-3000:]}"
    assert proc.returncode == 130, output[-3000:]
    assert any("trbench.engines.llamacpp_server" in c for c in commands), "no llama.cpp server mid-step?"
    assert llama_servers(port) == []
    assert not [n for n in NOISE if n in output], output[-3000:]

    # the finished step whole (its requests and its row); the cut one left no file, not even a temp file
    files = load_files(root)
    assert [f.stem for f in files["load_steps"]] == STEP_IDS[:1]
    assert [f.stem for f in files["load_requests"]] == STEP_IDS[:1]
    requests = store.read_frame(root, "load_requests")
    assert len(requests) == REQUESTS + WARMUP and (requests["status"] == "ok").all()
    step = store.read_frame(root, "load_steps").iloc[0]
    assert (step["n_requests"], step["n_ok"], bool(step["valid"])) == (REQUESTS, REQUESTS, True)

    lines = output.splitlines()
    assert "summary: 1 run finished, 1 valid, 0 invalid; interrupted" in lines, output[-3000:]
    said = [line for line in lines if "resume with:" in line]
    assert said == [f"interrupted: 1 finished run kept in {root}; resume with: {shlex.join(cmd)}"], output[-3000:]
    if how != signal.SIGINT:
        return  # the resume is the same whatever stopped the run: checked once

    # the command on that line runs the two steps left, not the finished one
    again = start_cli(shlex.split(said[0].split("resume with: ", 1)[1]), env, tmp_path / "resume.log")
    try:
        code = again.wait(timeout=600)
    finally:
        if again.poll() is None or group_alive(again.pid):
            kill_all(again, [])
    resumed = (tmp_path / "resume.log").read_text(errors="replace")
    assert code == 0, resumed[-3000:]
    after = load_files(root)
    assert sorted(f.stem for f in after["load_steps"]) == STEP_IDS
    kept = {f: t for table in files.values() for f, t in table.items()}
    assert {f: after[f.parent.parent.name][f] for f in kept} == kept  # the finished step was not run again
    ran = [line.split(" run ", 1)[1].split(":", 1)[0] for line in resumed.splitlines() if line.startswith("[")]
    assert ran == STEP_IDS[1:], resumed[-3000:]
    assert "summary: 2 runs finished, 2 valid, 0 invalid, 1 already finished before; Completed" in resumed
    requests = store.read_frame(root, "load_requests")
    assert requests.groupby("run_id").size().to_dict() == {s: REQUESTS + WARMUP for s in STEP_IDS}
    assert (requests["status"] == "ok").all()  # the cut step measured again, whole: nothing cancelled kept
    assert llama_servers(port) == []


# --- the event loop alone: a stop signal in the middle of a step, in this process ---

class HangingClient:
    """A client whose requests do not end (no server) until they are cancelled, which it records as
    the real client does (error kind "cancelled"); says when `streams` are in flight. Not stopped
    within `patience_s`, they end as timeouts: a lost signal fails the test instead of hanging it."""

    def __init__(self, streams: int, patience_s: float = 30.0) -> None:
        self.streams = streams
        self.deadline = time.monotonic() + patience_s
        self.in_flight = threading.Event()
        self.started = 0
        self.cancelled: list[RawExchange] = []
        self.closed = False

    async def chat(self, req: ChatRequest) -> RawExchange:
        self.started += 1
        if self.started == self.streams:
            self.in_flight.set()
        t_send = time.perf_counter_ns()
        # no answer, but the loop wakes now and then, as a stream's reads wake it: asyncio's own loop has
        # no wakeup fd, and a signal that lands just before it sleeps in epoll waits for the next event
        try:
            while time.monotonic() < self.deadline:
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled.append(self._cut(req, t_send, "cancelled"))
            raise
        return self._cut(req, t_send, "timeout")

    @staticmethod
    def _cut(req: ChatRequest, t_send: int, kind: str) -> RawExchange:
        return RawExchange(backend="openai", url="http://none", model=req.model, sent_at_unix=time.time(),
                           t_send_ns=t_send, t_end_ns=time.perf_counter_ns(), status="error", error_kind=kind,
                           error_message=kind)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def stop_handler(request):
    """The handler a stop signal meets, as set up by: the CLI (KeyboardInterrupt, later signals then
    ignored), Python's default (asyncio.Runner puts its own in its place: the main task cancelled),
    or Prefect's SIGTERM bridge of a flow run (TerminationSignal); (the signal, what it raises)."""
    from prefect.exceptions import TerminationSignal
    from prefect.utilities.engine import _prefect_sigterm_handler

    from trbench import cli

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if request.param == "cli":
        cli._stop_on_signals()
    elif request.param == "default":
        signal.signal(signal.SIGINT, signal.default_int_handler)
    else:
        signal.signal(signal.SIGTERM, _prefect_sigterm_handler)
    yield (signal.SIGTERM, TerminationSignal) if request.param == "prefect-sigterm" else (signal.SIGINT, KeyboardInterrupt)
    for s, handler in before.items():
        signal.signal(s, handler)


HANDLERS = ["cli", "default", "prefect-sigterm"]


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request, monkeypatch):
    if request.param == "asyncio":
        monkeypatch.setattr(event_loop, "loop_factory", lambda: None)
    return request.param


@pytest.mark.timeout(120)  # a hang fails here, not after the suite's 600 s
@pytest.mark.parametrize("stop_handler", HANDLERS, indirect=True)
def test_a_signal_mid_step_cancels_every_request_in_flight_and_stops_the_step(stop_handler, loop):
    sig, raised = stop_handler
    spec = parse_spec({"tr_id": "lt", "models": ["smollm2:135m"], "seed": 3, "max_tokens": 8,
                       "load": {"concurrency": [3], "requests": 12}})
    plan = runner.StepPlan(tr_id="lt", cell=spec.cells()[0], step=spec.load.fixed_steps()[0], step_index=0,
                           instance="i0", instance_url="http://none")
    prompts = PromptSuite(name="t", prompts=[{"id": "p0", "user": "hello"}])
    client = HangingClient(streams=3)

    def stop() -> None:
        if client.in_flight.wait(timeout=60):
            os.kill(os.getpid(), sig)

    threading.Thread(target=stop, daemon=True).start()
    with pytest.raises(raised):
        runner.execute_step(spec, plan, lambda _b, _u: client, prompts, "digest")
    assert client.started == 3 and client.closed
    assert [ex.error_kind for ex in client.cancelled] == ["cancelled"] * 3


class _Sends(asyncio.Protocol):
    """The server side: one chunk to whoever connects."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"token")  # type: ignore[attr-defined]


class _SignalsOnRead(asyncio.Protocol):
    """The client side: the signal arrives while its read is handled (its handler runs right there),
    as a Ctrl-C mostly does under load, when the main thread is mostly in data_received."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def data_received(self, data: bytes) -> None:
        os.kill(os.getpid(), self.sig)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop_handler", HANDLERS, indirect=True)
def test_a_signal_handled_inside_a_protocol_callback_still_stops_the_run(stop_handler, loop, caplog):
    sig, raised = stop_handler
    unwound = []

    async def main() -> str:
        server = await asyncio.get_running_loop().create_server(_Sends, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.get_running_loop().create_connection(lambda: _SignalsOnRead(sig), "127.0.0.1", port)
            for _ in range(600):  # 30 s: the signal stops it long before (short sleeps: see HangingClient)
                await asyncio.sleep(0.05)
            return "not stopped"
        finally:
            server.close()
            unwound.append(True)

    with pytest.raises(raised):
        event_loop.run(main())
    assert unwound == [True]  # the run was cancelled and unwound, not dropped
    assert "Fatal error" not in caplog.text and "Exception in callback" not in caplog.text
