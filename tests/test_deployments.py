"""prefect.yaml against a fresh local Prefect server: `prefect deploy --all` (done by the local_prefect
fixture), the deployments' parameter forms, the nightly cron schedules (off until switched on), and
the `{date}` tr_id of scheduled runs."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx
import pytest

from flows.tr import expand_tr_id

DEPLOYMENTS = {"tr/quickstart", "tr/tr116", "rerun_flagged/rerun", "report/report", "tr_fanout/fanout",
               "tr/load-quickstart"}


def deployments(api_url: str) -> dict[str, dict]:
    flows = {f["id"]: f["name"] for f in httpx.post(f"{api_url}/flows/filter", json={}, timeout=10).json()}
    found = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=10).json()
    return {f"{flows[d['flow_id']]}/{d['name']}": d for d in found}


def test_deploy_all_creates_every_deployment_on_the_trbench_process_pool(local_prefect):
    api = local_prefect.api_url
    found = deployments(api)
    assert set(found) == DEPLOYMENTS, local_prefect.deployed
    pool = httpx.get(f"{api}/work_pools/trbench", timeout=10).json()
    assert pool["type"] == "process"
    assert {d["work_pool_name"] for d in found.values()} == {"trbench"}
    assert found["tr_fanout/fanout"]["work_queue_name"] == "control"
    assert found["tr/quickstart"]["work_queue_name"] == "default"
    # the custom run form's fields come from these JSON schemas: every override is a plain type or null
    props = found["tr/quickstart"]["parameter_openapi_schema"]["properties"]
    assert props["models"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}
    assert props["ports"]["anyOf"][0] == {"items": {"type": "integer"}, "type": "array"}
    assert props["runs"]["anyOf"][0] == {"type": "integer"}
    assert props["spec"]["anyOf"][0]["type"] == "object"
    assert all(p.get("description") for p in props.values())  # from the flow's docstring
    assert found["rerun_flagged/rerun"]["parameter_openapi_schema"]["required"] == ["tr_id"]
    load = found["tr/load-quickstart"]
    assert load["parameters"]["spec_path"] == "deployments/load-quickstart.yaml"
    assert all(p.get("description") for p in load["parameter_openapi_schema"]["properties"].values())
    assert set(found["report/report"]["parameter_openapi_schema"]["properties"]) >= {"tr_id", "baseline"}
    # flow runs start in the repository the deployment was made from
    assert found["tr/quickstart"]["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"]


def tr116_schedule(api_url: str) -> tuple[dict, dict]:
    d = deployments(api_url)["tr/tr116"]
    (schedule,) = d["schedules"]
    return d, schedule


def scheduled_runs(api_url: str, deployment_id: str) -> list[dict]:
    return httpx.post(f"{api_url}/flow_runs/filter", timeout=10, json={
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}).json()


def test_nightly_schedule_is_off_until_resumed(local_prefect):
    api = local_prefect.api_url
    d, schedule = tr116_schedule(api)
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["active"] is False and schedule["slug"] == "nightly"
    assert d["parameters"]["tr_id"] == "TR116-{date}"  # each scheduled run is a TR run of its own
    assert not deployments(api)["tr/quickstart"]["schedules"]

    # the documented switch: `prefect deployment schedule resume <deployment> <schedule id>` (and pause)
    assert schedule["id"] in local_prefect.cli("deployment", "schedule", "ls", "tr/tr116").stdout
    local_prefect.cli("deployment", "schedule", "resume", "tr/tr116", schedule["id"])
    assert tr116_schedule(api)[1]["active"] is True
    local_prefect.cli("deployment", "schedule", "pause", "tr/tr116", schedule["id"])
    assert tr116_schedule(api)[1]["active"] is False
    assert not scheduled_runs(api, d["id"])  # pausing removes the runs it had scheduled


def _sqlalchemy_2_1() -> bool:
    import sqlalchemy

    return tuple(int(x) for x in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)


@pytest.mark.xfail(_sqlalchemy_2_1(), strict=True,
                   reason="Prefect 3.8.8's scheduler service fails on SQLAlchemy 2.1 ('Can't evaluate bulk DML "
                          "statement' in _insert_scheduled_flow_runs): no cron run is ever created; pin sqlalchemy<2.1")
def test_resumed_schedule_creates_the_nightly_runs(local_prefect):
    api = local_prefect.api_url
    d, schedule = tr116_schedule(api)
    local_prefect.cli("deployment", "schedule", "resume", "tr/tr116", schedule["id"])
    try:
        deadline = time.monotonic() + 30  # the scheduler runs every 5 s on the test server
        while not (runs := scheduled_runs(api, d["id"])) and time.monotonic() < deadline:
            time.sleep(2)
        assert runs, "no scheduled run 30 s after resuming the schedule"
        assert {r["expected_start_time"][11:16] for r in runs} == {"02:00"}
        assert {r["parameters"]["tr_id"] for r in runs} == {"TR116-{date}"}
    finally:
        local_prefect.cli("deployment", "schedule", "pause", "tr/tr116", schedule["id"])


def test_date_in_tr_id_is_the_scheduled_date(monkeypatch):
    from prefect.runtime import flow_run

    assert expand_tr_id("TR116") == "TR116" and expand_tr_id(None) is None
    monkeypatch.setitem(flow_run.FIELDS, "scheduled_start_time", lambda: datetime(2026, 1, 31, 2, 0, tzinfo=timezone.utc))
    assert expand_tr_id("TR116-{date}") == "TR116-2026-01-31"

