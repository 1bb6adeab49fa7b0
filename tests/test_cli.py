"""The command line: one-line errors and exit codes (2 bad input, 1 failed run, 0 done)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def trbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trbench.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_validate_good_and_bad_specs(tmp_path):
    ok = trbench("validate", "deployments/quickstart.yaml")
    assert ok.returncode == 0 and "ok: quickstart: 2 model(s), 4 cell(s), 12 run(s)" in ok.stderr
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
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"tr_id: nomodel\nmodels: [llama3.1:8b]\nports: [{free_ports(1)[0]}]\n")
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    out = trbench("run", str(spec), "--output-dir", str(tmp_path), env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "PreflightError" in out.stderr
    assert out.stderr.rstrip().splitlines()[-1].startswith("Failed: ") and "fix: use one of" in out.stderr
    assert "report:" not in out.stderr and "data:" not in out.stderr  # nothing was measured: no paths to nothing
    verbose = trbench("run", str(spec), "--output-dir", str(tmp_path), "--verbose", env=env)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr  # --verbose keeps it
