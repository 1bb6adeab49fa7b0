"""End-to-end check of the quality suites against a REAL llama.cpp server (embedded engine, bundled
model): N QA questions (BM25 top-k documents in the prompt, JSON asked for), scored WattBot-style,
and M router messages checked and summarized. Prints the scores and writes the predictions and
per-question scores as CSV. Not a test: the tiny bundled models score low, and that is the finding.

    PYTHONPATH=$PWD .venv/bin/python bench/qa_check.py --questions 5 --router 5 --port 18510 --out /tmp/qa-check
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from trbench.backends.base import ChatRequest
from trbench.backends.openai import OpenAIClient
from trbench.config.spec import Cell
from trbench.engines.embedded import EmbeddedInstance
from trbench.measure.metrics import derive, summarize
from trbench.run.suite_runs import spread
from trbench.suites import qa_csv
from trbench.suites.qa import Retriever, load_qa, messages, parse_answer
from trbench.suites.qa_score import score_answers
from trbench.suites.scenarios import answer_from_exchange, load_scenario, summarize_scenario

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--questions", type=int, default=5)
    ap.add_argument("--router", type=int, default=5)
    ap.add_argument("--port", type=int, default=18510)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--num-ctx", type=int, default=2048)
    ap.add_argument("--no-json-mode", action="store_true", help="do not ask the server for JSON")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="qa-check-"))

    qa = load_qa(ROOT / "datasets/qa/qa.yaml")
    router = load_scenario(ROOT / "datasets/scenarios/router.yaml")
    retriever = Retriever(qa.documents)
    questions = spread(qa.questions, args.questions)  # first to last: the unanswerable ones at the end too
    inst = EmbeddedInstance("qa-check", "127.0.0.1", args.port, threads=args.threads, log_dir=out / "logs",
                            load_timeout_s=180)
    try:
        load_ms = inst.prepare(Cell(model=args.model, num_gpu=0, num_ctx=args.num_ctx, temperature=0.0))
        print(f"server up in {load_ms:.0f} ms ({args.model}, {args.threads} thread(s), ctx {args.num_ctx})")
        client = OpenAIClient(inst.url, timeout_s=300.0)
        preds, lat = [], []
        for q in questions:
            ex = client.chat(ChatRequest(model=args.model, messages=messages(qa, q, retriever), temperature=0.0,
                                         max_tokens=qa.suite.max_tokens, seed=42,
                                         json_mode=qa.suite.json_mode and not args.no_json_mode))
            m = derive(ex)
            pred = parse_answer(q.id, ex.text) if ex.status == "ok" else parse_answer(q.id, "")
            preds.append(pred)
            lat.append(m.e2e_ms)
            print(f"{q.id} truth={q.truth.answer_value!r} {q.truth.answer_unit!r} {sorted(q.truth.refs)} | "
                  f"{m.e2e_ms:.0f} ms, {m.prompt_tokens} prompt tok, {m.output_tokens} out tok | answer={ex.text!r}")
        score, rows = score_answers([q.truth for q in questions], preds)
        qa_csv.write_answers(preds, out / "predictions.csv")
        qa_csv.write_question_scores(rows, out / "scores.csv")
        print(f"QA: overall {score.overall:.3f}  value {score.value_accuracy:.3f}  ref {score.ref_overlap:.3f}  "
              f"NA {score.na_recall:.3f} (n_na={score.n_na})  failed {score.failed}/{score.n}  "
              f"latency p50 {summarize(lat).p50:.0f} ms")

        answers = []
        for m in spread(router.messages, args.router):
            ex = client.chat(ChatRequest(model=args.model, messages=router.chat(m), temperature=0.0,
                                         max_tokens=router.max_tokens, seed=42,
                                         json_mode=router.json_mode and not args.no_json_mode))
            a = answer_from_exchange(router, m, ex)
            answers.append(a)
            print(f"{m.id} label={m.route} answer={ex.text!r} -> {a.check.problem if a.check else a.error}")
        client.close()
        s = summarize_scenario(router, answers)
        print(f"router: json {s.json_parse_rate}  schema {s.schema_valid_rate}  route acc {s.route_accuracy}  "
              f"latency p50/p95/p99 {s.latency_ms.p50:.0f}/{s.latency_ms.p95:.0f}/{s.latency_ms.p99:.0f} ms  "
              f"json_mode {router.json_mode and not args.no_json_mode}")
        print(f"files: {out}")
    finally:
        inst.stop()


if __name__ == "__main__":
    main()
