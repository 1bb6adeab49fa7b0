"""Planning without Prefect (trbench/run/plan.py): the runs of a matrix, their lanes, the OOM
ladder, and what a resume or a rerun of flagged configs still has to measure. No server: the
spec's instances are external URLs that nothing here contacts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from trbench.data.model_facts import ModelFacts
from trbench.data.environment import Manifest
from trbench.config.prompts import load_prompts
from trbench.config.spec import OptionSet, parse_spec
from trbench.data import store
from trbench.engines import create_instances
from trbench.run import plan
from trbench.run.single import failed_run
from trbench.run.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = load_prompts("datasets/prompts/single_agent.yaml")


def _spec(**extra):
    return parse_spec({"tr_id": "plan", "provider": "external", "backend": "ollama",
                       "urls": ["http://127.0.0.1:9", "http://127.0.0.1:10"], "models": ["a", "b", "c"],
                       "grid": {"num_ctx": [512, 1024], "num_gpu": [99]}, "runs": 2, **extra})


def _plans(spec, facts=None):
    return plan.plan_runs(spec, PROMPTS, create_instances(spec.server, Path("/tmp"), spec.instance_count), facts)


def test_planning_needs_no_prefect():
    code = "import sys, trbench.run.plan; sys.exit(any(m.split('.')[0] == 'prefect' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0


def test_every_cell_times_runs_with_unique_ids_and_base_models_as_completion():
    spec = _spec()
    plans = _plans(spec, {"b": ModelFacts(prompt_style="completion")})
    assert len(plans) == 3 * 2 * 2
    assert len({p.run_id for p in plans}) == len(plans)
    assert {p.prompt_style for p in plans if p.cell.model == "b"} == {"completion"}
    assert {p.prompt_style for p in plans if p.cell.model != "b"} == {"chat"}
    assert plan.plan_runs(spec.model_copy(update={"single_agent": False}), PROMPTS, []) == []


def test_serial_is_one_lane_parallel_spreads_models_over_instances():
    spec = _spec()
    instances = create_instances(spec.server, Path("/tmp"), spec.instance_count)
    (serial,) = plan.plan_lanes(_plans(spec), spec, instances)
    assert serial.instance == 0 and len(serial.plans) == 12

    par = _spec(execution={"mode": "parallel", "max_parallel": 2})
    instances = create_instances(par.server, Path("/tmp"), par.instance_count)
    lanes = plan.plan_lanes(_plans(par), par, instances)
    assert [lane.instance for lane in lanes] == [0, 1]
    models = [{p.cell.model for p in lane.plans} for lane in lanes]
    assert models == [{"a", "c"}, {"b"}]
    for lane in lanes:
        assert {p.instance_url for p in lane.plans} == {instances[lane.instance].url}


def test_the_oom_ladder_lowers_the_cell_and_remembers_where_it_came_from():
    spec = _spec()
    group = [p for p in _plans(spec) if p.cell.model == "a" and p.cell.num_ctx == 1024]
    rungs = [OptionSet(num_gpu=40), OptionSet(num_ctx=512)]
    decision, lower = plan.oom_decision(group, [group[0].run_id], rungs, spec, PROMPTS)
    assert [p.cell.num_gpu for p in lower] == [40, 40] and [p.cell.num_ctx for p in lower] == [1024, 1024]
    assert {p.fallback_from for p in lower} == {group[0].cell.label}
    assert lower[0].cell_hash != group[0].cell_hash and lower[0].run_id != group[0].run_id
    assert decision["from_config"] == group[0].cell.label and decision["to_config"] == lower[0].cell.label
    assert len(rungs) == 1  # the rung is used up

    _, lowest = plan.oom_decision(lower, [lower[0].run_id], rungs, spec, PROMPTS)
    assert {p.fallback_from for p in lowest} == {group[0].cell.label}  # still the first config
    assert lowest[0].cell.num_gpu == 40 and lowest[0].cell.num_ctx == 512

    last, none = plan.oom_decision(lowest, [lowest[0].run_id], rungs, spec, PROMPTS)
    assert none == [] and last["to_config"] is None and "stays failed" in last["decision"]


def test_next_attempt_or_the_runs_a_crashed_attempt_is_missing():
    group = [p for p in _plans(_spec()) if p.cell.model == "a" and p.cell.num_ctx == 512]

    def stored(*plans_):
        return pd.DataFrame({"run_id": [p.run_id for p in plans_], "attempt": [p.attempt for p in plans_]},
                            columns=["run_id", "attempt"])

    assert {p.attempt for p in plan.attempt_plans(group, stored())} == {1}
    second = plan.attempt_plans(group, stored(*group))
    assert [p.attempt for p in second] == [2, 2]
    missing = plan.attempt_plans(group, stored(*group, second[0]))  # attempt 2 was cut short
    assert [(p.run_id, p.attempt) for p in missing] == [(second[1].run_id, 2)]


def test_resuming_leaves_out_the_runs_with_a_run_file(tmp_path):
    from trbench.workloads.session import Selection

    spec = _spec()
    plans = _plans(spec)
    row = failed_run(RunSettings.of(spec), plans[3], "planted", "digest")
    store.write_run(tmp_path, row, [], Manifest())
    single, multi = Selection().single(plans, tmp_path), Selection().multi([], tmp_path)
    assert [p.run_id for p in single] == [p.run_id for p in plans if p is not plans[3]] and multi == []
