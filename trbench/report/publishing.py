"""publish(): build the report, draw its figures and write <tr_root>/report/<tr_id>.md,
<tr_id>.html (the publishable report), <tr_id>-appendix.md, <tr_id>-appendix.html (its detail tables
and definitions), plots/*.png and the statistics for other tools (summary.json, summary.csv:
report/summary.py), each atomically (trbench.data.atomic); write_report() is publish() returning the
Markdown's path."""

from __future__ import annotations

from pathlib import Path

from trbench.config.spec import MatrixSpec
from trbench.data.atomic import write_atomic, write_text_atomic
from trbench.report.regression import DEFAULT_THRESHOLD_PCT
from trbench.report.build import build_report
from trbench.report.models import Plot, ReportFiles
from trbench.report.outline import appendix_file, report_file
from trbench.report.render import render_appendix_html, render_appendix_markdown, render_html, render_markdown
from trbench.report.summary import write_summary


def publish(tr_root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
            threshold_pct: float = DEFAULT_THRESHOLD_PCT, html: bool = True, plots: bool = True) -> ReportFiles:
    """Build the report and write report/<tr_id>.md, report/<tr_id>.html, their appendix
    report/<tr_id>-appendix.md and .html, report/plots/*.png and
    report/summary.json, report/summary.csv (each file temp + rename)."""
    tr_root = Path(tr_root)
    data = build_report(tr_root, spec, baseline_root, threshold_pct)
    figures: list[Plot] = []
    if plots:
        from trbench.report.plots import render_plots  # matplotlib: only when plotting

        figures = render_plots(data)
    folder = tr_root / "report"
    plot_paths = []
    for fig in figures:
        if fig.png is None:  # none drawn: the report says why
            continue
        path = folder / fig.file
        png = fig.png  # written now, before the loop moves on
        write_atomic(path, lambda tmp: tmp.write_bytes(png))
        plot_paths.append(path)
    md_path = folder / report_file(data.tr_id)
    write_text_atomic(md_path, render_markdown(data, figures))
    appendix_md = folder / appendix_file(data.tr_id)
    write_text_atomic(appendix_md, render_appendix_markdown(data))
    html_path = appendix_html = None
    if html:
        html_path = folder / report_file(data.tr_id, "html")
        write_text_atomic(html_path, render_html(data, figures))
        appendix_html = folder / appendix_file(data.tr_id, "html")
        write_text_atomic(appendix_html, render_appendix_html(data))
    summary_json, summary_csv = write_summary(folder, data)
    return ReportFiles(markdown=md_path, html=html_path, plots=plot_paths, data=data, summary_json=summary_json,
                       summary_csv=summary_csv, appendix_markdown=appendix_md, appendix_html=appendix_html)


def write_report(tr_root: Path, spec: MatrixSpec | None = None, baseline_root: Path | None = None,
                 threshold_pct: float = DEFAULT_THRESHOLD_PCT, html: bool = True, plots: bool = True) -> Path:
    """Build and render the report; returns the Markdown's path, tr_root/report/<tr_id>.md (the HTML
    and the plots are written beside it)."""
    return publish(tr_root, spec, baseline_root, threshold_pct, html=html, plots=plots).markdown
