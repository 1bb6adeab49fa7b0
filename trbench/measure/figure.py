"""One number a registered workload's own report section shows, handed to the summary records
(trbench.report.summary) so that the section and report/summary.json give the same figure."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Figure(BaseModel):
    """One statistic of one figure of a workload's section; each field means what the
    SummaryRecord field of its name means (the record's workload is the section's)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    config: str
    config_values: dict[str, str | int | float | bool | None]
    metric: str
    statistic: str
    value: float | None
    n: int | None
    n_of: str | None
    unit: str
    definition: str  # '<catalog>.<key>' of trbench.report.summary.CATALOGS
    ci: tuple[float, float] | None = None
    ci_definition: str | None = None
