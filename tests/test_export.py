"""`trbench export`: every stored table of a planted TR, as CSV and as JSON Lines, reads back with the
table's rows and columns (list columns whole, from their JSON text), and bad input ends in one line
naming the field and the fix, exit code 2, no traceback. In process (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report_publish import FAST, plant
from tests.test_report_shapes import _embedding_steps
from trbench.cli import app
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.data.export import tables_with_rows
from trbench.prose import count

TR_ID = "planted"
TABLES = ["runs", "requests", "ma_runs", "load_steps", "load_requests", "emb_steps"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    root = out / TR_ID
    plant(root, {"fast-model": FAST}, multi={"fast-model": 60.0})
    _write_tr(root, parse_spec({**LOAD_SPEC, "tr_id": TR_ID}), fail_every=4)  # failed requests: error_kinds counts
    _embedding_steps(root, TR_ID)
    return out


def _export(outputs: Path, *args: str):
    return CliRunner().invoke(app, ["export", TR_ID, "--output-dir", str(outputs), *args])


def test_the_planted_tr_has_the_tables_the_test_exports(outputs: Path) -> None:
    assert set(TABLES) <= set(tables_with_rows(outputs / TR_ID))


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_each_format_round_trips_rows_and_columns(outputs: Path, table: str, fmt: str) -> None:
    result = _export(outputs, "--table", table, "--format", fmt)
    assert result.exit_code == 0, result.output
    path = outputs / TR_ID / "exports" / f"{table}.{fmt}"
    stored = store.read_frame(outputs / TR_ID, table, store.table_schema(table).names)
    assert f"{table}: {count(len(stored), 'row')}, {count(stored.shape[1], 'column')} -> {path}" in " ".join(result.output.split())
    back = pd.read_csv(path) if fmt == "csv" else pd.read_json(path, lines=True)
    assert list(back.columns) == store.table_schema(table).names
    assert len(back) == len(stored) > 0
    assert list(back["run_id"].astype(str)) == list(stored["run_id"].astype(str))


def test_list_columns_read_back_whole(outputs: Path, tmp_path: Path) -> None:
    steps = store.read_frame(outputs / TR_ID, "load_steps")
    kinds = [[dict(k) for k in v] for v in steps["error_kinds"]]
    assert any(kinds)  # a step with failed requests: a list of {kind, count}
    csv_path, jsonl_path = tmp_path / "steps.csv", tmp_path / "steps.jsonl"
    assert _export(outputs, "--table", "load_steps", "--output", str(csv_path)).exit_code == 0
    assert _export(outputs, "--table", "load_steps", "--format", "jsonl", "--output", str(jsonl_path)).exit_code == 0
    from_csv = pd.read_csv(csv_path)
    assert [json.loads(v) for v in from_csv["error_kinds"]] == kinds
    assert [json.loads(line)["error_kinds"] for line in jsonl_path.read_text().splitlines()] == kinds
    assert str(from_csv["started_at"].iloc[0]).endswith("Z") and "T" in from_csv["started_at"].iloc[0]
    requests = pd.read_csv(_exported(outputs, "requests"))
    stored = store.read_frame(outputs / TR_ID, "requests")
    assert requests["decode_tps"].equals(stored["decode_tps"])  # floats as stored, to the last bit


def _exported(outputs: Path, table: str) -> Path:
    assert _export(outputs, "--table", table).exit_code == 0
    return outputs / TR_ID / "exports" / f"{table}.csv"


def test_output_dash_writes_to_standard_output(outputs: Path) -> None:
    result = _export(outputs, "--table", "ma_runs", "--format", "jsonl", "--output", "-")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(store.read_frame(outputs / TR_ID, "ma_runs"))


@pytest.mark.parametrize("args, words", [
    (["--table", "nope"], ["--table 'nope': no such table; fix: one of requests, runs, ma_requests", "telemetry"]),
    (["--format", "xlsx"], ["--format 'xlsx': no such format; fix: one of csv, jsonl"]),
    (["--table", "telemetry"], [f"--table telemetry: TR '{TR_ID}' has no telemetry data", "fix: one of the tables "
                                "it has: requests, runs,", "load_steps"]),
])
def test_bad_input_is_one_line_with_the_fix(outputs: Path, args: list[str], words: list[str]) -> None:
    result = _export(outputs, *args)
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith("error: ") and all(w in line for w in words), line
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))


def test_a_tr_without_data_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "missing", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    line = " ".join(result.output.split())
    assert line == f"error: no data for tr_id 'missing' under {tmp_path / 'missing'}; fix: check --output-dir and " \
                   "the tr_id", line


def test_an_unwritable_output_is_named(outputs: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _export(outputs, "--output", str(blocker / "runs.csv"))
    assert result.exit_code == 2
    assert f"--output {blocker / 'runs.csv'}: cannot write it" in " ".join(result.output.split())
