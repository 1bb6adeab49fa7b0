"""The report laid out: two documents, the publishable report and its appendix (every detail table
and definition, each written once), each as Markdown and as one self-contained HTML page from the
Jinja2 templates (templates/report.*.j2 and appendix.*.j2, the HTML ones autoescaped); every table is
formatted once by trbench.report.tables."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from trbench.report import cross_model
from trbench.report.embeddings_table import embeddings_text
from trbench.report.load_findings import stop_sentences
from trbench.report.harness import harness_tables
from trbench.report.load_tables import load_tables
from trbench.report.models import Plot, ReportData
from trbench.report.outline import SECTIONS, appendix_file, report_file, shown
from trbench.report import metric_names, reasoning
from trbench.report.answer_quality import MOCK_NOTE
from trbench.report.tables import WIN_LEGEND, cell_text, fmt, fmt_ci, tables, to_markdown
from trbench.prose.english import count

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.md.j2"
HTML_TEMPLATE_NAME = "report.html.j2"
APPENDIX_TEMPLATE_NAME = "appendix.md.j2"
APPENDIX_HTML_TEMPLATE_NAME = "appendix.html.j2"


def _fence(text: str) -> str:
    """A fenced code block that no backtick run inside the text can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _block(text: str) -> Markup:
    """HTML for a workload's own Markdown section (CommonMark and tables; raw HTML in it escaped)."""
    from markdown_it import MarkdownIt

    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(str(text)))


def _inline(text: str) -> Markup:
    """HTML for prose with `code` spans: everything escaped, then the spans marked up."""
    parts = str(text).split("`")
    out = [str(escape(p)) if i % 2 == 0 else f"<code>{escape(p)}</code>" for i, p in enumerate(parts)]
    return Markup("".join(out))


def _environment(html: bool = False) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=html,  # the HTML escapes every value it did not mark safe itself (model output included)
    )
    env.filters["fmt"] = fmt
    env.filters["ci"] = fmt_ci
    env.filters["cell"] = cell_text
    env.filters["md"] = to_markdown
    env.filters["fence"] = _fence
    env.filters["inline"] = _inline
    env.filters["block"] = _block
    env.filters["count"] = count  # {{ n | count("run") }}: "1 run", "2 runs"
    return env


class _Plots(dict):
    """Plots by name; one not asked for reads as None in the templates, one with nothing to draw has
    no PNG and the reason the report prints instead."""

    def __getattr__(self, name: str) -> Plot | None:
        return self.get(name)


def _context(data: ReportData, plots: list[Plot] | None) -> dict:
    return {"data": data, "t": {**tables(data), **load_tables(data), **harness_tables(data),
                                **reasoning.reasoning_tables(data), "metric_names": metric_names.names_table()},
            "names": metric_names,
            "reasoning_note": reasoning.sentence(data.cells) if reasoning.any_reasoning(data.cells) else None,
            "plots": _Plots({p.name: p for p in plots or []}),
            "sample_chars": cross_model.SAMPLE_CHARS, "embeddings_text": embeddings_text(), "sec": SECTIONS,
            "load_stop_text": stop_sentences(data.load),
            "show": shown(data.present), "mock_note": MOCK_NOTE, "smoke_note": cross_model.SMOKE_NOTE,
            # the mark means something only where models were compared (a win or a tie, not n/a)
            "win_legend": WIN_LEGEND if any(w.winner != "n/a" for w in data.winners) else None,
            # the two documents link each other by file name: they are written side by side
            "report_md": report_file(data.tr_id), "report_html": report_file(data.tr_id, "html"),
            "appendix_md": appendix_file(data.tr_id), "appendix_html": appendix_file(data.tr_id, "html")}


def render_markdown(data: ReportData, plots: list[Plot] | None = None) -> str:
    """The report as Markdown; plots (when given) are linked as report/plots/<name>.png."""
    return _environment().get_template(TEMPLATE_NAME).render(**_context(data, plots))


def render_html(data: ReportData, plots: list[Plot] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, plots as data: URIs), autoescaped."""
    return _environment(html=True).get_template(HTML_TEMPLATE_NAME).render(**_context(data, plots))


def render_appendix_markdown(data: ReportData) -> str:
    """The report's appendix as Markdown: every detail table and definition (no plots: they are the report's)."""
    return _environment().get_template(APPENDIX_TEMPLATE_NAME).render(**_context(data, None))


def render_appendix_html(data: ReportData) -> str:
    """The report's appendix as one self-contained HTML page, autoescaped."""
    return _environment(html=True).get_template(APPENDIX_HTML_TEMPLATE_NAME).render(**_context(data, None))
