"""The report's required sections, one home: both templates write these headings from here
(render passes them as `sec`), and the validation checks the rendered Markdown for them
(trbench.quality.checks derives its heading lists from SECTIONS)."""

from __future__ import annotations

from typing import NamedTuple


class Section(NamedTuple):
    level: int  # 2: ##, 3: ###
    title: str
    table: bool = False  # holds a table when there are runs of its kind
    multi: bool = False  # only in a report with multi-agent runs

    @property
    def heading(self) -> str:
        """The Markdown heading line."""
        return f"{'#' * self.level} {self.title}"


# in report order
SECTIONS: dict[str, Section] = {
    "key_findings": Section(2, "Key findings"),
    "objective": Section(2, "Objective"),
    "setup": Section(2, "Setup"),
    "methodology": Section(2, "Methodology"),
    "results": Section(2, "Results", table=True),
    "pct_of_baseline": Section(3, "% of baseline", table=True),
    "answer_sanity": Section(3, "Answer sanity"),
    "multi_agent": Section(2, "Multi-agent results", table=True, multi=True),
    "cross_model": Section(2, "Cross-model comparison"),
    "winner": Section(3, "Winner by scenario", table=True),
    "frontier": Section(2, "Efficiency frontier"),
    "vram": Section(2, "VRAM and quantization"),
    "regression": Section(2, "Regression against a baseline"),
    "outliers": Section(2, "Outliers and re-runs"),
    "failures": Section(2, "Failures"),
    "recommendations": Section(2, "Recommendations"),
    "appendix": Section(2, "Appendix: metric definitions"),
}
