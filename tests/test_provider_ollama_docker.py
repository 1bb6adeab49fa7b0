"""The ollama-docker provider against a FAKE Docker engine (tests/fakes/fake_docker.py).

The fake answers the Engine API for a real docker.DockerClient and starts a fake Ollama on each
started container's host port, so health checks and chat requests travel the same path as against
real containers. It stays for what a REAL engine cannot show on a machine without a GPU (a GPU
device request that succeeds; GPUs on a host whose default runtime is nvidia) and for what only the
fake lets a test set up or observe: the API calls made (pulls, stop timeouts, the pinned API
version), registry answers (a pull refused, an error line mid-pull), a container that exits at start
or never answers, a foreign container holding the name, a live owner's stale container.

On the REAL engine (tests/test_ollama_docker_engine.py, marker docker): the containers' published
ports, environment, labels and volume as `docker inspect` shows them, a TR through two containers,
Ctrl-C and kill -9 (the reapers), a killed run's leftovers removed before the next port check, and
the one-line failures for a taken port, a missing image with no registry and a GPU request without
the NVIDIA runtime.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import docker
import pytest

from tests.conftest import free_port
from tests.fakes.fake_docker import FakeDocker
from tests.fakes.fake_ollama import DEFAULT_MODEL
from trbench.backends import ChatRequest, OllamaClient
from trbench.engines import registry
from trbench.engines import InstanceError
from trbench.engines.ollama_docker import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    OllamaContainerInstance,
    remove_stale,
)
from trbench.config.spec import MatrixSpec

pytestmark = pytest.mark.integration

IMAGE = "ollama/ollama:0.12.6"
VOLUME = "trbench-test-models"


def make_spec(**kw) -> MatrixSpec:
    base = dict(tr_id="TR-docker", provider="ollama-docker", backend="ollama", models=[DEFAULT_MODEL],
                docker_image=IMAGE, docker_volume=VOLUME, load_timeout_s=10)
    return MatrixSpec(**{**base, **kw})


def container_instance(name: str, spec: MatrixSpec, port: int, gpu: str | None, **kw) -> OllamaContainerInstance:
    return OllamaContainerInstance(name, spec.server, port, gpu, spec.load_timeout_s, **kw)


@pytest.fixture
def engine(monkeypatch):
    """A FAKE Docker engine with the Ollama image present; DOCKER_HOST points at it (for the reapers too)."""
    with FakeDocker(images=[IMAGE]) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.docker_host)
        monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
        monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
        yield fake


@pytest.fixture
def started():
    """Instances a test starts; stopped whatever the test's outcome."""
    made: list[OllamaContainerInstance] = []
    yield made
    for inst in made:
        inst.stop()


def new_instance(made: list, name: str = "ollama-docker-0", gpu: str | None = None, port: int | None = None,
                 **spec_kw) -> OllamaContainerInstance:
    inst = container_instance(name, make_spec(**spec_kw), port or free_port(), gpu)
    made.append(inst)
    return inst


@pytest.mark.parametrize("gpu, expected", [
    ("all", [{"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]),
    ("1", [{"Driver": "", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]], "Options": {}}]),
])
def test_fake_docker_gpu_device_requests(engine, started, gpu, expected):
    inst = new_instance(started, gpu=gpu)
    inst.start()
    assert engine.create_bodies[-1]["HostConfig"]["DeviceRequests"] == expected
    assert engine.container(inst.container_id).host_config["DeviceRequests"] == expected


def test_fake_docker_two_instances_share_one_volume_and_pull_once(monkeypatch, started):
    with FakeDocker() as fake:  # no image yet
        monkeypatch.setenv("DOCKER_HOST", fake.docker_host)
        a = new_instance(started, "ollama-docker-0")
        b = new_instance(started, "ollama-docker-1")
        a.start()
        b.start()
        pulls = fake.calls_to("POST", r"/images/create")
        assert len(pulls) == 1
        assert pulls[0].query["fromImage"] == "ollama/ollama" and pulls[0].query["tag"] == "0.12.6"
        assert len(fake.calls_to("POST", r"/volumes/create")) == 1
        mounts = [bd["HostConfig"]["Mounts"][0]["Source"] for bd in fake.create_bodies]
        assert mounts == [VOLUME, VOLUME]
        assert a.image_id == b.image_id == fake.images[IMAGE]["Id"]
        assert {c.name for c in fake.containers.values()} == {"trbench-ollama-docker-0", "trbench-ollama-docker-1"}
        for inst in (a, b):
            inst.stop()
        assert fake.containers == {}


def test_fake_docker_create_instances_dispatches(engine, tmp_path):
    spec = make_spec(ports=[free_port(), free_port()], gpu_devices=["0", "1"])
    made = registry.create_instances(spec.server, tmp_path, count=2, load_timeout_s=spec.load_timeout_s)
    assert [type(i).__name__ for i in made] == ["OllamaContainerInstance"] * 2
    assert [(i.name, i.gpu, i.port) for i in made] == [("ollama-docker-0", "0", spec.server.ports[0]),
                                                       ("ollama-docker-1", "1", spec.server.ports[1])]


def test_fake_docker_chat_through_instance_url(engine, started):
    inst = new_instance(started)
    inst.start()
    client = OllamaClient(inst.url, timeout_s=10)
    try:
        ex = client.chat(ChatRequest(model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Why is the sky blue?"}],
                                     temperature=0.8, max_tokens=8, num_ctx=1024, num_gpu=80))
    finally:
        client.close()
    assert ex.status == "ok", ex.error_message
    assert ex.output_tokens == 8 and ex.text
    server = engine.container(inst.container_id).ollama[0]
    assert server.last_options()["num_ctx"] == 1024 and server.last_options()["num_gpu"] == 80
    assert inst.prepare(make_spec().cells()[0]) is None
    facts = inst.model_facts(DEFAULT_MODEL)
    assert facts.digest and facts.model == DEFAULT_MODEL
    inst.unload(DEFAULT_MODEL)
    assert server.bodies("/api/generate")[-1] == {"model": DEFAULT_MODEL, "keep_alive": 0}


def test_fake_docker_stop_removes_container_and_is_idempotent(engine, started):
    inst = new_instance(started)
    inst.start()
    cid = inst.container_id
    reaper = inst._reaper
    server = engine.container(cid).ollama[0]
    inst.start()  # idempotent: no second container
    assert len(engine.create_bodies) == 1

    inst.stop()
    assert engine.container(cid) is None and engine.removed[-1].id == cid
    assert engine.calls_to("POST", rf"/containers/{cid}/stop")[0].query["t"] == "3"
    assert engine.calls_to("DELETE", rf"/containers/{cid}")[0].query["force"] in ("1", "true", "True")
    assert server._stopping.is_set()  # the container's Ollama is gone with it
    assert reaper.poll() is not None  # the watchdog is stopped too
    assert inst.container_id is None

    n_calls = len(engine.calls)
    inst.stop()
    assert len(engine.calls) == n_calls  # the second stop has nothing to do


def test_fake_docker_stale_container_removed_first(engine, started):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = engine.add_container("trbench-ollama-docker-0", running=True, labels={
        LABEL_MANAGED: "true", LABEL_INSTANCE: "ollama-docker-0",
        "trbench.owner": f"{socket.gethostname()}:{dead.stdout.strip()}"})
    other = engine.add_container("someone-else", labels={LABEL_MANAGED: "true", LABEL_INSTANCE: "ollama-docker-9"})
    inst = new_instance(started)
    inst.start()
    assert engine.container(stale.id) is None
    assert engine.container(other.id) is not None
    assert engine.container("trbench-ollama-docker-0").id == inst.container_id


def test_fake_docker_stale_container_of_live_run_is_kept(engine, started):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        engine.add_container("trbench-ollama-docker-0", running=True, labels={
            LABEL_MANAGED: "true", LABEL_INSTANCE: "ollama-docker-0",
            "trbench.owner": f"{socket.gethostname()}:{live.pid}"})
        with pytest.raises(InstanceError, match=rf"trbench process {live.pid}.*still running; fix:"):
            new_instance(started).start()
        assert engine.container("trbench-ollama-docker-0") is not None
    finally:
        live.kill()
        live.wait()
    assert remove_stale(engine.client(), "ollama-docker-0")  # its owner gone: now it goes
    assert engine.container("trbench-ollama-docker-0") is None


def test_fake_docker_name_taken_by_foreign_container(engine, started):
    engine.add_container("trbench-ollama-docker-0")  # not made by trbench: no labels
    with pytest.raises(InstanceError) as info:
        new_instance(started).start()
    msg = str(info.value)
    assert "\n" not in msg and "docker rm -f trbench-ollama-docker-0" in msg
    assert len(engine.containers) == 1  # the foreign one is left alone


def test_fake_docker_never_healthy_removes_container(engine, started):
    engine.health = "refuse"
    inst = new_instance(started, load_timeout_s=0.8)
    t0 = time.monotonic()
    with pytest.raises(InstanceError) as info:
        inst.start()
    assert time.monotonic() - t0 < 30  # the 0.8 s timeout, not the default 300 s
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("instance ollama-docker-0: container trbench-ollama-docker-0")
    assert "/api/version did not answer 200" in msg and "fix: raise load_timeout_s" in msg
    assert engine.containers == {} and len(engine.removed) == 1
    assert inst.container_id is None and inst._reaper is None


def test_fake_docker_container_exits_at_start(engine, started):
    engine.exit_on_start = (1, "Error: could not create directory mkdir /root/.ollama: permission denied\n")
    inst = new_instance(started)
    t0 = time.monotonic()
    with pytest.raises(InstanceError) as info:
        inst.start()
    assert time.monotonic() - t0 < 30  # noticed by the container watch, not by the health timeout (300 s)
    msg = str(info.value)
    assert "\n" not in msg and "exited with code 1" in msg and "permission denied" in msg and "fix:" in msg
    assert engine.containers == {}


def test_fake_docker_pull_failure(monkeypatch, started):
    with FakeDocker(pull_error="pull access denied for ollama/ollama, repository does not exist") as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.docker_host)
        with pytest.raises(InstanceError, match=r"could not be pulled \(pull access denied.*fix: check server.image \(flat: docker_image\)"):
            new_instance(started).start()
        assert fake.create_bodies == []


def test_fake_docker_engine_unreachable(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{dead_port}")
    inst = container_instance("ollama-docker-0", make_spec(), free_port(), None)
    with pytest.raises(InstanceError) as info:
        inst.start()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("instance ollama-docker-0: docker engine not reachable")
    assert "fix: start Docker" in msg
    inst.stop()  # nothing started: nothing to do

    def broken() -> docker.DockerClient:
        raise docker.errors.DockerException("Error while fetching server API version: socket missing")

    with pytest.raises(InstanceError, match=r"docker engine not reachable \(Error while fetching server API version"):
        container_instance("ollama-docker-1", make_spec(), free_port(), None, client_factory=broken).start()


def test_fake_docker_client_factory_is_used(engine, started, monkeypatch):
    made = []

    def factory() -> docker.DockerClient:
        made.append(engine.client())
        return made[-1]

    inst = container_instance("ollama-docker-0", make_spec(), free_port(), None, client_factory=factory)
    started.append(inst)
    inst.start()
    assert len(made) == 1
    # the explicit client speaks the pinned version: every versioned call carries its prefix
    assert {c.api_version for c in engine.calls if c.path.startswith("/containers")} == {"1.47"}


@pytest.mark.parametrize("gpu, visible", [(None, []), ("1", ["1"]), ("all", ["0", "1"])])
def test_fake_docker_gpus_on_a_host_whose_default_runtime_is_nvidia(monkeypatch, started, gpu, visible):
    # the image says NVIDIA_VISIBLE_DEVICES=all: without "void", a container asking for no GPU gets all
    with FakeDocker(images=[IMAGE], default_runtime="nvidia", gpus=["0", "1"]) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.docker_host)
        inst = new_instance(started, gpu=gpu)
        inst.start()
        env = dict(e.split("=", 1) for e in fake.create_bodies[-1]["Env"])
        assert env.get("NVIDIA_VISIBLE_DEVICES") == ("void" if gpu is None else None)
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["OLLAMA_NUM_PARALLEL"] == "1"
        assert fake.container(inst.container_id).visible_gpus == visible


def test_fake_docker_pull_error_line_after_progress(monkeypatch, started):
    with FakeDocker(pull_error="unexpected EOF", pull_error_in_stream=True) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.docker_host)
        with pytest.raises(InstanceError, match=r"could not be pulled \(unexpected EOF\)"):
            new_instance(started).start()


def test_fake_docker_num_parallel_and_max_queue_reach_ollama_in_the_container(engine, started):
    # server.num_parallel / max_queue -> the container's env -> the FAKE Ollama inside honours them
    inst = new_instance(started, server={"num_parallel": 3, "max_queue": 9})
    inst.start()
    env = dict(e.split("=", 1) for e in engine.create_bodies[-1]["Env"])
    assert (env["OLLAMA_NUM_PARALLEL"], env["OLLAMA_MAX_QUEUE"]) == ("3", "9")
    (inside,) = engine.container(inst.container_id).ollama
    assert (inside.num_parallel, inside.max_queue) == (3, 9)
    assert inst.concurrency == {"num_parallel": 3, "max_queue": 9}


def test_fake_docker_grid_server_settings_restart_the_container_with_its_env_and_request_ones_go_as_options(
        engine, started):
    # flash attention, KV cache type and slots are Ollama server environment: a change starts a new
    # container with it; batch size and threads are request options: no restart
    spec = make_spec(grid={"flash_attention": [False, True], "kv_cache_type": ["q8_0"], "slots": [2],
                           "batch_size": [128], "threads": [3]})
    off, on = spec.cells()
    inst = container_instance("ollama-docker-0", spec, free_port(), None)
    started.append(inst)
    inst.start()
    assert inst.prepare(off) is not None
    env = dict(e.split("=", 1) for e in engine.create_bodies[-1]["Env"])
    assert (env["OLLAMA_FLASH_ATTENTION"], env["OLLAMA_KV_CACHE_TYPE"], env["OLLAMA_NUM_PARALLEL"]) == ("0", "q8_0", "2")
    assert inst.prepare(off) is None  # the same server settings: the same container
    assert inst.prepare(on) is not None
    env = dict(e.split("=", 1) for e in engine.create_bodies[-1]["Env"])
    assert env["OLLAMA_FLASH_ATTENTION"] == "1" and len(engine.create_bodies) == 3
    assert inst.concurrency["num_parallel"] == 2
    client = OllamaClient(inst.url, timeout_s=10)
    try:
        from trbench.run.single import generation_request

        ex = client.chat(generation_request(DEFAULT_MODEL, [{"role": "user", "content": "Hi"}], "chat", on, 4, None))
    finally:
        client.close()
    assert ex.status == "ok", ex.error_message
    (server,) = engine.container(inst.container_id).ollama
    assert server.num_parallel == 2
    opts = server.last_options()
    assert (opts["num_batch"], opts["num_thread"]) == (128, 3)
