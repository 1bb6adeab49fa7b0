"""Provider 'ollama-process' (trbench.engines.ollama_process) against a FAKE `ollama` command.

Ollama is not installed on the test machines: tests/fakes/bin/ollama (tests/fakes/fake_ollama_cli.py)
is a fake `ollama` whose `serve` answers the FAKE Ollama HTTP API of tests/fakes/fake_ollama.py on
OLLAMA_HOST and records the environment it saw (FAKE_OLLAMA_RECORD_DIR). FAKE_OLLAMA_RUNNER=1 makes
it start a child in its process group, as `ollama serve` starts runners, so the tests see that
the whole group goes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fakes.fake_ollama import DEFAULT_MODEL, FAKE_VERSION, FakeOllama

from trbench.backends import OllamaClient
from trbench.backends.base import ChatRequest
from trbench.engines import ollama_api
from trbench.engines import InstanceError, create_instances
from trbench.engines.ollama_process import OllamaProcessInstance
from trbench.config.spec import MatrixSpec

pytestmark = pytest.mark.integration

FAKE_BIN = Path(__file__).resolve().parent / "fakes" / "bin"


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake `ollama` first on PATH, run by this interpreter; where its `serve` records what it saw."""
    fake = FAKE_BIN / "ollama"
    if not os.access(fake, os.X_OK):
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_OLLAMA_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_OLLAMA_RECORD_DIR", str(tmp_path / "records"))
    monkeypatch.setenv("FAKE_OLLAMA_RUNNER", "1")
    for name in ("OLLAMA_HOST", "CUDA_VISIBLE_DEVICES", "FAKE_OLLAMA_NEVER_HEALTHY", "FAKE_OLLAMA_IGNORE_SIGTERM"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "records"


@pytest.fixture
def started():
    """Instances a test starts; stopped after it whatever happened."""
    instances: list[OllamaProcessInstance] = []
    yield instances
    for inst in instances:
        inst.stop()


def make_spec(**fields) -> MatrixSpec:
    base = {"tr_id": "fake-ollama-cli", "provider": "ollama-process", "backend": "ollama",
            "models": [DEFAULT_MODEL], "load_timeout_s": 20}
    return MatrixSpec(**{**base, **fields})


def process_instance(name: str, spec: MatrixSpec, port: int, gpu: str | None, log_dir: Path) -> OllamaProcessInstance:
    return OllamaProcessInstance(name, spec.server, port, gpu, log_dir, spec.load_timeout_s)


def read_record(records: Path, port: int, timeout_s: float = 10) -> dict:
    path = records / f"serve-{port}.json"
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"the fake `ollama serve` on port {port} wrote no record"
        time.sleep(0.05)
    return json.loads(path.read_text())


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """The pids still alive after timeout_s (empty when all went)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def serve_processes(rec: dict) -> list[int]:
    return [rec["pid"], rec["runner_pid"]]


def test_fake_ollama_cli_two_instances_on_own_ports_and_gpus(records, started, free_ports, tmp_path):
    ports = free_ports(2)
    spec = make_spec(ports=ports, gpu_devices=["0", "1"])
    instances = create_instances(spec.server, tmp_path / "logs", count=2, load_timeout_s=spec.load_timeout_s)
    assert [type(i) for i in instances] == [OllamaProcessInstance] * 2
    started.extend(instances)
    for inst in instances:
        inst.start()
    inst.start()  # idempotent: the running server stays
    recs = [read_record(records, p) for p in ports]
    assert len(list(records.glob("serve-*.json"))) == 2

    for i, (inst, port, rec) in enumerate(zip(instances, ports, recs)):
        assert inst.provider == "ollama-process"
        assert inst.url == f"http://127.0.0.1:{port}"
        assert rec["argv"][-1] == "serve"
        assert rec["env"]["OLLAMA_HOST"] == f"127.0.0.1:{port}"
        assert rec["env"]["CUDA_VISIBLE_DEVICES"] == str(i)
        assert rec["pid"] == inst.pid and rec["pgid"] == inst.pid  # its own process group
        assert rec["pgid"] != os.getpgid(0)
        assert ollama_api.version(inst.url) == FAKE_VERSION
        assert inst.prepare(spec.cells()[0]) is None
        assert "Listening on 127.0.0.1:" in (tmp_path / "logs" / f"{inst.name}.log").read_text()

    client = OllamaClient(instances[1].url, timeout_s=10)
    try:
        ex = client.chat(ChatRequest(model=DEFAULT_MODEL, max_tokens=32,
                                     messages=[{"role": "user", "content": "Why is the sky blue?"}]))
    finally:
        client.close()
    assert ex.status == "ok", ex.error_message
    assert "Rayleigh" in ex.text and ex.output_tokens and ex.server_decode_ms

    reapers = [inst._reaper.pid for inst in instances]
    assert all(alive(p) for p in reapers)
    for inst in instances:
        inst.stop()
    pids = [p for rec in recs for p in serve_processes(rec)] + reapers
    assert wait_gone(pids, 2) == []
    for inst in instances:
        inst.stop()  # idempotent
        assert inst.pid is None


def test_fake_ollama_cli_model_facts_unload_and_no_gpu(records, started, free_ports, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # no GPU of its own: the environment as it is
    (port,) = free_ports(1)
    inst = process_instance("ollama-process-0", make_spec(), port, None, Path(records.parent / "logs"))
    started.append(inst)
    inst.start()
    assert read_record(records, port)["env"]["CUDA_VISIBLE_DEVICES"] == "7"

    facts = inst.model_facts(DEFAULT_MODEL)
    tag = ollama_api.find_tag(inst.url, DEFAULT_MODEL)
    assert facts.digest == tag["digest"] and len(facts.digest) == 64
    assert facts.details is not None and facts.details.family == "llama" and facts.details.quantization_level == "Q4_K_M"
    assert facts.context_length == 131072 and "FROM fake-llama:1b" in (facts.modelfile or "")
    assert inst.model_facts("absent:1b").digest is None
    inst.unload(DEFAULT_MODEL)  # keep_alive 0 via /api/generate, answered 200


def test_fake_ollama_cli_commands_talk_to_the_served_api(records, started, free_ports, tmp_path):
    (port,) = free_ports(1)
    inst = process_instance("ollama-process-0", make_spec(), port, "0", tmp_path / "logs")
    started.append(inst)
    inst.start()
    env = {**os.environ, "OLLAMA_HOST": inst.ollama_host}

    def ollama(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ollama", *args], env=env, capture_output=True, text=True, timeout=30)

    assert ollama("--version").stdout.strip() == f"ollama version is {FAKE_VERSION}"
    listed = ollama("list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert listed[1].startswith(DEFAULT_MODEL)
    assert "FROM fake-llama:1b" in ollama("show", DEFAULT_MODEL, "--modelfile").stdout
    pulled = ollama("pull", "fake-new:1b")
    assert pulled.returncode == 0 and pulled.stdout.splitlines()[-1] == "success"
    assert ollama_api.find_tag(inst.url, "fake-new:1b") is not None
    failed = ollama("pull", "does-not-exist:1b")
    assert failed.returncode == 1 and failed.stderr.startswith("Error: pull model manifest")
    inst.stop()
    gone = ollama("list")
    assert gone.returncode == 1 and "could not connect" in gone.stderr


def test_fake_ollama_cli_binary_missing_names_the_fix(records, tmp_path):
    inst = process_instance("ollama-process-0", make_spec(ollama_binary="ollama-not-installed"), 11999, None,
                                 tmp_path / "logs")
    with pytest.raises(InstanceError) as err:
        inst.start()
    message = str(err.value)
    assert "\n" not in message
    assert "ollama-process-0" in message and "'ollama binary'" in message
    assert "fix: install ollama" in message and "ollama_binary" in message
    inst.stop()


def test_fake_ollama_cli_never_healthy_fails_and_leaves_nothing(records, started, free_ports, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_OLLAMA_NEVER_HEALTHY", "1")
    (port,) = free_ports(1)
    inst = process_instance("ollama-process-0", make_spec(load_timeout_s=1.5), port, "0", tmp_path / "logs")
    started.append(inst)
    with pytest.raises(InstanceError) as err:
        inst.start()
    message = str(err.value)
    assert "\n" not in message and "/api/version did not answer 200" in message
    assert str(tmp_path / "logs" / "ollama-process-0.log") in message
    assert wait_gone(serve_processes(read_record(records, port)), 2) == []
    assert inst.pid is None and inst._reaper is None


def test_fake_ollama_cli_server_exits_while_starting(records, tmp_path, free_ports):
    (port,) = free_ports(1)
    inst = process_instance("ollama-process-0", make_spec(ollama_binary="false"), port, None, tmp_path / "logs")
    with pytest.raises(InstanceError, match=r"exited with code 1 while loading; 'ollama serve' log: .*\.log$"):
        inst.start()
    assert inst.pid is None


def test_fake_ollama_cli_port_in_use_is_refused(records, tmp_path):
    with FakeOllama() as other:  # another Ollama already on the port
        inst = process_instance("ollama-process-1", make_spec(), other.port, "1", tmp_path / "logs")
        with pytest.raises(InstanceError) as err:
            inst.start()
    message = str(err.value)
    assert "'port free'" in message and f"127.0.0.1:{other.port}" in message
    assert f"Ollama {FAKE_VERSION}" in message and "fix: stop it or choose other ports" in message
    assert not records.exists()  # no `ollama serve` was started
    assert inst.pid is None


def test_fake_ollama_cli_stop_escalates_to_sigkill(records, started, free_ports, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_OLLAMA_IGNORE_SIGTERM", "1")
    (port,) = free_ports(1)
    inst = process_instance("ollama-process-0", make_spec(), port, None, tmp_path / "logs")
    inst.stop_timeout_s = 0.5
    started.append(inst)
    inst.start()
    rec = read_record(records, port)
    t0 = time.monotonic()
    inst.stop()
    assert time.monotonic() - t0 < 30  # SIGKILL after 0.5 s; a fake that ignores SIGTERM would hang forever
    assert wait_gone(serve_processes(rec), 2) == []


CHILD = """
import sys, time
from pathlib import Path
from trbench.engines.ollama_process import OllamaProcessInstance
from trbench.config.spec import MatrixSpec
spec = MatrixSpec(tr_id="fake-ollama-cli", provider="ollama-process", backend="ollama",
                  models=["fake-llama:1b"], load_timeout_s=20)
inst = OllamaProcessInstance("ollama-process-0", spec.server, int(sys.argv[1]), "0", Path(sys.argv[2]), spec.load_timeout_s)
inst.start()
print(inst.pid, inst._reaper.pid, flush=True)
time.sleep(120)
"""


def test_fake_ollama_cli_reaper_kills_serve_group_after_kill_9(records, free_ports, tmp_path):
    (port,) = free_ports(1)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(port), str(tmp_path / "logs")],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    rec = None
    try:
        line = child.stdout.readline()
        assert line, f"the child did not start an instance (exit code {child.poll()})"
        serve_pid, reaper_pid = map(int, line.split())
        rec = read_record(records, port)
        assert rec["pid"] == serve_pid and alive(rec["runner_pid"])
        assert ollama_api.version(f"http://127.0.0.1:{port}") == FAKE_VERSION

        child.send_signal(signal.SIGKILL)  # no atexit, no stop(): only the reaper is left
        child.wait(timeout=5)
        assert wait_gone([*serve_processes(rec), reaper_pid], 5) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if rec is not None and alive(rec["pid"]):
            os.killpg(rec["pid"], signal.SIGKILL)


def test_fake_ollama_cli_pinned_environment_all_gpus_and_model_store(records, started, free_ports, tmp_path,
                                                                       monkeypatch, caplog):
    # a user's own settings that would change what is measured, and a GPU pin "all" must undo
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "0")
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "4")
    monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", "1")
    store = tmp_path / "store"
    (port,) = free_ports(1)
    inst = process_instance("ollama-process-0", make_spec(ollama_models_dir=str(store)), port, "all",
                                 tmp_path / "logs")
    started.append(inst)
    with caplog.at_level("WARNING", logger="trbench.engines.ollama_process"):
        inst.start()
    env = read_record(records, port)["env"]
    # CUDA reads CUDA_VISIBLE_DEVICES=all as no device at all: "all" leaves it unset
    assert env["CUDA_VISIBLE_DEVICES"] is None
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # one index means one GPU for CUDA, NVML and docker
    assert env["OLLAMA_KEEP_ALIVE"] == "30m" and env["OLLAMA_NUM_PARALLEL"] == "1"
    assert env["OLLAMA_MODELS"] == str(store)
    assert "OLLAMA_FLASH_ATTENTION=1" in caplog.text  # passed on, and said so


def test_fake_ollama_cli_default_model_store_is_explicit(tmp_path):
    inst = process_instance("ollama-process-0", make_spec(), 11434, "1", tmp_path)
    env = inst.environment()
    assert env["OLLAMA_MODELS"] == os.path.expanduser("~/.ollama/models") and env["CUDA_VISIBLE_DEVICES"] == "1"
    fix = inst.pull_fix("qwen2.5:7b")
    assert "ollama_models_dir" in fix and "/usr/share/ollama/.ollama/models" in fix and "pull_models: true" in fix


def test_fake_ollama_cli_gets_num_parallel_and_max_queue_from_the_spec(records, started, free_ports, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", "1000")  # a user's own value: the spec's wins
    (port,) = free_ports(1)
    spec = make_spec(server={"num_parallel": 2, "max_queue": 5})
    inst = process_instance("ollama-process-0", spec, port, None, tmp_path / "logs")
    started.append(inst)
    inst.start()
    env = read_record(records, port)["env"]
    assert (env["OLLAMA_NUM_PARALLEL"], env["OLLAMA_MAX_QUEUE"]) == ("2", "5")
    assert inst.concurrency == {"num_parallel": 2, "max_queue": 5}


def test_fake_ollama_cli_grid_server_settings_reach_the_serve_environment(records, started, free_ports, tmp_path):
    # a cell's flash attention, KV cache type and slots: `ollama serve` restarted with them
    (port,) = free_ports(1)
    spec = make_spec(grid={"flash_attention": [True], "kv_cache_type": ["q4_0"], "slots": [4]})
    inst = process_instance("ollama-process-0", spec, port, None, tmp_path)
    started.append(inst)
    inst.start()
    first = read_record(records, port)
    assert first["env"]["OLLAMA_FLASH_ATTENTION"] is None and first["env"]["OLLAMA_NUM_PARALLEL"] == "1"
    (records / f"serve-{port}.json").unlink()
    (cell,) = spec.cells()
    assert inst.prepare(cell) is not None
    env = read_record(records, port)["env"]
    assert (env["OLLAMA_FLASH_ATTENTION"], env["OLLAMA_KV_CACHE_TYPE"], env["OLLAMA_NUM_PARALLEL"]) == ("1", "q4_0", "4")
    assert inst.prepare(cell) is None and inst.concurrency["num_parallel"] == 4
