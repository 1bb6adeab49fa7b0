"""How the cells of two or more TRs are matched: by workload, model and the config values a cell was
measured at, never by a content hash. The same model at the same config on llama.cpp and on Ollama is
one cell; what else differs between the TRs (provider, backend, server, max_tokens, TTFT mode,
hardware) is named beside the comparison, not matched on.

  workload       matched on (beside the model)
  single_agent   num_gpu, num_ctx, temperature, server_settings (absent where the grid set none)
  multi_agent    scenario
  load           config (gpu/ctx/temperature label), mode, concurrency, rate: the offered load of a step

The value names are those of a summary record's config_values (report/summary.py), so the regression
check (report/regression.py, over built reports) and `trbench compare` (report/comparison.py, over
summary records) match by this one rule. No other module of the report is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MATCHED_ON: dict[str, tuple[str, ...]] = {
    "single_agent": ("num_gpu", "num_ctx", "temperature", "server_settings"),
    "multi_agent": ("scenario",),
    "load": ("config", "mode", "concurrency", "rate"),
}
RULE = ("cells are matched on workload, model and config values (single agent: GPU layers, context, temperature, server settings; "
        "multi-agent: scenario; load: config, mode and concurrency or rate of the step), never on a content hash: "
        "provider, backend, server, max_tokens, TTFT mode and hardware are named where they differ, not matched on")

CellKey = tuple[str, str, tuple[tuple[str, Any], ...]]


def _value(v: Any) -> Any:
    """A number compares as a float (2048 and 2048.0 are one value, as JSON may write either)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def cell_key(workload: str, model: str, values: Mapping[str, Any]) -> CellKey:
    """The key two TRs' cells are matched on (a workload not in MATCHED_ON: a KeyError)."""
    return workload, model, tuple((name, _value(values.get(name))) for name in MATCHED_ON[workload])
