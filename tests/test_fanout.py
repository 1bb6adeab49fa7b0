"""tr_fanout across two process workers: one sub-run per model on tr/quickstart, both into one
Parquet dataset, one report over the union.

The two workers (`host-a`, `host-b`, one flow run slot each) stand for two GPU hosts; here both run
on this machine, so each sub-run gets its own port. Two llama.cpp servers on 2 cores slow each
other down a lot: the runs are tiny.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pyarrow.dataset as ds
import yaml

from flows.tr_fanout import sub_run_parameters
from trbench.config.spec import parse_spec


def tiny_spec(tr_id: str) -> dict:
    return {"tr_id": tr_id, "provider": "embedded", "backend": "openai", "ports": [18434],
            "models": ["smollm2:135m", "gemma3:270m"], "baseline_model": "gemma3:270m",
            "grid": {"num_ctx": [512]}, "runs": 1, "requests_per_run": 2, "warmup_requests": 1,
            "min_ok_requests": 2, "max_tokens": 16, "seed": 1}


def test_sub_run_parameters_one_per_model_same_tr_id_and_dir():
    spec = parse_spec(tiny_spec("split"))
    params = sub_run_parameters(spec, "x.yaml", "/shared/out", [[20001], [20002]])
    assert [p["models"] for p in params] == [["smollm2:135m"], ["gemma3:270m"]]
    assert {p["tr_id"] for p in params} == {"split"} and {p["output_dir"] for p in params} == {"/shared/out"}
    assert [p["ports"] for p in params] == [[20001], [20002]]
    assert [p["server_logs"] for p in params] == ["smollm2_135m", "gemma3_270m"]  # each sub-run's logs its own
    assert "ports" not in sub_run_parameters(spec, "x.yaml", "/shared/out", None)[0]
    try:
        sub_run_parameters(spec, "x.yaml", "/o", [[1]])
    except ValueError as err:
        assert "one list per model" in str(err)
    else:
        raise AssertionError("a ports list per model is required")
    ma = parse_spec({**tiny_spec("ma"), "ports": [18434, 18435],
                     "multi_agent": {"scenarios": ["chimera_homo"], "models": ["gemma3:270m"]}})
    try:
        sub_run_parameters(ma, "x.yaml", "/o", None)
    except ValueError as err:
        assert "multi_agent.models" in str(err)
    else:
        raise AssertionError("multi_agent.models cannot be split by model")


def test_fanout_two_workers_share_the_matrix_one_dataset_one_report(local_prefect, free_ports, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.tr_fanout import tr_fanout

    tr_id = f"fanout-{uuid.uuid4().hex[:8]}"
    spec_path = tmp_path / "fanout.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(tr_id)))
    out = tmp_path / "shared"
    with temporary_settings({PREFECT_API_URL: local_prefect.api_url}):
        state = tr_fanout(spec_path=str(spec_path), output_dir=str(out), deployment_name="tr/quickstart",
                          ports=[[p] for p in free_ports(2)], timeout_s=480, return_state=True)
    logs = "\n".join(local_prefect.log(f"worker-{w}.log")[-2000:] for w in ("host-a", "host-b"))
    assert state.is_completed(), f"{state.message}\n{logs}"

    root = out / tr_id
    # one dataset: every cell of the matrix exactly once, written by the two sub-runs
    runs = ds.dataset(root / "runs", partitioning="hive").to_table().to_pandas()
    assert sorted(runs["model"]) == ["gemma3:270m", "smollm2:135m"]
    assert runs.groupby(["model", "num_gpu", "num_ctx", "temperature"]).size().eq(1).all()
    assert runs["valid"].all() and set(runs["tr_id"]) == {tr_id}

    # both workers took a share, each on its own process
    manifest = json.loads((root / "manifest.json").read_text())
    shares = {h["model"]: h["worker"] for h in manifest["fanout"]}
    assert set(shares) == {"smollm2:135m", "gemma3:270m"} and set(shares.values()) == {"host-a", "host-b"}, shares
    assert manifest["spec"]["models"] == ["smollm2:135m", "gemma3:270m"]
    assert set(manifest["models"]) == {"smollm2:135m", "gemma3:270m"}  # the facts of both sub-runs merged
    subs = httpx.post(f"{local_prefect.api_url}/flow_runs/filter",
                      json={"flow_runs": {"tags": {"all_": ["trbench-fanout"]}}}, timeout=10).json()
    mine = [r for r in subs if r["parameters"]["tr_id"] == tr_id]
    assert len(mine) == 2 and all(r["state"]["type"] == "COMPLETED" for r in mine)
    assert len({r["infrastructure_pid"] for r in mine}) == 2

    # one report over the union, rendered by the fan-out after both sub-runs finished
    report = (root / "report" / f"{tr_id}.md").read_text()
    assert "smollm2:135m" in report and "gemma3:270m" in report
    assert (root / "validation" / "validation.json").is_file()
    arts = httpx.post(f"{local_prefect.api_url}/artifacts/filter",
                      json={"artifacts": {"key": {"any_": [f"{tr_id}-fanout"]}}}, timeout=10).json()
    table = arts[0]["data"] if arts and not isinstance(arts[0]["data"], str) else json.loads(arts[0]["data"])
    assert {row["worker"] for row in table} == {"host-a", "host-b"}
