"""`trbench run SPEC --smoke` end to end: the real CLI, a real Prefect server and a REAL llama.cpp
server (embedded engine, SmolLM2, one thread): every model and every quality suite (router,
orchestrator, chat, QA), 1 run of 2 requests each, under <tr_id>-smoke, each suite present in the
report. The tiny model's answers are not asserted (they are mostly wrong); that they were asked,
kept and shown is. The time limit is a bench target (README), not asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trbench.data import store

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_runs_every_suite_once_and_reports_it(prefect_api, tmp_path, free_ports):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"tr_id: long\nmodels: [smollm2:135m]\nserver: {{ports: [{free_ports(1)[0]}], threads: 1}}\n"
                    "runs: 5\nrequests_per_run: 8\ngrid: {num_ctx: [512, 2048]}\nmax_tokens: 64\nseed: 1\n"
                    "multi_agent: {runs: 3}\n")  # a long run: --smoke must cut it all
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.run([sys.executable, "-m", "trbench.cli", "run", str(spec), "--smoke", "--output-dir",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "long-smoke"
    assert not (tmp_path / "long").exists()  # the real TR's folder is untouched
    runs = store.read_frame(root, "runs")
    assert len(runs) == 1 and runs["n_requests"].tolist() == [2] and not store.finished_run_ids(root, "multi")
    rows = store.read_frame(root, "suite_requests")
    assert rows.groupby("suite").size().to_dict() == {"router": 2, "orchestrator": 2, "chat": 2, "qa": 2}
    assert rows["e2e_ms"].notna().all() and set(rows["json_mode"]) == {True, False}
    md = (root / "report" / "long-smoke.md").read_text()
    appendix = (root / "report" / "long-smoke-appendix.md").read_text()  # the detail tables
    quality = appendix.split("## Quality tables", 1)[1].split("\n## ", 1)[0]
    for scenario in ("router", "orchestrator", "chat"):
        assert f"| `smollm2:135m` | {scenario} |" in quality
    assert "| `smollm2:135m` | model | 2 | 1 |" in quality  # QA: two questions, one unanswerable
    # a setup check, said so: the id it wrote is printed, the report is stamped and names no winner
    said = " ".join(proc.stderr.split())
    assert "smoke: a setup check under tr_id 'long-smoke'" in said and "tr_id: long-smoke" in said
    assert md.startswith("# Setup check (--smoke) of long") and "Setup check (`--smoke`), not a measurement." in md
    findings = md.split("## Key findings", 1)[1].split("\n## ", 1)[0]
    assert "- Setup check passed" in findings and "faster" not in findings and "separate" not in findings
    winners = appendix.split("### Winner by scenario", 1)[1].split("\n## ", 1)[0]
    rows = [ln.split("|")[1:-1] for ln in winners.splitlines() if ln.startswith("| single-agent")]
    assert rows and all("n/a" in [c.strip() for c in r] for r in rows)
    again = subprocess.run([sys.executable, "-m", "trbench.cli", "report", "long-smoke", "--output-dir", str(tmp_path),
                            "--no-html"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    missing = subprocess.run([sys.executable, "-m", "trbench.cli", "report", "long", "--output-dir", str(tmp_path)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert "a setup check of it is stored as 'long-smoke'" in " ".join(missing.stderr.split())
