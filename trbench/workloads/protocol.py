"""The workload protocol: what every part of a TR run (single-agent matrix, quality suites,
multi-agent runs, load steps, embeddings) offers the TR flow, so that the flow runs them all alike
and a new workload is one module and one registration (trbench.workloads.registration.register)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from trbench.config.spec import MatrixSpec
from trbench.measure.figure import Figure
from trbench.workloads.run_outcomes import EmbeddingsOutcome, RunOutcome, StepOutcome

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession


@dataclass
class Measured:
    """What one flow run measured, per kind: the outcomes its final state counts."""

    runs: list[RunOutcome] = field(default_factory=list)  # single- and multi-agent runs measured now
    skipped: int = 0  # runs a resumed TR had finished already
    load_steps: list[StepOutcome] = field(default_factory=list)
    load_skipped: int = 0
    embeddings: list[EmbeddingsOutcome] = field(default_factory=list)
    other: dict[str, list[Any]] = field(default_factory=dict)  # a registered workload's own outcomes, by its name


@dataclass
class Planned:
    """A workload's plan: the units its execute takes (lanes, runs, cells), how many runs it will
    measure now and how many a resumed TR had finished (0 for a workload that announces its own,
    as load steps do once their cells' sweeps are known)."""

    units: list[Any]
    runs: int = 0
    skipped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportPart:
    """A workload's own report section: its heading's title, its Markdown body, and the figures it
    shows as numbers (computed once, for the section and the summary records alike)."""

    title: str
    markdown: str
    figures: list[Figure] = field(default_factory=list)


class Workload(Protocol):
    """One part of a TR run."""

    name: ClassVar[str]  # as the report names what it measured (trbench.report.outline.WORKLOADS)
    tables: ClassVar[tuple[str, ...]]  # the store tables it writes (trbench.data.store.TABLES)

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        """Whether this TR run measures it (a rerun of flagged configs measures runs only)."""
        ...

    def plan(self, session: TRSession) -> Planned:
        """What to measure, once the servers answer; nothing measured yet."""
        ...

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        """Measure the plan through session.steps, each result written as soon as it is measured and
        added to `measured`; what a failing server leaves unmeasured is recorded, and the rest goes on."""
        ...

    def report_section(self, root: Path) -> ReportPart | None:
        """Its section of the report, from the stored tables alone; None where the report's own
        templates write it (the built-in workloads) or nothing was measured."""
        ...
