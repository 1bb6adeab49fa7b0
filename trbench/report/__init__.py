"""The TR report, from the Parquet files alone: models (ReportData, no formatting), build
(build_report, one module per section: data, cross_model, multi_agent, answer_quality, load_results,
embeddings_table, reruns, findings, methodology), text (the grammar every generated sentence goes
through), tables (every table formatted once), plots (matplotlib figures, laid out by plot_layout), render (Markdown and HTML
from templates/*.j2), outline (the sections in report order and their headings, one home for the
templates and the validation) and publishing (publish(): the files under <tr_root>/report/, each
written atomically), summary (the statistics as records for other tools: report/summary.json and
summary.csv), the regression comparison of two built reports (regression: cell by cell against a
threshold) and the comparison of two or more TRs (comparison: `trbench compare`), both matching
cells by matching.py.

Imports point down: comparison -> build, summary; publishing -> build, render, plots, summary -> models ->
the section modules; plots -> plot_layout; outline, matching, text and plot_layout import no other module of
the report, regression only matching and text."""

from trbench import lazy_exports

_WHERE = {
    "build_report": "build", "recorded_spec": "build", "compare_tr": "build",
    "ReportData": "models", "ReportFiles": "models", "Plot": "models", "CellResult": "models", "Config": "models",
    "render_markdown": "render", "render_html": "render", "render_appendix_markdown": "render",
    "render_appendix_html": "render",
    "render_plots": "plots",
    "SECTIONS": "outline", "Section": "outline",
    "publish": "publishing", "write_report": "publishing",
    "build_summary": "summary", "SummaryFile": "summary", "SummaryRecord": "summary",
    "RegressionResult": "regression", "summary_message": "regression", "DEFAULT_THRESHOLD_PCT": "regression",
    "EXIT_REGRESSION": "regression",
    "TrComparison": "comparison", "compare_trs": "comparison",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
