"""Load mode's tasks: one load step each, persisted at once (its requests, then its row: the ledger)."""

from __future__ import annotations


from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from trbench.data import store
from trbench.engines import Instance
from trbench.run import progress
from trbench.run.load_step import StepPlan, execute_step, failed_step, prepare_server, wire_client
from trbench.run.session import TRSession


def _summary(row: dict) -> str:
    def f(v, d=1):
        return "n/a" if v is None else f"{v:.{d}f}"

    return (f"{row['run_id']}: {row['n_ok']}/{row['n_requests']} ok, {f(row['request_rps'], 2)} req/s, "
            f"{f(row['output_tps'])} output tok/s, TTFT p95 {f(row['ttft_ms_p95'])} ms, queue p50 "
            f"{f(row['queue_ms_p50'])} ms, goodput {f(row['goodput_rps'], 2)} req/s")


@task(name="load-step", cache_policy=NO_CACHE, task_run_name="load {plan.run_id}")
def load_step(plan: StepPlan, session: TRSession, inst: Instance) -> dict:
    """One load step of one cell on `inst`; its Parquet files are written before the task returns. A
    server that will not load for the cell is recorded as the step's failure, and the sweep goes on."""
    spec, prompts, manifest, manifest_digest = session.spec, session.prompts, session.manifest, session.digest
    root, gate = session.root, session.gate
    gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    try:
        prepare_server(inst, spec, plan)  # the cell's model loaded before the clock; a dead server started again
    except Exception as err:  # noqa: BLE001 - recorded, the other steps go on
        row = failed_step(spec, plan, str(err), manifest_digest)
        store.write_run(root, row, [], manifest, kind="load")
        progress.emit(kind="run_finished", **progress.load_step_figures(row))
        return row
    row, rows = execute_step(spec, plan, wire_client(spec), prompts, manifest_digest, gate)
    gate.check()  # the server may have been stopped under this step: a step cut short is not written
    store.write_run(root, row, rows, manifest, kind="load")
    get_run_logger().info(_summary(row))
    progress.emit(kind="run_finished", **progress.load_step_figures(row))
    return row
