"""Shared fixtures: a real Prefect server (prefect_test_harness), free ports, process checks."""

from __future__ import annotations

import os
import socket
import sys

# Before any Prefect import: a quiet test server that sends nothing anywhere.
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import httpx  # noqa: E402
import psutil  # noqa: E402
import pytest  # noqa: E402

from trbench.engines.embedded import SERVER_MODULE  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_in(lo: int, hi: int) -> int | None:
    """A free port among lo..hi-1 (a test's own range on the shared machine), or None."""
    for port in range(lo, hi):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


# Test tiers (pyproject.toml declares the markers). A module or test names its tier when it needs
# more than planted data: integration (a real Prefect, llama.cpp, fake Docker engine or CLI process),
# docker (a real Docker engine: the docker_engine fixture), browser (Chromium), rust (the Rust runner
# built by cargo). A test using a real-server fixture is integration whatever it says, one using the
# real Docker engine docker; every other test is unit, the tier `make test-fast` runs.
HEAVY_TIERS = ("integration", "docker", "browser", "rust")
_SERVER_FIXTURES = {"prefect_api", "local_prefect"}


def pytest_collection_modifyitems(items):
    for item in items:
        if _SERVER_FIXTURES & set(item.fixturenames) and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        if "docker_engine" in item.fixturenames and not item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.docker)
        if not any(item.get_closest_marker(t) for t in HEAVY_TIERS):
            item.add_marker(pytest.mark.unit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A unit test must not run beside a llama.cpp server of its own: it belongs in integration."""
    if item.get_closest_marker("unit") is not None:
        mine = [p for p in psutil.Process().children(recursive=True) if _is_llama_server(p)]
        if mine:
            pytest.fail(f"{item.nodeid} is marked unit but runs beside a llama.cpp server it started "
                        f"(pid {mine[0].pid}): mark it integration", pytrace=False)
    yield


def _is_llama_server(p: psutil.Process) -> bool:
    try:
        return SERVER_MODULE in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def free_ports():
    return lambda n: [free_port() for _ in range(n)]


def llama_servers(port: int | None = None) -> list[psutil.Process]:
    """Embedded llama.cpp server processes still alive (optionally on one port)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if SERVER_MODULE in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            if port is None or str(port) in cmd:
                found.append(p)
    return found


def llama_metrics(url: str) -> dict[str, float]:
    """A llama.cpp server's own Prometheus counters (its /metrics endpoint: tokens_predicted_total,
    prompt_tokens_total, requests_processing, ...); {} while it does not answer."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("llamacpp:"))
    return {name.removeprefix("llamacpp:"): float(value) for name, value in pairs}


@pytest.fixture(autouse=True)
def _no_stop_left_over():
    """A test that ran the CLI's signal handler in-process leaves no stop request to later tests' flows."""
    yield
    from trbench.run import stopping

    stopping.clear()


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect server for the whole session (startup ~15 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def local_prefect(tmp_path_factory):
    """`prefect server start` (with the UI) on a free port, the `trbench` process pool,
    `prefect deploy --all` from prefect.yaml and two process workers, `host-a` and `host-b`, with
    one flow run slot each (as one worker per GPU host would run): what `make ui` sets up."""
    from local_prefect import LocalPrefect

    prefect = LocalPrefect(tmp_path_factory.mktemp("prefect-home"), free_port())
    try:
        prefect.start_server()
        prefect.cli("work-pool", "create", "trbench", "--type", "process")
        prefect.deployed = prefect.cli("deploy", "--all").stdout
        for name in ("host-a", "host-b"):
            prefect.start_worker(name, limit=1, queue="default")
        prefect.wait_workers_online({"host-a", "host-b"})
        yield prefect
    finally:
        from trbench.cli_prefect import drain_workers

        drain_workers()  # while the server answers: what this process queued for it would be retried at exit for minutes
        prefect.stop()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    """A REAL Docker engine with the FAKE Ollama image built (or reused) on it (tests/docker_engine.py).
    No engine reachable and none can be started here: the test is skipped with the reason, or fails
    where TRBENCH_REQUIRE_DOCKER=1 (CI)."""
    from tests.docker_engine import REQUIRE_ENV, EngineUnavailable, real_engine

    try:
        engine = real_engine(tmp_path_factory.mktemp("docker"))
    except EngineUnavailable as err:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no Docker engine: {err}", pytrace=False)
        pytest.skip(f"no Docker engine: {err}")
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def fake_nvml(monkeypatch):
    """Installs the NVML fake (tests/fakes/fake_nvml.py) as pynvml: fake_nvml(gpus, init_error) -> the fake."""
    from tests.fakes.fake_nvml import FakeNVML

    def install(gpus: list[dict] | None = None, init_error: str | None = None) -> FakeNVML:
        fake = FakeNVML(gpus, init_error)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return install
