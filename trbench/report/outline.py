"""The report's sections, one home: both templates write these headings from here (render passes
them as `sec`, and which of them this report shows as `show`), and the validation checks the
rendered Markdown for them (trbench.validation.checks derives its heading lists from SECTIONS).

A section that belongs to a workload appears only when that workload was measured: a report says
what it saw, never a heading over "nothing measured"."""

from __future__ import annotations

from typing import NamedTuple

# what a report can hold: the workloads (and the facts that are not one), in the names `needs` uses
WORKLOADS = ("single", "multi", "suites", "load", "embeddings")


class Section(NamedTuple):
    level: int  # 2: ##, 3: ###
    title: str
    table: bool = False  # holds a table when there are runs of its kind
    # shown only when one of these was measured (WORKLOADS, or the facts: "vram" VRAM or quantization facts,
    # "energy" energy readings, "baseline" a baseline TR compared against); empty: in every report
    needs: tuple[str, ...] = ()

    @property
    def heading(self) -> str:
        """The Markdown heading line."""
        return f"{'#' * self.level} {self.title}"

    def shown(self, present: set[str] | frozenset[str]) -> bool:
        """Whether a report holding `present` carries this section."""
        return not self.needs or bool(set(self.needs) & set(present))


_RUNS = ("single", "multi")  # what the winner, outlier and energy rules are computed over

# in report order
SECTIONS: dict[str, Section] = {
    "key_findings": Section(2, "Key findings"),
    # the headline figures right under the findings, one row per model x config; the full tables follow
    "at_a_glance": Section(3, "Results at a glance", table=True, needs=("single", "multi", "load")),
    "objective": Section(2, "Objective"),
    "setup": Section(2, "Setup"),
    "methodology": Section(2, "Methodology"),
    "results": Section(2, "Results", table=True, needs=("single",)),
    "pct_of_baseline": Section(3, "% of baseline", table=True, needs=("single",)),
    "answer_sanity": Section(3, "Answer sanity", needs=("single",)),
    "quality": Section(2, "Quality", needs=("suites",)),
    "multi_agent": Section(2, "Multi-agent results", table=True, needs=("multi",)),
    "load": Section(2, "Load", needs=("load", "embeddings")),
    "cross_model": Section(2, "Cross-model comparison", needs=_RUNS),
    "winner": Section(3, "Winner by scenario", table=True, needs=_RUNS),
    "frontier": Section(2, "Efficiency frontier", needs=("energy",)),
    "vram": Section(2, "VRAM and quantization", needs=("vram",)),
    "regression": Section(2, "Regression against a baseline", needs=("baseline",)),
    "outliers": Section(2, "Outliers and re-runs", needs=_RUNS),
    "failures": Section(2, "Failures"),
    "recommendations": Section(2, "Recommendations"),
    "appendix": Section(2, "Appendix: metric definitions"),
}


def shown(present: set[str] | frozenset[str]) -> dict[str, bool]:
    """Section name -> whether a report holding `present` (workloads and facts) carries it."""
    return {name: s.shown(present) for name, s in SECTIONS.items()}
