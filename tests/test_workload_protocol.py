"""The workload protocol (trbench/workloads/): the built-in workloads run without Prefect (the
fallback ladder, resume and a down server, through DirectSteps), and a new workload, one module's
worth of code and one registration, runs through the TR flow and writes its own report section."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pytest

from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from trbench.data.environment import Manifest
from trbench.config.prompts import load_prompts
from trbench.config.spec import MatrixSpec, parse_spec
from trbench.data import failures, store
from trbench.workloads import Measured, Planned, ReportPart, active, register, unregister
from trbench.workloads.session import TRSession, open_session
from trbench.workloads.run_outcomes import RunOutcome
from trbench.workloads.single_agent import SingleAgent
from trbench.workloads.steps import DirectSteps

ROOT = Path(__file__).resolve().parent.parent


def ladder_spec(url: str, tr_id: str = "ladder") -> MatrixSpec:
    return parse_spec({"tr_id": tr_id, "provider": "external", "backend": "ollama", "urls": [url],
                       "models": [DEFAULT_MODEL], "grid": {"num_gpu": [80], "num_ctx": [1024]}, "runs": 2,
                       "requests_per_run": 2, "warmup_requests": 0, "max_tokens": 4,
                       "oom_fallback": [{"num_gpu": 40}], "prompts": str(ROOT / "datasets/prompts/single_agent.yaml")},
                      "test spec")


def session_for(spec: MatrixSpec, out: Path) -> TRSession:
    """A session as the flow opens one, its steps plain calls: no Prefect anywhere."""
    session = open_session(spec, load_prompts(spec.prompts), None, out, DirectSteps())
    session.manifest, session.digest = Manifest(spec=spec.model_dump(mode="json")), "digest"
    return session


def measure(session: TRSession) -> Measured:
    measured = Measured()
    workload = SingleAgent()
    workload.execute(session, workload.plan(session), measured)
    return measured


def test_the_ladder_and_resume_run_in_the_library_without_prefect(tmp_path):
    with FakeOllama(models={DEFAULT_MODEL: FakeModel(oom_above_num_gpu=50)}) as server:
        session = session_for(ladder_spec(server.url), tmp_path)
        first = measure(session)
        # 80 layers: the first run runs out of memory, its twin is not run; the ladder moves to 40
        by_id = {o.run_id: o for o in first.runs}
        assert [o.valid for o in first.runs] == [False, False, True, True], by_id
        assert "oom" in first.runs[0].error_kinds
        assert (first.runs[1].invalid_reason or "").startswith(store.NOT_RUN)
        failures.write_failure_log(session.root)  # as the closing step does
        decisions = failures.read_failure_log(session.root)["fallback_decision"].dropna()
        assert set(decisions) == {"retried at gpu40_ctx1024_temp0.8 (next rung of oom_fallback)"}
        sent = len(server.bodies("/api/chat"))
        # resuming: every run has its file, nothing is sent again and no decision is taken twice
        again = measure(session_for(ladder_spec(server.url), tmp_path))
        assert again.runs == [] and len(server.bodies("/api/chat")) == sent
    runs = store.read_frame(tmp_path / "ladder", "runs").set_index("run_id")
    assert sorted(runs["num_gpu"].tolist()) == [40, 40, 80, 80]
    # the twin is decided (its code), so a resume does not measure it
    assert runs["not_run"].fillna("measured").to_dict() == {
        o.run_id: "oom_rung" if o is first.runs[1] else "measured" for o in first.runs}
    assert store.runs_to_retry(tmp_path / "ladder") == set()


def test_a_server_that_stops_answering_leaves_the_rest_not_run_with_the_reason(tmp_path):
    server = FakeOllama(models={DEFAULT_MODEL: FakeModel()})
    server.__enter__()
    spec = ladder_spec(server.url, "down").model_copy(update={"oom_fallback": []})
    session = session_for(spec, tmp_path)
    server.__exit__(None, None, None)  # gone before the first run
    measured = measure(session)
    assert [o.valid for o in measured.runs] == [False, False]
    assert session.faults.down(session.instances[0].name)
    assert store.SERVER_DOWN in (measured.runs[1].invalid_reason or "")
    assert (measured.runs[1].invalid_reason or "").startswith(store.NOT_RUN)
    # a resume measures those again: a down server's runs are not decided (their code says so)
    codes = store.read_frame(session.root, "runs").set_index("run_id")["not_run"]
    assert codes[measured.runs[1].run_id] == "server_down"
    assert store.runs_to_retry(session.root) == {measured.runs[1].run_id}


# --- a workload of a test's own: one class, one registration ----------------------------------------

ECHO_SCHEMA = pa.schema([("instance", pa.string()), ("status", pa.int32())])


class Echo:
    """Asks every live server for its model list, one step each, and reports how each answered."""

    name: ClassVar[str] = "echo"
    tables: ClassVar[tuple[str, ...]] = ("echo",)

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.tr_id.startswith("mock-echo") and not rerun

    def plan(self, session: TRSession) -> Planned:
        return Planned(units=session.live)

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        for inst in planned.units:
            session.steps.call("echo-step", f"echo {inst.name}", self._one, session, inst)
            measured.other.setdefault(self.name, []).append(inst.name)

    @staticmethod
    def _one(session: TRSession, inst) -> None:
        import httpx

        status = httpx.get(f"{inst.url}/v1/models", timeout=10).status_code
        table = pa.Table.from_pylist([{"instance": inst.name, "status": status}], schema=ECHO_SCHEMA)
        store.write_table_atomic(session.root / "echo" / f"{inst.name}.parquet", table)

    def report_section(self, root: Path) -> ReportPart | None:
        files = sorted((root / "echo").glob("*.parquet"))
        if not files:
            return None
        rows = pa.concat_tables([pa.parquet.read_table(f) for f in files]).to_pylist()
        lines = ["| instance | HTTP status |", "|---|---:|"] + [f"| {r['instance']} | {r['status']} |" for r in rows]
        return ReportPart(title="Echo", markdown="How each server answered a model list request.\n\n" + "\n".join(lines))


@pytest.fixture
def echo():
    register(Echo())
    yield
    unregister("echo")


def test_registration_puts_a_workload_in_order_and_only_where_wanted(echo):
    spec = parse_spec({"tr_id": "mock-echo", "provider": "mock", "models": ["m:1"]}, "test spec")
    assert [w.name for w in active(spec)] == ["single", "echo"]
    assert [w.name for w in active(spec, rerun=True)] == ["single"]
    assert "echo" not in [w.name for w in active(spec.model_copy(update={"tr_id": "mock-other"}))]


@pytest.mark.integration
def test_a_registered_workload_runs_through_the_flow_and_into_the_report(echo, prefect_api, tmp_path, free_ports):
    import pyarrow.parquet  # noqa: F401 - pa.parquet in report_section

    from flows.tr import tr

    spec = {"tr_id": "mock-echo", "provider": "mock", "backend": "openai",
            "server": {"ports": free_ports(1), "first_token_ms": 1, "token_ms": 0}, "models": ["mock:model"],
            "grid": {"num_ctx": [512]}, "runs": 1, "requests_per_run": 1, "warmup_requests": 0, "max_tokens": 4,
            "ttft": "cold", "prompts": str(ROOT / "datasets/prompts/single_agent.yaml")}
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    root = tmp_path / "mock-echo"
    assert pa.parquet.read_table(root / "echo" / "mock-0.parquet").to_pylist() == [{"instance": "mock-0", "status": 200}]
    md = (root / "report" / "mock-echo.md").read_text()
    assert "## Echo\n\nHow each server answered a model list request." in md and "| mock-0 | 200 |" in md
    assert md.index("## Echo") < md.index("## Recommendations")
    html = (root / "report" / "mock-echo.html").read_text()
    assert "<h2>Echo</h2>" in html and "<td>mock-0</td>" in html


def test_a_run_outcome_holds_its_error_kinds_as_a_list():
    row = {"run_id": "r", "model": "m", "valid": False, "n_ok": 0, "n_errors": 3, "invalid_reason": "x",
           "decode_tps_p50": None}
    assert RunOutcome.of_run({**row, "error_kinds": ["oom", "connect"]}).error_kinds == ["oom", "connect"]
    assert RunOutcome.of_run({**row, "error_kinds": None}).error_kinds == []
    multi = RunOutcome.of_multi_run({"run_id": "r", "model": "m", "valid": True, "invalid_reason": None, "speedup": 1.5})
    assert (multi.speedup, multi.contention, multi.error_kinds) == (1.5, None, [])
