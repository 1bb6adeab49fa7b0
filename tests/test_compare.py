"""`trbench compare TR_A TR_B [more]` and the regression check's matching: cells are matched on workload,
model and config values (report/matching.py), never on a content hash, so the same model x config measured
through the mock provider (an OpenAI-wire server in-process, as the embedded llama.cpp engine serves) and
through the fake Ollama in tests/fakes is one cell, and the provider and backend are named as differing
settings. A TR against itself: every cell matched, no difference; a model one TR lacks: listed unmatched;
no common cell: one line, exit 1. In process (typer's CliRunner) against planted or fake-served TRs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_port
from typer.testing import CliRunner

from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report_publish import FAST, MANIFEST, SLOW, plant
from trbench.cli import app
from trbench.config.prompts import load_prompts
from trbench.config.spec import parse_spec
from trbench.report.build import build_report
from trbench.report.comparison import DIFFERENCE, NO_DIFFERENCE, compare_trs, load_side
from trbench.tr.opening import start_servers
from trbench.workloads import Measured
from trbench.workloads.session import open_session
from trbench.workloads.single_agent import SingleAgent
from trbench.workloads.steps import DirectSteps

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent


def _compare(output_dir: Path, *args: str):
    return CliRunner().invoke(app, ["compare", *args, "--output-dir", str(output_dir)])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TR of every compared workload (single agent, multi-agent, load) and one with a second model."""
    out = tmp_path_factory.mktemp("compare")
    plant(out / "all", {"fast-model": FAST}, tr_id="all", multi={"fast-model": 60.0})
    _write_tr(out / "all", parse_spec({**LOAD_SPEC, "tr_id": "all"}))
    plant(out / "two", {"fast-model": {**FAST, "tps": 150.0}, "slow-model": SLOW}, tr_id="two")
    plant(out / "other", {"slow-model": SLOW}, tr_id="other")
    return out


def test_a_tr_compared_with_itself_matches_every_cell_and_shows_no_difference(outputs):
    result = _compare(outputs, "all", str(outputs / "all"), "--format", "json")  # a tr_id and a folder
    assert result.exit_code == 0, result.output
    c = json.loads(result.stdout)
    assert c["unmatched"] == [] and c["differing_settings"] == []
    # 2 single-agent configs, 2 multi-agent scenarios, 2 load steps
    assert c["matched_cells"] == 6
    assert {r["workload"] for r in c["rows"]} == {"single_agent", "multi_agent", "load"}
    assert {r["metric"] for r in c["rows"]} >= {"decode median", "TTFT cold median", "e2e median", "speedup median",
                                                "output tok/s of the step", "TTFT p95"}
    for row in c["rows"]:
        first, second = row["figures"]
        assert first["verdict"] is None and second["verdict"] == NO_DIFFERENCE, row
        assert second["change_pct"] == 0.0 and second["value"] == first["value"]
    md = _compare(outputs, "all", "all").stdout
    assert "## Matched cells (6)" in md and "None of the recorded settings differ." in md
    assert "Every cell is in every TR." in md and DIFFERENCE + " |" not in md.replace(NO_DIFFERENCE, "")


def test_a_model_one_tr_lacks_is_listed_unmatched_and_a_difference_is_called(outputs):
    result = _compare(outputs, "all", "two")
    assert result.exit_code == 0, result.output
    md = result.stdout
    assert "## Matched cells (2)" in md
    unmatched = md.split("## Unmatched cells", 1)[1]
    assert "| single_agent | slow-model | gpu0_ctx512_temp0.8 | two | all |" in unmatched
    assert "| multi_agent | fast-model | chimera_homo | all | two |" in unmatched
    assert "| load | smollm2:135m |" in unmatched
    c = compare_trs([load_side(outputs / "all"), load_side(outputs / "two")])
    decode = [r for r in c.rows if r.metric == "decode median"]
    assert len(decode) == 2 and all(r.figures[1].verdict == DIFFERENCE for r in decode)  # 150 vs 100 tok/s
    assert all(r.figures[1].change_pct == pytest.approx(50.0, abs=3.0) for r in decode)
    assert {s.setting for s in c.differing_settings} >= {"models", "workloads"}


def test_no_common_cell_is_one_line_and_exit_1(outputs):
    result = _compare(outputs, "all", "other")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == "nothing compared: no model in common (all: fast-model; other: slow-model)"  # in the workload both measured


def test_bad_input_is_exit_2(outputs):
    assert _compare(outputs, "all").exit_code == 2
    assert _compare(outputs, "all", "missing").exit_code == 2
    bad = _compare(outputs, "all", "two", "--format", "xml")
    assert bad.exit_code == 2 and "give md or json" in bad.output


def test_the_regression_check_compares_a_baseline_on_another_provider(tmp_path):
    ollama = {**MANIFEST, "instances": [{"name": "ollama-0", "provider": "ollama-process",
                                         "url": "http://127.0.0.1:11434"}]}
    plant(tmp_path / "llama", {"fast-model": FAST}, tr_id="llama")
    plant(tmp_path / "ollama", {"fast-model": {**FAST, "ttft": 80.0}}, tr_id="ollama", manifest=ollama,
          provider="ollama-process")
    result = build_report(tmp_path / "llama", baseline_root=tmp_path / "ollama").regression
    assert result.compared_cells == 2 and not result.missing
    assert [c.metric for c in result.improvements] == ["TTFT cold p50 ms"] * 2  # 50 ms here, 80 in the baseline
    provider = next(d for d in result.differences if d.setting == "provider")
    assert (provider.current, provider.baseline) == (["embedded"], ["ollama-process"])


# --- across providers: the same model measured on the mock provider and through the fake Ollama -------------


def _measure(spec_fields: dict, out: Path) -> Path:
    """A single-agent TR as the TR run measures one (servers started, manifest recorded), no Prefect."""
    spec = parse_spec({"models": [DEFAULT_MODEL], "grid": {"num_gpu": [80], "num_ctx": [1024]}, "runs": 2,
                       "requests_per_run": 3, "warmup_requests": 0, "max_tokens": 4, "seed": 1,
                       "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"), **spec_fields}, "test spec")
    session = open_session(spec, load_prompts(spec.prompts), None, out, DirectSteps())
    try:
        start_servers(session)
        workload = SingleAgent()
        measured = Measured()
        workload.execute(session, workload.plan(session), measured)
        assert measured.runs and all(r.valid for r in measured.runs), measured.runs
    finally:
        session.close()
    return out / spec.tr_id


def test_compare_matches_the_same_model_on_two_providers_and_names_what_differs(tmp_path):
    mock = _measure({"tr_id": "mock-llama", "provider": "mock", "backend": "openai",
                     "server": {"ports": [free_port()], "first_token_ms": 1, "token_ms": 1}}, tmp_path)
    with FakeOllama(models={DEFAULT_MODEL: FakeModel(token_delay_s=0.002)}) as server:
        ollama = _measure({"tr_id": "on-ollama", "provider": "external", "backend": "ollama", "urls": [server.url]},
                          tmp_path)
    result = _compare(tmp_path, mock.name, ollama.name, "--format", "json")
    assert result.exit_code == 0, result.output
    c = json.loads(result.stdout)
    assert c["matched_cells"] == 1 and c["unmatched"] == [] and c["mock_trs"] == ["mock-llama"]
    (e2e,) = [r for r in c["rows"] if r["metric"] == "e2e median"]  # the client's clock: every server has it
    assert (e2e["model"], e2e["config"]) == (DEFAULT_MODEL, "gpu80_ctx1024_temp0.8")
    assert all(f["value"] is not None and f["ci"] is not None for f in e2e["figures"])
    assert e2e["figures"][1]["verdict"] in (DIFFERENCE, NO_DIFFERENCE)
    # the mock's OpenAI wire reports no server timings: its decode figure is n/a, and so is the verdict
    (decode,) = [r for r in c["rows"] if r["metric"] == "decode median"]
    assert decode["figures"][1]["value"] is not None
    assert decode["figures"][0]["value"] is not None or decode["figures"][1]["verdict"] == "n/a"
    differing = {s["setting"]: s["values"] for s in c["differing_settings"]}
    assert differing["provider"] == [["mock"], ["external"]]
    assert differing["backend"] == [["openai"], ["ollama"]]
    md = _compare(tmp_path, mock.name, ollama.name).stdout
    assert "| provider | mock | external |" in md and "| backend | openai | ollama |" in md
    assert "Ran on the mock provider" in md
