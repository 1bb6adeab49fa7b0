"""A TR's quality results from its stored suite rows (suite_requests/): the per-scenario summary
per model, the QA score per model, the ensembles, and the results matrix, written under suites/.

Every figure is computed again from the rows, so a resumed TR, a re-rendered report and an
ensemble added later all read the same thing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trbench.data import store
from trbench.data.rows import EnsembleAnswerRow
from trbench.measure.metrics import AnswerCheck, summarize
from trbench.suites.ensemble import majority_vote
from trbench.suites.matrix import ModelQuality, write_results_matrix
from trbench.suites.qa import QASet
from trbench.suites.qa_csv import as_public_cells
from trbench.suites.qa_score import QAAnswer, Reading, aggregate, score_question
from trbench.suites.scenarios import ScenarioAnswer, ScenarioCheck, ScenarioSummary, summarize_scenario
from trbench.prose import noun, verb

SUITES_DIR = "suites"
SUMMARY_FILE = "scenario_summary.parquet"
MATRIX_FILE = "results_matrix.parquet"
ENSEMBLES_DIR = "ensembles"
REQUEST_FAILED = "request failed"


def _none(v: object) -> object:
    return None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else v


def _refs(v: Iterable[object] | None) -> tuple[str, ...]:
    """A stored list column (a numpy array once read back, or None) as a tuple."""
    return () if v is None else tuple(str(x) for x in v)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _none(v) for k, v in r.items()} for r in frame.astype(object).to_dict("records")]


# --- scenarios ----------------------------------------------------------------------------------


class _SuiteFacts:
    """What summarize_scenario reads of a suite, as the rows recorded it."""

    def __init__(self, name: str, kind: str, json_mode: bool):
        self.name, self.kind, self.json_mode = name, kind, json_mode


def _answer(r: dict) -> ScenarioAnswer:
    ok = r["status"] == "ok"
    check = None
    if ok:
        sanity: AnswerCheck = r["answer_check"] or "ok"
        check = ScenarioCheck(id=r["item_id"], json_ok=r["json_ok"], schema_ok=r["schema_ok"], route=r["route"],
                              route_ok=r["route_ok"], sanity=sanity, problem=r["problem"])
    return ScenarioAnswer(id=r["item_id"], ok=ok, check=check, e2e_ms=r["e2e_ms"], ttft_ms=r["ttft_ms"],
                          output_tokens=r["output_tokens"],
                          error=None if ok else f"{r['error_kind']}: {r['error_message']}")


def scenario_summaries(rows: pd.DataFrame) -> list[tuple[str, ScenarioSummary]]:
    """(model, summary) per model and scenario suite, in the rows' order of first appearance."""
    out = []
    scen = rows[rows["kind"] != "qa"]
    for (model, suite), g in scen.groupby(["model", "suite"], sort=False):
        recs = _records(g)
        facts = _SuiteFacts(suite, recs[0]["kind"], bool(recs[0]["json_mode"]))
        out.append((model, summarize_scenario(facts, [_answer(r) for r in recs])))  # type: ignore[arg-type]
    return out


def summary_frame(summaries: Sequence[tuple[str, ScenarioSummary]]) -> pd.DataFrame:
    """One flat row per model and scenario (the report's table, and scenario_summary.parquet)."""
    out = []
    for model, s in summaries:
        out.append({
            "model": model, "scenario": s.scenario, "kind": s.kind, "json_mode": s.json_mode, "requests": s.requests,
            "errors": s.errors, "json_parse_rate": s.json_parse_rate, "schema_valid_rate": s.schema_valid_rate,
            "route_accuracy": s.route_accuracy, "sane_rate": s.sane_rate, "output_tokens_mean": s.output_tokens_mean,
            "output_tokens_total": s.output_tokens_total, "latency_ms_p50": s.latency_ms.p50,
            "latency_ms_p95": s.latency_ms.p95, "latency_ms_p99": s.latency_ms.p99, "ttft_ms_p50": s.ttft_ms.p50,
        })
    return pd.DataFrame(out, columns=list(SUMMARY_SCHEMA.names))


SUMMARY_SCHEMA = pa.schema(
    [("model", pa.string()), ("scenario", pa.string()), ("kind", pa.string()), ("json_mode", pa.bool_()),
     ("requests", pa.int64()), ("errors", pa.int64())]
    + [(c, pa.float64()) for c in ("json_parse_rate", "schema_valid_rate", "route_accuracy", "sane_rate",
                                   "output_tokens_mean")]
    + [("output_tokens_total", pa.int64())]
    + [(c, pa.float64()) for c in ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "ttft_ms_p50")]
)


# --- QA -----------------------------------------------------------------------------------------


def prediction(r: dict) -> QAAnswer:
    """A stored QA row as the prediction it was scored as (a failed request: a failure)."""
    if r["status"] != "ok":
        return QAAnswer(id=r["item_id"], answer_value="", error=f"{REQUEST_FAILED}: {r['error_kind']}")
    if r["problem"] is not None and not r["json_ok"]:
        return QAAnswer(id=r["item_id"], answer_value="", error=r["problem"])
    return QAAnswer(id=r["item_id"], answer_value=r["answer_value"] or "", answer_unit=r["answer_unit"] or "",
                    ref_id=_refs(r["ref_id"]))


def qa_predictions(rows: pd.DataFrame) -> dict[str, list[QAAnswer]]:
    """Each model's QA predictions (every run's), in the rows' order."""
    qa = rows[rows["kind"] == "qa"]
    return {model: [prediction(r) for r in _records(g)] for model, g in qa.groupby("model", sort=False)}


def score_predictions(qa: QASet, predictions: Sequence[QAAnswer]):
    """WattBot's score over every answered (question, run): a question asked twice counts twice.
    Read as the public scorer reads the truth file and the predictions file trbench writes."""
    truth = {t.id: t for t in as_public_cells([q.truth for q in qa.questions])}
    answered = as_public_cells([p for p in predictions if p.id in truth])
    return aggregate([score_question(truth[p.id], p, Reading.PUBLIC) for p in answered])


def model_quality(qa: QASet, rows: pd.DataFrame) -> list[ModelQuality]:
    out = []
    qa_rows = rows[rows["kind"] == "qa"]
    for model, preds in qa_predictions(rows).items():
        g = qa_rows[(qa_rows["model"] == model) & (qa_rows["status"] == "ok")]
        lat = summarize([float(x) for x in g["e2e_ms"].dropna()])
        tokens = [float(x) for x in g["output_tokens"].dropna()]
        out.append(ModelQuality(model=model, qa=score_predictions(qa, preds), latency_ms=lat if lat.n else None,
                                output_tokens_mean=sum(tokens) / len(tokens) if tokens else None))
    return out


# --- ensembles ----------------------------------------------------------------------------------


def ensemble_name(models: Sequence[str]) -> str:
    return "ensemble(" + ",".join(models) + ")"


def ensemble_answers(rows: pd.DataFrame, models: Sequence[str]) -> list[QAAnswer]:
    """The majority vote of `models` (their order breaks ties) over the questions of run 0."""
    preds = qa_predictions(rows[rows["run_index"] == 0])
    missing = [m for m in models if m not in preds]
    if missing:
        have = ", ".join(preds) or "none"
        raise ValueError(f"{noun('model', len(missing))} {', '.join(missing)} {verb('has', len(missing))} no QA answers in this TR (have: {have}); "
                         "fix: name models that ran the QA suite")
    return majority_vote({m: preds[m] for m in models})


def write_ensemble(root: Path, tr_id: str, models: Sequence[str], answers: Sequence[QAAnswer]) -> Path:
    name = ensemble_name(models)
    now = dt.datetime.now(dt.timezone.utc)
    recs = [EnsembleAnswerRow(tr_id=tr_id, ensemble=name, models=",".join(models), question_id=a.id,
                              answer_value=a.answer_value, answer_unit=a.answer_unit, ref_id=sorted(a.refs),
                              error=a.error, created_at=now).model_dump() for a in answers]
    path = root / SUITES_DIR / ENSEMBLES_DIR / f"{store.slug(name)}.parquet"
    store.write_table_atomic(path, pa.Table.from_pylist(recs, schema=store.ENSEMBLE_SCHEMA))
    return path


def stored_ensembles(root: Path) -> dict[str, list[QAAnswer]]:
    out = {}
    for path in sorted((root / SUITES_DIR / ENSEMBLES_DIR).glob("*.parquet")):
        recs = _records(pq.read_table(path, schema=store.ENSEMBLE_SCHEMA).to_pandas())
        if recs:
            out[recs[0]["ensemble"]] = [QAAnswer(id=r["question_id"], answer_value=r["answer_value"],
                                                 answer_unit=r["answer_unit"], ref_id=_refs(r["ref_id"]),
                                                 error=r["error"]) for r in recs]
    return out


# --- writing ------------------------------------------------------------------------------------


def write_suite_results(root: Path, qa: QASet | None) -> list[Path]:
    """scenario_summary.parquet and results_matrix.parquet (models, then stored ensembles) from the
    TR's suite rows; nothing when no suite ran."""
    rows = store.read_frame(root, store.SUITE_TABLE)
    if rows.empty:
        return []
    written = []
    out = root / SUITES_DIR
    summaries = summary_frame(scenario_summaries(rows))
    if not summaries.empty:
        path = out / SUMMARY_FILE
        store.write_table_atomic(path, pa.Table.from_pandas(summaries, schema=SUMMARY_SCHEMA, preserve_index=False))
        written.append(path)
    if qa is not None and (rows["kind"] == "qa").any():
        quality = model_quality(qa, rows)
        quality += [ModelQuality(model=name, kind="ensemble", qa=score_predictions(qa, answers))
                    for name, answers in stored_ensembles(root).items()]
        written.append(write_results_matrix(quality, out / MATRIX_FILE))
    return written


# --- trbench ensemble ---------------------------------------------------------------------------


class EnsembleError(ValueError):
    """An ensemble that cannot be made; str() is one line naming the problem and the fix."""


def recorded_qa(root: Path, rows: pd.DataFrame) -> QASet:
    """The QA suite a TR ran (its path from the recorded spec), checked against the rows' digest."""
    import json

    from trbench.config.paths import resolve_path
    from trbench.suites.qa import QASuiteError, load_qa

    manifest = root / "manifest.json"
    spec = json.loads(manifest.read_text()).get("spec") or {} if manifest.is_file() else {}
    path = ((spec.get("suites") or {}).get("qa_suite")) or "datasets/qa/qa.yaml"
    try:
        qa = load_qa(resolve_path(path))
    except QASuiteError as err:
        raise EnsembleError(str(err)) from None
    ran = set(rows.loc[rows["kind"] == "qa", "suite_digest"])
    if ran and qa.digest not in ran:
        raise EnsembleError(f"the QA suite {path} changed since TR {root.name} ran (digest {qa.digest[:15]}..., the "
                            f"TR's {sorted(ran)[0][:15]}...); fix: restore the suite the TR ran, or run the TR again")
    return qa


def add_ensemble(root: Path, models: Sequence[str]) -> ModelQuality:
    """The majority vote of `models` over the stored TR's QA answers: written beside the TR, scored,
    and the results matrix written again with it."""
    rows = store.read_frame(root, store.SUITE_TABLE)
    if rows.empty or not (rows["kind"] == "qa").any():
        raise EnsembleError(f"no QA answers under {root}; fix: check the tr_id and --output-dir, and that the TR ran "
                            "the QA suite (spec suites: {qa: true})")
    if len(models) < 2 or len(set(models)) != len(models):
        raise EnsembleError(f"--models {','.join(models)}: an ensemble votes across two or more different models; "
                            "fix: name them, e.g. --models a,b,c")
    qa = recorded_qa(root, rows)
    try:
        answers = ensemble_answers(rows, models)
    except ValueError as err:
        raise EnsembleError(str(err)) from None
    write_ensemble(root, str(rows["tr_id"].iloc[0]), models, answers)
    write_suite_results(root, qa)
    return ModelQuality(model=ensemble_name(models), kind="ensemble", qa=score_predictions(qa, answers))
