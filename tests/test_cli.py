"""The command line: one-line errors and exit codes (2 bad input, 1 failed run, 0 done)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def trbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trbench.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_validate_good_and_bad_specs(tmp_path):
    ok = trbench("validate", "deployments/quickstart.yaml")
    assert ok.returncode == 0 and "ok: quickstart: 2 models, 4 cells, 12 runs" in ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("tr_id: x\nmodels: [smollm2:135m]\ngrid: {num_ctx: [64]}\n")
    out = trbench("validate", str(bad))
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "field 'grid.num_ctx'" in lines[0] and "fix:" in lines[0]


def test_run_rejects_a_bad_spec_before_starting_anything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tr_id: x\nmodels: [smollm2:135m]\nprovider: vllm\n")
    out = trbench("run", str(bad), "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "field 'provider'" in out.stderr
    assert not (tmp_path / "x").exists()


def test_report_of_an_unknown_tr_id(tmp_path):
    out = trbench("report", "nope", "--output-dir", str(tmp_path))
    assert out.returncode == 2 and "no data for tr_id 'nope'" in out.stderr


def test_rerun_of_an_unknown_tr_id_says_so_before_prefect_starts(tmp_path):
    out = trbench("rerun", "nope", "--output-dir", str(tmp_path))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1
    assert "no TR run 'nope'" in lines[0] and "fix: check the tr_id and --output-dir" in lines[0]


def test_failed_preflight_is_explained_without_a_traceback(prefect_api, tmp_path, free_ports):
    port = free_ports(1)[0]
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"tr_id: busy\nmodels: [smollm2:135m]\nports: [{port}]\n")
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    with socket.socket() as holder:  # another server on the port: preflight's check, not the spec's
        holder.bind(("127.0.0.1", port))
        holder.listen()
        out = trbench("run", str(spec), "--output-dir", str(tmp_path), env=env)
        assert out.returncode == 1
        assert "Traceback" not in out.stderr + out.stdout
        cause = f"check 'port free': 127.0.0.1:{port} is already in use"
        # said once, by the last line: not also as Prefect's error records, nor in the piped summary
        assert (out.stderr + out.stdout).count(cause) == 1
        assert out.stderr.rstrip().splitlines()[-1].startswith(f"Failed: preflight failed: instance embedded-0, {cause}")
        assert out.stdout.splitlines()[-1] == "summary: 0 runs finished, 0 valid, 0 invalid; Failed"
        assert "report:" not in out.stderr and "data:" not in out.stderr  # nothing was measured: no paths to nothing
        log = (tmp_path / "busy" / "logs" / "run.log").read_text()
        assert "Traceback" in log and "PreflightError" in log  # the traceback is kept, in the run's log
        verbose = trbench("run", str(spec), "--output-dir", str(tmp_path), "--verbose", env=env)
        assert verbose.returncode == 1 and "Traceback" in verbose.stderr  # --verbose keeps it


def test_run_checks_what_validate_checks_before_prefect_starts(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("tr_id: x\nmodels: [llama3.1:8b]\n")
    out = trbench("run", str(spec), "--output-dir", str(tmp_path / "out"))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "field 'models'" in lines[0]
    assert not (tmp_path / "out").exists()
    # an --output-dir override is checked too
    spec.write_text("tr_id: x\nmodels: [smollm2:135m]\n")
    (tmp_path / "a_file").write_text("")
    out = trbench("run", str(spec), "--output-dir", str(tmp_path / "a_file"))
    assert out.returncode == 2 and "field 'output_dir'" in out.stderr and "is a file, not a folder" in out.stderr


def test_run_piped_prints_a_line_per_run_as_it_finishes(prefect_api, tmp_path, free_ports):
    """stdout a pipe (`trbench run ... | tee log`): one plain line per finished run while the rest
    still runs, then a summary line; a real SmolLM2 run on the embedded engine."""
    import pyarrow.dataset as ds

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"tr_id: piped\nmodels: [smollm2:135m]\nports: [{free_ports(1)[0]}]\nruns: 2\n"
                    "requests_per_run: 1\nwarmup_requests: 0\nmax_tokens: 8\nseed: 1\n")
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    with open(tmp_path / "stderr.log", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "trbench.cli", "run", str(spec), "--output-dir", str(tmp_path)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            lines, alive_at_first_run = [], None
            for line in proc.stdout:  # read as the lines come, not at the end
                lines.append(line.rstrip("\n"))
                if alive_at_first_run is None and line.startswith("[1/2] run "):
                    alive_at_first_run = proc.poll() is None
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()[-3000:]
    assert alive_at_first_run, lines  # the first run's line came while the second run was still to go
    assert lines[0] == "planned: 2 runs, 0 already finished"
    run_line = re.compile(r"^\[(\d)/2\] run (\S+): valid, decode p50 ([\d.]+) tok/s, TTFT(?: cold| cached)? p50 [\d.]+ ms")
    matches = [m for line in lines if (m := run_line.match(line))]
    assert [m.group(1) for m in matches] == ["1", "2"], lines
    runs = ds.dataset(tmp_path / "piped" / "runs", partitioning="hive").to_table().to_pandas().set_index("run_id")
    assert sorted(m.group(2) for m in matches) == sorted(runs.index)
    for m in matches:  # the figures are the run row's
        assert float(m.group(3)) == pytest.approx(runs.loc[m.group(2), "decode_tps_p50"], abs=0.06)
    assert lines[-1].startswith("summary: 2 runs finished, 2 valid, 0 invalid; Completed: ")
    assert len(lines) == 4


def test_run_measures_the_matrix_then_the_load_steps_into_one_report(tmp_path):
    """A spec with both: `trbench run` runs one flow, the matrix then the load steps, on a real llama.cpp server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "both.yaml"
    spec.write_text(
        f"tr_id: both\nmodels: [smollm2:135m]\nports: [{port}]\nthreads: 1\nruns: 1\nrequests_per_run: 1\n"
        "warmup_requests: 0\nttft: cold\nmax_tokens: 8\ngrid: {num_ctx: [1024]}\n"
        f"prompts: {ROOT}/datasets/prompts/single_agent.yaml\n"
        "load: {concurrency: [2], requests: 2}\n")
    out = trbench("run", str(spec), "--output-dir", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    root = tmp_path / "both"
    assert list((root / "runs").rglob("*.parquet")) and list((root / "load_steps").rglob("*.parquet"))
    report = (root / "report" / "both.md").read_text()
    assert "\n## Results\n" in report and "\n## Load\n" in report and "| c2 |" in report
    # the closing lines name both documents: the report and its appendix beside it
    said = (out.stdout + out.stderr).splitlines()
    assert any(line.startswith("report: ") and line.endswith("both.md") for line in said), said
    assert any(line.startswith("appendix: ") and line.endswith("both-appendix.md") for line in said), said
    assert "1 of 1 load step valid" in out.stdout
    # plain progress lines (stdout is a pipe), one count over the TR: the matrix's run, then the load
    # step, planned after it, with its own figures; one summary and one final state for both
    assert re.search(r"^\[1/1\] run \S+_r00_a1: valid, decode p50 ", out.stdout, re.M), out.stdout
    assert "planned: 1 run, load steps" in out.stdout
    assert re.search(r"^\[2/2\] run \S+_c2_a1: valid, output [\d.]+ tok/s, TTFT p95 [\d.]+ ms, queue p50 ",
                     out.stdout, re.M), out.stdout
    (summary,) = [line for line in out.stdout.splitlines() if line.startswith("summary: ")]
    assert summary.startswith("summary: 2 runs finished, 2 valid, 0 invalid; Completed: both: 1 of 1 run valid")
    # the process ends without the interpreter's teardown, not without its exit hooks: the log is
    # whole and the server is stopped
    assert "1 of 1 load step valid" in (root / "logs" / "run.log").read_text()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_run_log_keeps_every_traceback_and_the_terminal_only_warnings(tmp_path):
    """While a flow runs without --verbose: the terminal's handlers show warnings, without their
    tracebacks, and nothing else; the run's log file has every record, tracebacks included."""
    import io
    import logging

    from trbench.cli_prefect import RunLog

    terminal = io.StringIO()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    logger = logging.getLogger("prefect.test_run_log")
    logger.setLevel(logging.INFO)
    try:
        with RunLog(tmp_path, verbose=False) as log:
            for level, what in ((logging.INFO, "an info"), (logging.WARNING, "a warning"), (logging.ERROR, "an error")):
                try:
                    raise ValueError(f"raised for {what}")
                except ValueError:
                    logger.log(level, what, exc_info=True)
        logger.error("after the run")  # the filter is gone with the run
    finally:
        root.removeHandler(handler)
    shown = terminal.getvalue()
    assert "a warning" in shown and "after the run" in shown
    assert "an info" not in shown and "an error" not in shown and "Traceback" not in shown
    written = log.path.read_text()
    assert written.count("Traceback") == 3 and "raised for a warning" in written and "after the run" not in written
    assert log.path == tmp_path / "logs" / "run.log"
