"""The report's sections, one home: the templates write these headings from here (render passes
them as `sec`, and which of them this report shows as `show`), and the validation checks the
rendered Markdown for them (trbench.validation.checks derives its heading lists from SECTIONS).

A report is two documents: the publishable report (`<tr_id>.md`: findings, the glance tables, one
sentence and the plots per workload, outliers, failures, recommendations) and its appendix
(`<tr_id>-appendix.md`: every detail table and every definition, each written once). A section
names the document it belongs to.

A section that belongs to a workload appears only when that workload was measured: a report says
what it saw, never a heading over "nothing measured"."""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

# what a report can hold: the workloads (and the facts that are not one), in the names `needs` uses
WORKLOADS = ("single", "multi", "suites", "load", "embeddings")


class Section(NamedTuple):
    level: int  # 2: ##, 3: ###
    title: str
    table: bool = False  # holds a table when there are runs of its kind
    # shown only when one of these was measured (WORKLOADS, or the facts: "vram" VRAM or quantization facts,
    # "energy" energy readings, "baseline" a baseline TR compared against); empty: in every report
    needs: tuple[str, ...] = ()
    doc: Literal["report", "appendix"] = "report"  # the publishable report or its appendix

    @property
    def heading(self) -> str:
        """The Markdown heading line."""
        return f"{'#' * self.level} {self.title}"

    def shown(self, present: set[str] | frozenset[str]) -> bool:
        """Whether a report holding `present` carries this section."""
        return not self.needs or bool(set(self.needs) & set(present))


_RUNS = ("single", "multi")  # what the winner, outlier and energy rules are computed over

A: Final = "appendix"

# in report order: the publishable report's sections, then the appendix's
SECTIONS: dict[str, Section] = {
    "key_findings": Section(2, "Key findings"),
    # the headline figures right under the findings, one row per model x config; the detail is in the appendix
    "at_a_glance": Section(3, "Results at a glance", table=True, needs=("single", "multi", "load")),
    "objective": Section(2, "Objective"),
    "setup": Section(2, "Setup"),
    "results": Section(2, "Results", needs=("single",)),
    "quality": Section(2, "Quality", needs=("suites",)),
    "multi_agent": Section(2, "Multi-agent results", needs=("multi",)),
    "load": Section(2, "Load", needs=("load", "embeddings")),
    "frontier": Section(2, "Efficiency frontier", needs=("energy",)),
    "vram": Section(2, "VRAM and quantization", needs=("vram",)),
    "regression": Section(2, "Regression against a baseline", needs=("baseline",)),
    "outliers": Section(2, "Outliers and re-runs", needs=_RUNS),
    "failures": Section(2, "Failures"),
    "recommendations": Section(2, "Recommendations"),
    # the appendix
    "setup_details": Section(2, "Setup details", doc=A),
    "methodology": Section(2, "Methodology", doc=A),
    "result_tables": Section(2, "Single-agent tables", table=True, needs=("single",), doc=A),
    # no table when the baseline is the only model: its own rows (always 100) are left out
    "pct_of_baseline": Section(3, "% of baseline", needs=("single",), doc=A),
    "answer_sanity": Section(3, "Answer sanity", needs=("single",), doc=A),
    "quality_tables": Section(2, "Quality tables", needs=("suites",), doc=A),
    "multi_agent_tables": Section(2, "Multi-agent tables", table=True, needs=("multi",), doc=A),
    "load_tables": Section(2, "Load tables", needs=("load", "embeddings"), doc=A),
    "cross_model": Section(2, "Cross-model comparison", needs=_RUNS, doc=A),
    "winner": Section(3, "Winner by scenario", table=True, needs=_RUNS, doc=A),
    "quantization": Section(2, "VRAM budget and quantization", needs=("vram",), doc=A),
    "flagged": Section(2, "Flagged runs", needs=_RUNS, doc=A),
    "appendix": Section(2, "Metric definitions", doc=A),
}


def shown(present: set[str] | frozenset[str]) -> dict[str, bool]:
    """Section name -> whether a report holding `present` (workloads and facts) carries it."""
    return {name: s.shown(present) for name, s in SECTIONS.items()}


def of(doc: Literal["report", "appendix"]) -> list[Section]:
    """The sections of one document, in order."""
    return [s for s in SECTIONS.values() if s.doc == doc]


def report_file(tr_id: str, ext: str = "md") -> str:
    """The publishable report's file name: <tr_id>.md (or .html)."""
    return f"{tr_id}.{ext}"


def appendix_file(tr_id: str, ext: str = "md") -> str:
    """The appendix's file name beside the report: <tr_id>-appendix.md (or .html)."""
    return f"{tr_id}-appendix.{ext}"
