"""The command line: one-line errors and exit codes (2 bad input, 1 failed run, 0 done)."""

from __future__ import annotations

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
