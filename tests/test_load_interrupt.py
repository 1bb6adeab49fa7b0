"""Ctrl-C in a terminal during a load step of `trbench run SPEC` (a spec with a `load:` section), the
load client on uvloop (trbench.backends.event_loop): SIGINT to the whole process group, as a shell
sends it to its foreground job, the llama.cpp server included.

What load mode promises (tasks/load.py, run.single.Gate): a step is written whole once it has
finished, requests then its step row (the ledger); a step cut short is not written at all, so the
resume measures it again instead of keeping a broken one. So after the stop: trbench exits 130 within
seconds with no server left and no traceback, the finished step is kept whole, the cut one left no
file, one line says what was kept and the command that resumes, and that command runs only the steps
left. The real embedded llama.cpp engine serves the bundled smollm2:135m; no PREFECT_API_URL, so the
CLI starts its temporary Prefect server, as when run by hand.

The in-process tests below pin the uvloop part alone: a SIGINT mid-step ends event_loop.run with
KeyboardInterrupt after every request in flight was cancelled and the client closed, under the CLI's
handler and under Python's default one (asyncio.Runner's own), on uvloop and on asyncio's loop.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import llama_servers
from test_stopping import STOP_BOUND_S, cli_env, group_alive, kill_all, start_cli, stop_cli

from trbench.backends import ChatRequest, RawExchange, event_loop
from trbench.config.prompts import PromptSuite
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.run import load as runner

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
    for port in range(18400, 18500):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 18400-18499")


def write_spec(tmp_path: Path, port: int) -> Path:
    spec = {"tr_id": TR_ID, "provider": "embedded", "backend": "openai", "server": {"ports": [port], "slots": 2},
            "models": ["smollm2:135m"], "single_agent": False,
            "grid": {"num_gpu": [0], "num_ctx": [512], "temperature": [0.8]}, "max_tokens": 32, "seed": 7,
            "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"),
            "load": {"concurrency": STREAMS, "requests": REQUESTS, "warmup_requests": WARMUP}}
    path = tmp_path / "load.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def server_metrics(port: int) -> dict[str, float]:
    """llama.cpp's Prometheus counters (tokens_predicted_total grows when a request has been answered)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("llamacpp:"))
    return {name.removeprefix("llamacpp:"): float(value) for name, value in pairs}


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
                answered = server_metrics(port).get("tokens_predicted_total")
        else:
            m = server_metrics(port)
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


def test_ctrl_c_mid_load_step_keeps_finished_steps_and_resume_runs_only_the_rest(tmp_path):
    import uvloop

    assert event_loop.loop_factory() is uvloop.new_event_loop  # the CLI below times its load on uvloop
    port = port_in_my_range()
    spec, out = write_spec(tmp_path, port), tmp_path / "out"
    root, env = out / TR_ID, cli_env(tmp_path)
    cmd = [sys.executable, "-m", "trbench.cli", "run", str(spec), "--output-dir", str(out)]
    proc = start_cli(cmd, env, tmp_path / "stop.log")
    commands, left = stop_cli(proc, lambda: wait_mid_step(root, port, proc), lambda pid: os.killpg(pid, signal.SIGINT))
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
    assert "summary: 1 run(s) finished, 1 valid, 0 invalid; interrupted" in lines, output[-3000:]
    said = [line for line in lines if "resume with:" in line]
    assert said == [f"interrupted: 1 finished run(s) kept in {root}; resume with: {shlex.join(cmd)}"], output[-3000:]

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
    assert "summary: 2 run(s) finished, 2 valid, 0 invalid, 1 already finished before; Completed" in resumed
    requests = store.read_frame(root, "load_requests")
    assert requests.groupby("run_id").size().to_dict() == {s: REQUESTS + WARMUP for s in STEP_IDS}
    assert (requests["status"] == "ok").all()  # the cut step measured again, whole: nothing cancelled kept
    assert llama_servers(port) == []


# --- the event loop alone: SIGINT in the middle of a step, in this process ---

class HangingClient:
    """A client whose requests never end (no server): each waits until it is cancelled, which it
    records as the real client does (error kind "cancelled"); says when `streams` are in flight."""

    def __init__(self, streams: int) -> None:
        self.streams = streams
        self.in_flight = threading.Event()
        self.started = 0
        self.cancelled: list[RawExchange] = []
        self.closed = False

    async def chat(self, req: ChatRequest) -> RawExchange:
        self.started += 1
        if self.started == self.streams:
            self.in_flight.set()
        t_send = time.perf_counter_ns()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(RawExchange(backend="openai", url="http://none", model=req.model,
                                              sent_at_unix=time.time(), t_send_ns=t_send,
                                              t_end_ns=time.perf_counter_ns(), status="error",
                                              error_kind="cancelled", error_message="interrupted"))
            raise
        raise AssertionError("never answered")

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def restore_sigint():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.mark.timeout(120)  # a hang fails here, not after the suite's 600 s
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("handler", ["cli", "default"])
def test_sigint_mid_step_cancels_every_request_in_flight_and_raises_keyboard_interrupt(
        restore_sigint, monkeypatch, loop, handler):
    from trbench import cli

    if loop == "asyncio":
        monkeypatch.setattr(event_loop, "loop_factory", lambda: None)
    if handler == "cli":
        cli._stop_on_signals()  # raises KeyboardInterrupt, then ignores further signals
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # asyncio.Runner puts its own in its place
    spec = parse_spec({"tr_id": "lt", "models": ["smollm2:135m"], "seed": 3, "max_tokens": 8,
                       "load": {"concurrency": [3], "requests": 12}})
    plan = runner.StepPlan(tr_id="lt", cell=spec.cells()[0], step=spec.load.fixed_steps()[0], step_index=0,
                           instance="i0", instance_url="http://none")
    prompts = PromptSuite(name="t", prompts=[{"id": "p0", "user": "hello"}])
    client = HangingClient(streams=3)

    def ctrl_c() -> None:
        if client.in_flight.wait(timeout=60):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        runner.execute_step(spec, plan, lambda _b, _u: client, prompts, "digest")
    assert client.started == 3 and client.closed
    assert [ex.error_kind for ex in client.cancelled] == ["cancelled"] * 3
    if handler == "cli":  # the CLI's handler ignores a second Ctrl-C while the servers are stopped
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    else:
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the Runner gave it back
