"""The VRAM budget's decision for one server configuration, as the manifest records it (made by
trbench.tr.opening.vram_budget from trbench.measure.vram_budget.BudgetDecision; read by the
planner and the report)."""

from __future__ import annotations

from trbench.data.recorded import Recorded


class BudgetRecord(Recorded):
    """run, downgrade (to to_num_gpu / to_num_ctx) or skip one model x num_gpu x num_ctx, and why.
    Without an estimate (facts missing) the decision is run, with estimate_gib None and no formula,
    rung or free memory."""

    model: str = "?"
    num_gpu: int | None = None
    num_ctx: int | None = None
    settings: str = ""  # the cell's server settings (cells.settings_text; '' in records from before them)
    action: str = "?"  # run | downgrade | skip (BudgetDecision.action); a string, as older records hold it
    reason: str = ""
    estimate_gib: float | None = None
    formula: str | None = None
    to_num_gpu: int | None = None
    to_num_ctx: int | None = None
    free_mib: float | None = None

    @property
    def server_key(self) -> tuple[str, int | None, int | None, str]:
        """As Cell.budget_key: the configuration a server loads."""
        return self.model, self.num_gpu, self.num_ctx, self.settings
