"""One TR over two hosts on object storage, and a host that dies mid-run.

Each host is a Linux network namespace (tests/netns_hosts.py) with its own Prefect process worker (one flow run
slot), whose sub-runs start their own llama.cpp servers on that host's loopback, on the same port as the other
host's. The Prefect server and a real S3-compatible server (moto, tests/s3_server.py) run on the control host,
reached from each namespace over its veth link. tr_fanout runs here and splits the matrix by model; the
sub-runs write one dataset into the bucket. While one host's sub-run is part-way, every process of that host is
killed at once (SIGKILL): its share must finish on the other worker, the runs it finished must not be measured
again, and the report must count every run once.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import httpx
import pyarrow.dataset as ds
import pytest
import yaml

from conftest import free_port
from local_prefect import LocalPrefect
from netns_hosts import REQUIRE_ENV, Host, kill_host, make_hosts, remove_hosts, unavailable
from s3_server import BUCKET, S3Server, serve

pytestmark = pytest.mark.integration

RUNS = 5  # per cell: enough that the killed host is part-way through its share
MODELS = ["smollm2:135m", "gemma3:270m"]
FLOW_HEARTBEAT_S = 30  # Prefect's least: a sub-run silent for 45 s, whose worker is silent too, is taken for lost


@pytest.fixture(scope="module")
def hosts():
    why = unavailable()
    if why:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
        pytest.skip(why)
    made = make_hosts(2)
    try:
        yield made
    finally:
        remove_hosts(made)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    yield from serve(tmp_path_factory, bind="0.0.0.0")


@pytest.fixture(scope="module")
def cluster(hosts, s3, tmp_path_factory):
    """The Prefect server on every address, the trbench pool and deployments, one worker per host that
    reaches the Prefect and S3 servers at its gateway and heartbeats every 2 s (gone after 6 s of silence); the
    sub-runs' flow runs heartbeat every 30 s."""
    prefect = LocalPrefect(tmp_path_factory.mktemp("prefect-home"), free_port(), bind="0.0.0.0")
    try:
        prefect.start_server()
        prefect.cli("work-pool", "create", "trbench", "--type", "process")
        prefect.cli("deploy", "--all")
        for host in hosts:
            s3_port = s3.endpoint.rsplit(":", 1)[1]
            env = {**s3.env, "AWS_ENDPOINT_URL": f"http://{host.gateway}:{s3_port}",
                   "PREFECT_API_URL": f"http://{host.gateway}:{prefect.port}/api",
                   "PREFECT_WORKER_HEARTBEAT_SECONDS": "2", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_S)}
            prefect.start_worker(host.name, limit=1, queue="default", netns=host.name, env=env)
        prefect.wait_workers_online({h.name for h in hosts})
        yield prefect
    finally:
        from trbench.cli_prefect import drain_workers

        drain_workers()  # while the server answers: what this process queued for it would be retried at exit for minutes
        prefect.stop()


def _spec(tr_id: str) -> dict:
    # one port for every sub-run: each host has its own loopback
    return {"tr_id": tr_id, "provider": "embedded", "backend": "openai", "ports": [18434], "models": MODELS,
            "baseline_model": "gemma3:270m", "grid": {"num_ctx": [512]}, "runs": RUNS, "requests_per_run": 2,
            "warmup_requests": 1, "min_ok_requests": 2, "max_tokens": 16, "seed": 1}


def _run_objects(s3: S3Server, tr_id: str, model_slug: str) -> dict[str, str]:
    """The run files (the ledger) of one model in the bucket: key -> ETag."""
    found = s3.filesystem().find(f"{BUCKET}/trs/{tr_id}/runs/model_slug={model_slug}", detail=True)
    return {k: str(v.get("ETag")) for k, v in found.items() if k.endswith(".parquet")}


class HostKiller(threading.Thread):
    """Waits until a sub-run has finished at least one run but not all of them on a known host, then kills that
    host; keeps what it saw (the host, the model, the run files already in the bucket) for the test."""

    def __init__(self, api_url: str, s3: S3Server, tr_id: str, hosts: list[Host]):
        super().__init__(daemon=True)
        self.api_url, self.s3, self.tr_id, self.hosts = api_url, s3, tr_id, hosts
        self.victim: Host | None = None
        self.model: str | None = None
        self.before: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from tasks.sub_runs import worker_of
        from trbench.data.store import slug

        try:
            with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
                deadline = time.monotonic() + 400
                while time.monotonic() < deadline and self.victim is None:
                    for run in httpx.post(f"{self.api_url}/flow_runs/filter", timeout=10,
                                          json={"flow_runs": {"tags": {"all_": ["trbench-fanout"]}}}).json():
                        model = next(m for m in MODELS if slug(m) in run["name"])
                        worker = worker_of(client, uuid.UUID(run["id"]))
                        files = _run_objects(self.s3, self.tr_id, slug(model))
                        if worker and 1 <= len(files) < RUNS - 1:
                            self.before, self.model = files, model
                            self.victim = next(h for h in self.hosts if h.name == worker)
                            kill_host(self.victim)
                            return
                    time.sleep(0.3)
        except BaseException as err:  # noqa: BLE001 - handed to the test, which fails with it
            self.error = err


def test_a_tr_over_two_hosts_on_s3_loses_nothing_when_a_host_dies(cluster, hosts, s3, tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.tr_fanout import tr_fanout
    from trbench.data.store import slug

    tr_id = f"hosts-{uuid.uuid4().hex[:8]}"
    spec_path = tmp_path / "fanout.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(tr_id)))
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    killer = HostKiller(cluster.api_url, s3, tr_id, hosts)
    killer.start()
    with temporary_settings({PREFECT_API_URL: cluster.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: FLOW_HEARTBEAT_S}):
        state = tr_fanout(spec_path=str(spec_path), output_dir=f"s3://{BUCKET}/trs", deployment_name="tr/quickstart",
                          timeout_s=600, return_state=True)
    killer.join(timeout=5)
    logs = "\n".join(cluster.log(f"worker-{h.name}.log")[-3000:] for h in hosts)
    assert killer.error is None, killer.error
    assert killer.victim is not None, f"no sub-run was caught part-way: {state.message}\n{logs}"
    assert state.is_completed(), f"{state.message}\n{logs}"
    survivor = next(h for h in hosts if h != killer.victim)

    # the dataset is in the bucket, read back here: every run of the matrix exactly once, all valid
    local = tmp_path / "read"
    s3.filesystem().get(f"{BUCKET}/trs/{tr_id}", str(local), recursive=True)
    runs = ds.dataset(local / "runs", partitioning="hive").to_table().to_pandas()
    assert len(runs) == len(MODELS) * RUNS and runs["run_id"].is_unique, runs[["model", "run_id"]]
    assert runs["valid"].all()
    requests = ds.dataset(local / "requests", partitioning="hive").to_table().to_pandas()
    measured = requests[~requests["is_warmup"]]
    # every run as many measured requests as any other (a run measured twice would hold twice as many)
    assert measured.groupby("run_id").size().nunique() == 1 and set(measured["run_id"]) == set(runs["run_id"])
    assert not requests.duplicated(["run_id", "request_index", "is_warmup"]).any()

    # the runs the dead host had finished were kept, not measured again: the same objects, untouched
    after = _run_objects(s3, tr_id, slug(killer.model or ""))
    assert {k: after.get(k) for k in killer.before} == killer.before

    # its share finished on the other worker, as a second attempt; the worker of each from Prefect's API
    manifest = json.loads((local / "manifest.json").read_text())
    shares = {h["model"]: h for h in manifest["fanout"]}
    moved = shares[killer.model]
    assert moved["worker"] == survivor.name and moved["flow_run"].endswith("-attempt2"), moved
    assert len(moved["earlier"]) == 1 and killer.victim.name in moved["earlier"][0], moved
    assert "no heartbeat" in moved["earlier"][0]
    assert {h["worker"] for h in shares.values()} <= {h.name for h in hosts}
    assert set(manifest["models"]) == set(MODELS)

    # each share's server log is there, neither host's written over by the other's
    logs_up = {p.relative_to(local / "logs").as_posix() for p in (local / "logs").rglob("*.log")}
    assert {f"{slug(m)}/embedded-0.log" for m in MODELS} <= logs_up, logs_up

    # the report over the union counts each run once: RUNS valid runs per model
    summary = json.loads(next((local / "report").glob("summary.json")).read_text())
    counts = {r["model"]: r["n"] for r in summary["records"] if r["workload"] == "single_agent" and r["metric"] == "cv_pct"}
    assert counts == {m: RUNS for m in MODELS}, counts
    assert "attempt 2" in (state.message or "") and survivor.name in (state.message or "")
