"""The quality suites (spec `suites:`): scenario and QA items sent to every suite model on the
matrix's servers, a lane per instance (one request at a time per instance), answers scored as
they come; the per-scenario summary and results matrix are written at the TR's closing step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from trbench.backends import make_client
from trbench.config.spec import MatrixSpec
from trbench.data import store
from trbench.run.suite_runs import SuitePlan, Suites, execute_suite, load_suites, plan_suites, suite_lanes
from trbench.workloads import server_ops
from trbench.workloads.protocol import Measured, Planned, ReportPart
from trbench.prose import count
from trbench.workloads.run_outcomes import SuiteOutcome

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession


def suite_run(session: TRSession, plan: SuitePlan, suites: Suites) -> SuiteOutcome:
    """One suite run for one model; its rows are written before it returns. A server that would not
    load the model leaves a row per item with the error; the next run goes on."""
    s = session
    s.gate.check()
    inst = s.instances[plan.instance]
    failed = None
    try:
        server_ops.prepare(s, inst, plan.cell)
    except Exception as err:  # noqa: BLE001 - recorded in the rows, the other suites go on
        failed = f"{inst.name} would not load {plan.model}: {err}"
    client = None if failed else make_client(s.spec.backend, inst.url, s.spec.timeout_s, s.spec.stall_timeout_s,
                                                 api_key_env=inst.api_key_env)
    try:
        rows = execute_suite(s.spec, plan, client, suites, s.digest, s.gate, failed)
    finally:
        if client is not None:
            client.close()
    store.write_suite_run(s.root, plan.run_id, plan.model, rows, s.manifest)
    errors = sum(r["status"] != "ok" for r in rows)
    s.steps.log.info("suite run %s: %s, %d failed", plan.run_id, count(len(rows), "request"), errors)
    return SuiteOutcome(run_id=plan.run_id, requests=len(rows), errors=errors)


def suite_lane(plans: list[SuitePlan], session: TRSession, suites: Suites) -> list[SuiteOutcome]:
    """The suite runs of one instance, one after the other; finished ones (a resumed TR) are skipped,
    and an instance marked unusable runs none (the failure log says why)."""
    s = session
    inst = s.instances[plans[0].instance]
    done = store.finished_suite_run_ids(s.root)
    outcomes = []
    for plan in plans:
        if plan.run_id in done:
            continue
        if s.faults.down(inst.name):
            s.steps.log.warning("suite run %s not run: %s is down", plan.run_id, inst.name)
            continue
        outcomes.append(s.steps.call("suite-run", f"suite {plan.run_id}", suite_run, s, plan, suites))
    return outcomes


class QualitySuites:
    """Answer quality on scenarios and QA items (spec `suites:`)."""

    name: ClassVar[str] = "suites"
    tables: ClassVar[tuple[str, ...]] = ("suite_requests",)

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.suites is not None and not rerun  # a rerun of flagged configs measures speed only

    def plan(self, session: TRSession) -> Planned:
        return Planned(units=suite_lanes(plan_suites(session.spec, session.instances, session.facts)))

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        suites = load_suites(session.spec)
        results = session.steps.map("suite-lane", "suites on instance {item[0].instance_name}", suite_lane,
                                    planned.units, session, suites)
        errors = [r for r in results if isinstance(r, Exception)]
        measured.other.setdefault(self.name, []).extend(o for r in results if not isinstance(r, Exception) for o in r)
        if errors:
            raise errors[0]

    def report_section(self, root: Path) -> ReportPart | None:
        return None  # the report's Quality section
