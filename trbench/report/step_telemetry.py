"""The energy and telemetry of load and embeddings steps as a report table: only the figures some step
measured get a column, so a TR without a GPU shows its host figures and its note, never a column of n/a."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from trbench.measure.metrics import ENERGY_DEFINITIONS
from trbench.report.tables import Table, _cols, fmt

# (header, stored column, decimals): metrics.ENERGY_DEFINITIONS defines each column
FIGURES: tuple[tuple[str, str, int], ...] = (
    ("energy J", "energy_j", 1), ("J/token", "j_per_token", 4), ("tokens/J", "tokens_per_j", 2),
    ("J/text", "j_per_text", 4), ("J/input token", "j_per_input_token", 5), ("GPU power W", "gpu_power_w_mean", 1),
    ("GPU util %", "gpu_util_pct_mean", 1), ("GPU mem MiB max", "gpu_mem_used_mib_max", 0),
    ("CPU %", "cpu_pct_mean", 1), ("server RSS MiB max", "server_rss_mib_max", 0),
)


# columns defined together under one key of ENERGY_DEFINITIONS
_DEFINED_AS = {"j_per_input_token": "j_per_text"}


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ""


def measured_figures(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, int]]:
    """The figures at least one of the rows has a number for."""
    return [f for f in FIGURES if any(_num(r.get(f[1])) for r in rows)]


def telemetry_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, str]]) -> Table:
    """One row per step that measured a figure or says why not (its telemetry note); keys: (header, column)
    of the leading columns that name a step. No row at all: nothing was sampled (steps stored before
    steps had telemetry)."""
    figures = measured_figures(rows)
    shown = [r for r in rows if any(_num(r.get(c)) for _, c, _ in figures) or _text(r.get("telemetry_note"))]
    notes = any(_text(r.get("telemetry_note")) for r in shown)
    columns = _cols(*[h for h, _ in keys], *[f">{h}" for h, _, _ in figures], *(["telemetry note"] if notes else []))
    body = [[str(r.get(c) if r.get(c) is not None else "") for _, c in keys]
            + [fmt(r.get(c) if _num(r.get(c)) else None, d) for _, c, d in figures]
            + ([_text(r.get("telemetry_note"))] if notes else []) for r in shown]
    return Table(columns=columns, rows=body, keys=len(keys))


def telemetry_definitions(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The definitions of what telemetry_table(rows) shows: its measured window and each figure it has a
    column for, each once (metrics.ENERGY_DEFINITIONS); no row when it shows nothing."""
    figures = measured_figures(rows)
    notes = any(_text(r.get("telemetry_note")) for r in rows)
    if not (figures or notes):
        return Table(columns=_cols("`column", "definition"), rows=[])
    keys = ["measured window", *dict.fromkeys(_DEFINED_AS.get(c, c) for _, c, _ in figures),
            *(["telemetry_note"] if notes else [])]
    return Table(columns=_cols("`column", "definition"), rows=[[k, ENERGY_DEFINITIONS[k]] for k in keys])
