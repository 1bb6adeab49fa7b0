"""The ollama-docker provider against a REAL Docker engine (tests/docker_engine.py): real
containers, real port publishing (docker-proxy on 127.0.0.1), real `docker stop`/`rm`, with the
FAKE Ollama image (trbench-fake-ollama:<hash>: tests/fakes/fake_ollama_cli.py as `ollama serve`,
built locally on a debootstrapped Debian, since no registry is reachable) in place of ollama/ollama.

What is checked here on the real engine: the two containers' published ports (127.0.0.1 only),
environment, labels and model volume as `docker inspect` shows them; a small TR through them with
every run valid and both containers removed at the end; Ctrl-C to `trbench run`'s process group and
kill -9 of the trbench process (its reapers remove the containers); what a run killed with its
reapers leaves is removed before the next run's port check; and the one-line failures with their
fix for a port already taken, an image that is missing with no registry to pull it from, and a GPU
device request on an engine without the NVIDIA runtime.

What a real engine cannot show here (no GPU, no NVIDIA runtime: a GPU device request that
succeeds, GPUs on a host whose default runtime is nvidia), and engine-side details such as the
exact API calls, stay with the FAKE engine: tests/test_provider_ollama_docker.py,
tests/test_flow_ollama_providers.py, tests/test_flow_load_ollama.py, tests/test_cli_failures.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import free_port
from test_stopping import cli_env, kill_all

from tests.docker_engine import Listed
from tests.fakes.fake_ollama import DEFAULT_MODEL
from trbench.backends import ChatRequest, OllamaClient
from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.engines import InstanceError, registry
from trbench.engines.ollama_docker import LABEL_INSTANCE, LABEL_MANAGED, LABEL_OWNER, MODELS_PATH, OllamaContainerInstance

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
VOLUME = "trbench-test-models"
NAMES = ("trbench-ollama-docker-0", "trbench-ollama-docker-1")
REAPED_WITHIN_S = 20  # the reaper polls its parent every 0.25 s; the bound leaves room for a busy machine


@pytest.fixture
def engine(docker_engine) -> Iterator:
    """The real engine; no container of trbench's instance names before or after a test."""
    clear(docker_engine)
    yield docker_engine
    clear(docker_engine)


def clear(engine) -> None:
    for c in ours(engine):
        engine.remove(c.id)


def ours(engine) -> list[Listed]:
    return [c for c in engine.containers(**{LABEL_MANAGED: "true"}) if c.name in NAMES]


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()


def make_spec(image: str, ports: list[int], **kw) -> MatrixSpec:
    base = dict(tr_id="TR-docker-real", provider="ollama-docker", backend="ollama", models=[DEFAULT_MODEL],
                docker_image=image, docker_volume=VOLUME, ports=ports, load_timeout_s=60)
    return MatrixSpec(**{**base, **kw})


@pytest.fixture
def started():
    """Instances a test starts; stopped whatever the test's outcome."""
    made: list[OllamaContainerInstance] = []
    yield made
    for inst in made:
        inst.stop()


def one_instance(engine, started: list, port: int | None = None, **kw) -> OllamaContainerInstance:
    spec = make_spec(kw.pop("image", engine.image), [port or free_port()], **kw)
    inst = OllamaContainerInstance("ollama-docker-0", spec.server, spec.server.ports[0], spec.server.gpu_of(0),
                                   spec.load_timeout_s)
    started.append(inst)
    return inst


def other_addresses() -> list[str]:
    """This host's IPv4 addresses other than loopback (the engine's bridge included)."""
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


# --- the provider's instances on the real engine ----------------------------------------------------

def test_two_containers_publish_on_loopback_with_the_providers_env_labels_and_volume(engine, started, tmp_path):
    spec = make_spec(engine.image, [free_port(), free_port()], server={"num_parallel": 2, "max_queue": 7})
    made = registry.create_instances(spec.server, tmp_path, count=2, load_timeout_s=spec.load_timeout_s)
    started.extend(made)
    for inst in made:
        inst.start()

    for i, inst in enumerate(made):
        attrs = engine.client.containers.get(inst.container_id).attrs
        assert attrs["Name"] == f"/{NAMES[i]}" and attrs["State"]["Status"] == "running"
        assert attrs["Config"]["Image"] == engine.image and attrs["Image"] == inst.image_id
        binding = [{"HostIp": "127.0.0.1", "HostPort": str(inst.port)}]
        assert attrs["HostConfig"]["PortBindings"] == {"11434/tcp": binding}
        assert attrs["NetworkSettings"]["Ports"] == {"11434/tcp": binding}  # what the engine published
        env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
        assert env["OLLAMA_HOST"] == "0.0.0.0:11434" and env["OLLAMA_KEEP_ALIVE"] == "30m"
        assert (env["OLLAMA_NUM_PARALLEL"], env["OLLAMA_MAX_QUEUE"]) == ("2", "7")
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"  # the image's "all" replaced: no GPU asked
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        labels = attrs["Config"]["Labels"]
        assert labels[LABEL_MANAGED] == "true" and labels[LABEL_INSTANCE] == inst.name
        assert labels[LABEL_OWNER] == f"{socket.gethostname()}:{os.getpid()}" and labels["trbench.port"] == str(inst.port)
        (mount,) = attrs["Mounts"]
        assert (mount["Type"], mount["Name"], mount["Destination"]) == ("volume", VOLUME, MODELS_PATH)
        assert not attrs["HostConfig"].get("DeviceRequests")
        # the Ollama inside answers on loopback, and nowhere else on this host
        assert not refused("127.0.0.1", inst.port)
        assert [a for a in other_addresses() if not refused(a, inst.port)] == []
    assert engine.client.volumes.get(VOLUME).attrs["Labels"][LABEL_MANAGED] == "true"

    client = OllamaClient(made[1].url, timeout_s=30)
    try:
        ex = client.chat(ChatRequest(model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Why is the sky blue?"}],
                                     temperature=0.8, max_tokens=8, num_ctx=1024, num_gpu=0))
    finally:
        client.close()
    assert ex.status == "ok" and ex.output_tokens == 8, ex.error_message

    for inst in made:
        inst.stop()
    assert ours(engine) == []


def test_a_port_already_taken_is_one_line_naming_the_port_to_free(engine, started):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InstanceError) as info:
            one_instance(engine, started, port=port).start()
    msg = str(info.value)
    assert "\n" not in msg and "address already in use" in msg, msg
    assert f"fix: free port {port} on 127.0.0.1" in msg
    assert ours(engine) == []  # created, failed to start, removed


def test_a_missing_image_with_no_registry_is_one_line_naming_the_fix(engine, started):
    missing = "trbench-fake-ollama:never-built"
    with pytest.raises(InstanceError) as info:
        one_instance(engine, started, image=missing).start()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"instance ollama-docker-0: docker image {missing} could not be pulled (")
    assert "no such host" in msg or "dial tcp" in msg or "connection refused" in msg  # the engine's own why
    assert msg.endswith(f"fix: check server.image (flat: docker_image) and the engine's registry access, or "
                        f"`docker pull {missing}`; a host that reaches no registry: `docker save {missing}` "
                        f"where it is and `docker load` it here")
    assert ours(engine) == []


def test_a_gpu_request_without_the_nvidia_runtime_is_one_line_naming_the_fix(engine, started):
    if "nvidia" in (engine.client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime: a GPU request may succeed")
    with pytest.raises(InstanceError) as info:
        one_instance(engine, started, gpu_devices=["all"]).start()
    msg = str(info.value)
    assert "\n" not in msg and "could not select device driver" in msg, msg
    assert "fix: install the NVIDIA Container Toolkit and restart Docker, or set server.gpu_devices to null" in msg
    assert ours(engine) == []


# --- `trbench run` on the real engine ---------------------------------------------------------------

def write_spec(tmp_path: Path, image: str, ports: list[int], tr_id: str, **kw) -> Path:
    """A small TR on two containers (its multi-agent runs need two instances)."""
    spec = {"tr_id": tr_id, "provider": "ollama-docker", "backend": "ollama", "models": [DEFAULT_MODEL],
            "docker_image": image, "docker_volume": VOLUME, "ports": ports, "grid": {"num_ctx": [512]},
            "runs": 2, "requests_per_run": 2, "max_tokens": 8, "load_timeout_s": 60,
            "multi_agent": {"scenarios": ["baseline_vs_chimera"], "runs": 1, "max_tokens": 8}, **kw}
    path = tmp_path / f"{tr_id}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_cli(tmp_path: Path, spec: Path, log: Path) -> subprocess.Popen:
    """`trbench run SPEC` in a session of its own, as a shell runs a foreground job; no Prefect."""
    cmd = [sys.executable, "-m", "trbench.cli", "run", str(spec), "--output-dir", str(tmp_path / "out")]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=cli_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


class Watch:
    """Polls the engine while a run goes on: every container of ours it saw (id -> attrs)."""

    def __init__(self, engine) -> None:
        self.engine, self.seen, self._stop = engine, {}, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for c in ours(self.engine):
                if c.id not in self.seen and (attrs := self.engine.inspect(c.id)) is not None:
                    self.seen[c.id] = attrs
            time.sleep(0.2)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def running_both(engine, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> list[Listed]:
    """Until both containers run; them."""
    def both() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"trbench exited early ({proc.returncode}): {log.read_text(errors='replace')[-3000:]}")
        return sorted(c.name for c in ours(engine) if c.status == "running") == list(NAMES)
    assert wait_until(both, timeout_s), f"both containers did not run within {timeout_s} s"
    return ours(engine)


def wait_runs(root: Path, n: int, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    def done() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"trbench exited early ({proc.returncode}): {log.read_text(errors='replace')[-3000:]}")
        return len(list((root / "runs").rglob("*.parquet"))) >= n
    assert wait_until(done, timeout_s, 0.1), f"fewer than {n} runs within {timeout_s} s"


def reapers_of(proc: subprocess.Popen) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True)
            if "trbench.engines.reaper" in " ".join(p.cmdline())]


def run_to_end(engine, tmp_path: Path, spec: Path, log: Path) -> tuple[int, str, Watch]:
    """`trbench run` of spec to its end, watching the engine's containers: (exit code, output, watch)."""
    with Watch(engine) as watch:
        proc = start_cli(tmp_path, spec, log)
        try:
            rc = proc.wait(timeout=300)
        finally:
            kill_all(proc, [])
    return rc, log.read_text(errors="replace"), watch


def test_a_tr_through_two_containers_is_valid_and_removes_them(engine, tmp_path):
    ports = [free_port(), free_port()]
    spec = write_spec(tmp_path, engine.image, ports, "dockreal")
    rc, output, watch = run_to_end(engine, tmp_path, spec, tmp_path / "run.log")
    assert rc == 0, output[-3000:]
    root = tmp_path / "out" / "dockreal"
    runs = store.read_frame(root, "runs")
    assert len(runs) == 2 and runs["valid"].all()
    ma = store.read_frame(root, "ma_runs")
    assert len(ma) == 1 and ma["valid"].all()
    names = sorted(a["Name"].lstrip("/") for a in watch.seen.values())
    assert names == list(NAMES), names
    published = sorted(int(a["HostConfig"]["PortBindings"]["11434/tcp"][0]["HostPort"]) for a in watch.seen.values())
    assert published == sorted(ports)
    assert {a["HostConfig"]["PortBindings"]["11434/tcp"][0]["HostIp"] for a in watch.seen.values()} == {"127.0.0.1"}
    assert ours(engine) == []  # both removed when the run ended


@pytest.mark.parametrize("how", ["ctrl-c-group", "kill-9-trbench"])
def test_a_stopped_or_killed_run_leaves_no_container(engine, tmp_path, how):
    spec = write_spec(tmp_path, engine.image, [free_port(), free_port()], "dockstop", runs=200,
                      requests_per_run=3, max_tokens=64)
    log = tmp_path / "run.log"
    proc = start_cli(tmp_path, spec, log)
    reapers: list[psutil.Process] = []
    try:
        running_both(engine, proc, log)
        wait_runs(tmp_path / "out" / "dockstop", 1, proc, log)  # mid-TR: requests on the wire
        reapers = reapers_of(proc)
        assert len(reapers) == 2  # one per container, each in a session of its own
        if how == "ctrl-c-group":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        else:
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup of its own: the reapers' work
        t0 = time.monotonic()
        assert wait_until(lambda: ours(engine) == [], REAPED_WITHIN_S), \
            f"containers left {REAPED_WITHIN_S} s after {how}: {[c.name for c in ours(engine)]}"
        took = time.monotonic() - t0
        proc.wait(timeout=30)
        if how == "ctrl-c-group":
            assert proc.returncode == 130, log.read_text(errors="replace")[-3000:]
        assert wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in reapers), 10)
        print(f"{how}: containers removed {took:.1f} s after the signal")
    finally:
        kill_all(proc, reapers)


def test_what_a_killed_run_left_is_removed_before_the_next_runs_port_check(engine, tmp_path):
    ports = [free_port(), free_port()]
    spec = write_spec(tmp_path, engine.image, ports, "dockstale", runs=200, requests_per_run=3, max_tokens=64)
    log = tmp_path / "killed.log"
    proc = start_cli(tmp_path, spec, log)
    reapers: list[psutil.Process] = []
    try:
        left = running_both(engine, proc, log)
        reapers = reapers_of(proc)
        for p in reapers:  # the whole process tree dies at once (kill -9 of everything, a lost host session)
            p.kill()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_all(proc, reapers)
    # the containers outlived their run and still publish its ports
    assert sorted(c.id for c in ours(engine)) == sorted(c.id for c in left)
    assert not refused("127.0.0.1", ports[0])

    spec = write_spec(tmp_path, engine.image, ports, "docknext")
    rc, output, watch = run_to_end(engine, tmp_path, spec, tmp_path / "next.log")
    assert rc == 0, output[-3000:]
    assert store.read_frame(tmp_path / "out" / "docknext", "runs")["valid"].all()
    for i, name in enumerate(NAMES):  # removed by the preflight, before it checked the port
        assert f"ollama-docker-{i}: removed what a crashed run left: {name}" in output, output[-3000:]
    new = [cid for cid in watch.seen if cid not in {c.id for c in left}]
    assert len(new) == 2  # the next run's own containers, on the same ports
    assert ours(engine) == []
    assert all(not engine.containers(**{LABEL_OWNER: c.labels[LABEL_OWNER]}) for c in left)
