"""Quality suites, Prefect-free: WattBot-style QA scoring (qa_score; the public scorer's reading of
a cell in wattbot_rules, trbench's lenient one in lenient_rules; its CSV files in qa_csv), the
QA suite with its documents, BM25 retrieval, prompt and answer parser (qa), and reading a model's
answer as JSON (answers), the majority vote across models (ensemble), and the router/orchestrator/chat scenario suites with
their per-answer checks and per-scenario aggregates (scenarios), the model x metric results matrix
as Parquet (matrix)."""

from trbench import lazy_exports

_WHERE = {
    "QAAnswer": "qa_score", "QAScore": "qa_score", "QuestionScore": "qa_score", "score_answers": "qa_score",
    "score_question": "qa_score", "aggregate": "qa_score", "Reading": "qa_score", "BLANK": "qa_score",
    "WEIGHTS": "qa_score", "value_matches": "wattbot_rules", "ref_overlap": "wattbot_rules", "is_blank": "wattbot_rules",
    "read_answers": "qa_csv", "write_answers": "qa_csv", "write_question_scores": "qa_csv", "check_ids": "qa_csv",
    "ScoreInputError": "qa_csv",
    "load_qa": "qa", "QASet": "qa", "QASuite": "qa", "QASuiteError": "qa", "Retriever": "qa", "messages": "qa",
    "parse_answer": "qa", "parse_json_answer": "answers",
    "majority_vote": "ensemble",
    "load_scenario": "scenarios", "ScenarioSuiteError": "scenarios", "RouterSuite": "scenarios",
    "OrchestratorSuite": "scenarios", "ChatSuite": "scenarios", "check_answer": "scenarios",
    "ScenarioCheck": "scenarios", "ScenarioAnswer": "scenarios", "answer_from_exchange": "scenarios",
    "summarize_scenario": "scenarios", "ScenarioSummary": "scenarios", "json_mode_fields": "scenarios",
    "ModelQuality": "matrix", "results_matrix": "matrix", "write_results_matrix": "matrix",
    "read_results_matrix": "matrix",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
