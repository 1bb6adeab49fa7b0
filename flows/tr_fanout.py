"""tr_fanout: one TR matrix spread over several worker hosts, one report over the union.

  1. load the spec (with overrides) and split it into one sub-run per model
  2. start each sub-run on a tr deployment (run_deployment): any worker of its pool takes it,
     so with one worker per GPU host (`--limit 1`) each host measures a share on its own instances
  3. every sub-run writes into the same tr_id under the same output_dir: one Parquet dataset
     (output_dir must be the same place from every host: object storage, s3://bucket/prefix, or a
     path every host sees at the same place, e.g. an NFS mount)
  4. wait for all, record which worker took which sub-run, from Prefect's API (table artifact
     `<tr_id>-fanout`); a sub-run whose host died is started again on another worker, where the
     TR's resume skips every run the lost host finished (tasks.sub_runs)
  5. merge the sub-runs' manifests, then flag outliers, render the report and validate once,
     over the union
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from flows.tr import expand_tr_id
from tasks.steps import PrefectSteps, artifact_key
from tasks.sub_runs import SubRun, latest, start, watch
from trbench.config.paths import resolve_path
from trbench.tr.closing import flag_outliers, render_report, suite_results, validate, write_failure_log
from trbench.tr.opening import load_tr_spec
from trbench.data import remote, store
from trbench.data.environment import FanoutHost, Manifest
from trbench.config.spec import MatrixSpec
from trbench.prose import count


def sub_run_parameters(spec: MatrixSpec, spec_path: str, output_dir: str,
                       ports: list[list[int]] | None) -> list[dict]:
    """One tr parameter set per model: the same tr_id and output_dir, one model each, the servers' logs in a
    folder of the sub-run's own (logs/<model slug>/: hosts never write over each other's)."""
    if spec.multi_agent and spec.multi_agent.models:
        raise ValueError("tr_fanout splits the matrix by model and cannot split multi_agent.models; fix: remove "
                         "multi_agent.models from the spec (every model then runs the multi-agent scenarios)")
    if ports is not None and len(ports) != len(spec.models):
        raise ValueError(f"ports: {count(len(ports), 'port list')} for {count(len(spec.models), 'sub-run')}; "
                         "fix: give one list per model, in the spec's model order")
    return [
        {"spec_path": spec_path, "tr_id": spec.tr_id, "models": [model], "runs": spec.runs,
         "requests_per_run": spec.requests_per_run, "output_dir": output_dir, "server_logs": store.slug(model),
         **({"ports": ports[i]} if ports else {})}
        for i, model in enumerate(spec.models)
    ]


@task(name="merge-manifests", cache_policy=NO_CACHE)
def merge_manifests(root: Path, spec: MatrixSpec, history: list[SubRun]) -> Manifest:
    """One manifest for the union: the full spec, every model's facts and every host's instances
    (each sub-run wrote its own manifest.json; each run file keeps its sub-run's manifest)."""
    merged: Manifest | None = None
    hosts: list[FanoutHost] = []
    for sub in latest(history):
        files = sorted((root / "runs" / f"model_slug={store.slug(sub.model)}").glob("*.parquet"))
        if not files:
            continue
        m = store.read_manifest(files[-1])
        merged = merged or m.model_copy(deep=True)
        merged.models = {**merged.models, **m.models}
        earlier = [f"{e.flow_run} on {e.worker or '?'}: {e.state}, {e.message}"
                   for e in history if e.model == sub.model and e.attempt < sub.attempt]
        hosts.append(FanoutHost(model=sub.model, worker=sub.worker, flow_run=sub.flow_run, hardware=m.hardware,
                                instances=m.instances if "instances" in m.model_fields_set else None,
                                earlier=earlier or None))
    merged = merged or Manifest()
    merged.instances = [inst for h in hosts for inst in h.instances or []]
    merged.spec = spec.model_dump(mode="json")
    merged.fanout = hosts
    store.write_json_atomic(root / "manifest.json", merged.recorded())
    return merged


@flow(name="tr_fanout", log_prints=True)
def tr_fanout(
    spec_path: str = "deployments/quickstart.yaml",
    output_dir: str | None = None,
    deployment_name: str = "tr/quickstart",
    tr_id: str | None = None,
    models: list[str] | None = None,
    runs: int | None = None,
    requests_per_run: int | None = None,
    ports: list[list[int]] | None = None,
    timeout_s: int = 86400,
    max_attempts: int = 3,
) -> State:
    """Spread a TR matrix over the workers of a pool: one tr sub-run per model, all into one
    dataset (same tr_id and output_dir), then one report over the union.

    Args:
        spec_path: TR matrix spec (YAML), relative to the repository on every host.
        output_dir: where every sub-run writes: an s3:// (gs://, az://) URL, or a path every worker
            host sees at the same place (default: the spec's).
        deployment_name: the tr deployment the sub-runs run on ("flow/deployment").
        tr_id: override the spec's tr_id (`{date}` becomes the run's date).
        models: override the spec's models (one sub-run each).
        runs: override the runs per cell.
        requests_per_run: override the measured requests per run.
        ports: server ports per sub-run, in model order, e.g. [[18434], [18444]]; needed when two
            sub-runs can land on the same host (default: the spec's ports on every host).
        timeout_s: how long to wait for the sub-runs before cancelling them.
        max_attempts: how often one model's sub-run is started in all, when its host dies or its
            process crashes (each attempt resumes: what an earlier one finished is kept).
    """
    logger = get_run_logger()
    steps = PrefectSteps()
    spec, _, _ = load_tr_spec(steps, spec_path, None, {"tr_id": expand_tr_id(tr_id), "models": models, "runs": runs,
                                                    "requests_per_run": requests_per_run, "output_dir": output_dir})
    # object storage is the same place from every host; a local path, the same only as an absolute one
    out = spec.output_dir if remote.is_url(spec.output_dir) else str(resolve_path(spec.output_dir).resolve())
    root = store.tr_dir(out, spec.tr_id)

    params = sub_run_parameters(spec, spec_path, out, ports)
    started = [start(deployment_name, p, f"{spec.tr_id}-{store.slug(p['models'][0])}", p["models"][0], 1)
               for p in params]
    for sub in started:
        logger.info("sub-run %s (%s) started on %s", sub.flow_run, sub.model, deployment_name)

    history = watch(started, deployment_name, timeout_s, max_attempts=max_attempts, log=logger)
    create_table_artifact(key=artifact_key(f"{spec.tr_id}-fanout"),
                          table=[s.model_dump(mode="json", exclude={"parameters", "final"}) for s in history],
                          description=f"{spec.tr_id}: the sub-runs of the fan-out, every attempt, and the worker "
                                      "that took each")

    remote.pull(root)  # what every sub-run wrote, before the union is read
    merge_manifests(root, spec, history)
    write_failure_log(steps, root)
    flagged = flag_outliers(steps, root, spec)
    suite_results(steps, root, spec)  # over every sub-run's suite rows, with the ensemble of all the models
    report = render_report(steps, root, spec).markdown
    checked = validate(steps, root, spec, report)

    final = latest(history)
    shares = ", ".join(f"{s.model} -> {s.worker or '?'} ({s.state}"
                       + (f", attempt {s.attempt}" if s.attempt > 1 else "") + ")" for s in final)
    message = f"{spec.tr_id}: {count(len(final), 'sub-run')}: {shares}; report {report}"
    if flagged:
        message += f"; {count(len(flagged), 'config')} with outlier runs (rerun_flagged runs them again)"
    bad = [s for s in final if s.state != "Completed"]
    if bad:
        return Failed(message=message + "; failed: " + "; ".join(f"{s.model}: {s.message}" for s in bad))
    if not checked.success:
        return Failed(message=message + "; validation failed: " + "; ".join(f.message for f in checked.failures[:3]))
    logger.info(message)
    return Completed(message=message)
