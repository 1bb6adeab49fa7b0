"""rerun_flagged: run the configs whose runs were flagged as outliers again, as a new attempt.

  1. load the TR run's recorded spec and its outlier flags
  2. plan every run of each flagged config with attempt = the config's highest attempt + 1
     (old rows are kept; the report counts the latest attempt and shows what changed); when a
     crash cut that latest attempt short, only its missing runs are run, under its own number
  3. the same body as tr: preflight, instances, runs, failure log, new flags,
     report, Great Expectations
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.tr import run_tr_flow
from trbench.config.paths import output_root, resolve_path
from trbench.measure import outliers
from trbench.data import store
from trbench.config.agents import AgentSuite, load_agents
from trbench.run.multi import MultiRunPlan
from trbench.config.prompts import PromptSuite, load_prompts
from trbench.run.plan import attempt_plans
from trbench.run.single import RunPlan
from trbench.config.spec import MatrixSpec, parse_spec
from trbench.workloads.session import Selection


@task(name="load-recorded-spec", cache_policy=NO_CACHE)
def load_recorded_spec(tr_id: str, output_dir: str) -> tuple[MatrixSpec, PromptSuite, AgentSuite | None]:
    """The spec a TR run was made with, from its manifest."""
    root = store.open_tr(output_root(output_dir), tr_id)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no TR run {tr_id!r} under {root} (manifest.json missing); fix: check tr_id and output_dir")
    spec = parse_spec(json.loads(manifest_path.read_text())["spec"], f"spec recorded in {manifest_path}")
    spec = spec.with_overrides(output_dir=output_dir)
    agents = load_agents(resolve_path(spec.multi_agent.agents)) if spec.multi_agent else None
    return spec, load_prompts(resolve_path(spec.prompts)), agents


class NextAttempts(Selection):
    """Every run of each flagged config, one attempt higher than any before (runs only)."""

    rerun = True

    def __init__(self, flagged: list[outliers.FlaggedConfig]) -> None:
        self.cells = {(f.model, f.num_gpu, f.num_ctx, f.temperature, f.server_settings, f.harness)
                      for f in flagged if f.kind == "single"}
        self.scenarios = {(f.model, f.scenario, f.harness) for f in flagged if f.kind == "multi"}

    def single(self, plans: list[RunPlan], root: Path) -> list[RunPlan]:
        runs = store.read_frame(root, "runs")
        todo: list[RunPlan] = []
        for cell_hash in dict.fromkeys(p.cell_hash for p in plans):
            group = [p for p in plans if p.cell_hash == cell_hash]
            c = group[0].cell
            if (c.model, c.num_gpu, c.num_ctx, c.temperature, c.settings_text, group[0].harness) in self.cells:
                todo += attempt_plans(group, runs[runs["cell_hash"] == cell_hash])
        return todo

    def multi(self, plans: list[MultiRunPlan], root: Path) -> list[MultiRunPlan]:
        ma_runs = store.read_frame(root, "ma_runs")
        todo: list[MultiRunPlan] = []
        for key in dict.fromkeys((p.model, p.scenario, p.harness) for p in plans):
            if key in self.scenarios:
                group = [p for p in plans if (p.model, p.scenario, p.harness) == key]
                todo += attempt_plans(group, ma_runs[(ma_runs["model"] == key[0]) & (ma_runs["scenario"] == key[1])
                                                     & (ma_runs["harness"] == key[2])])
        return todo


# Prefect types task_runner as TaskRunner[PrefectFuture] (invariant), which its own ThreadPoolTaskRunner is not
@flow(name="rerun_flagged", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)  # type: ignore[arg-type]
def rerun_flagged(tr_id: str, output_dir: str = "outputs") -> State:
    """Run the flagged configs of TR run `tr_id` again (new attempt), re-validate, re-flag, re-report."""
    spec, prompts, agents = load_recorded_spec(tr_id, output_dir)
    flagged = outliers.flagged_configs(outliers.read_flags(store.tr_dir(output_root(output_dir), tr_id)))
    if not flagged:
        return Completed(message=f"{tr_id}: no flagged configs; nothing to run again")
    return run_tr_flow(spec, prompts, agents, NextAttempts(flagged))
