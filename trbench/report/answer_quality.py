"""The report's quality section: the per-scenario table, the QA results matrix with its
ensembles, and each model's QA score against its decode speed, the "good enough and fastest"
frontier. Read from the files the flow writes under suites/ (trbench/suites/results.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from trbench.suites.matrix import read_results_matrix
from trbench.suites.results import MATRIX_FILE, SUITES_DIR, SUMMARY_FILE
from trbench.prose.english import join

MOCK_NOTE = ("This TR ran on the mock provider: every answer is canned (trbench/engines/mock_server.py) and every "
             "figure measures the harness, not a model. It is never a baseline and never compared with a real TR.")
FRONTIER_RULE = ("a model is on the frontier when no other model is at least as good on both QA overall score and "
                 "median decode tok/s (its fastest config) and better on one")


class QualityPoint(BaseModel):
    model: str
    overall: float
    decode_tps_p50: float
    on_frontier: bool = False


class SuitesSection(BaseModel):
    scenarios: list[dict]  # scenario_summary.parquet rows
    qa: list[dict]  # results_matrix.parquet rows (models, then ensembles)
    points: list[QualityPoint]  # QA overall against decode speed, per model
    frontier_rule: str = FRONTIER_RULE

    @property
    def json_mode_note(self) -> str:
        asked = sorted({r["scenario"] for r in self.scenarios if r["json_mode"]})
        plain = sorted({r["scenario"] for r in self.scenarios if not r["json_mode"]})
        parts = []
        if asked:
            parts.append(f"the server was asked for JSON (OpenAI response_format / Ollama format: json) in {join(asked)}")
        if plain:
            parts.append(f"not in {join(plain)}")
        return "; ".join(parts)


def _rows(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if (isinstance(v, float) and v != v) else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]


def frontier(points: list[QualityPoint]) -> list[QualityPoint]:
    """The points marked: on the frontier unless another beats it on both axes."""
    for p in points:
        p.on_frontier = not any(q.overall >= p.overall and q.decode_tps_p50 >= p.decode_tps_p50
                                and (q.overall > p.overall or q.decode_tps_p50 > p.decode_tps_p50) for q in points)
    return points


def build_suites_section(tr_root: Path, cells: list) -> SuitesSection | None:
    folder = Path(tr_root) / SUITES_DIR
    summary, matrix = folder / SUMMARY_FILE, folder / MATRIX_FILE
    if not summary.is_file() and not matrix.is_file():
        return None
    scenarios = _rows(pd.read_parquet(summary)) if summary.is_file() else []
    qa = _rows(read_results_matrix(matrix)) if matrix.is_file() else []
    speed: dict[str, float] = {}
    for c in cells:
        if c.decode_tps_p50 is not None:
            speed[c.model] = max(speed.get(c.model, 0.0), c.decode_tps_p50)
    points = [QualityPoint(model=r["model"], overall=r["overall"], decode_tps_p50=speed[r["model"]])
              for r in qa if r["kind"] == "model" and r["model"] in speed and r["overall"] is not None]
    return SuitesSection(scenarios=scenarios, qa=qa, points=frontier(points))
