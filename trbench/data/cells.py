"""Cell identity, one definition each: the config label people read, the config key the checks and
flags match on, the columns that name a config, and which attempt of a run counts.

  label   gpu{num_gpu}_ctx{num_ctx}_temp{temperature:g}       e.g. gpu80_ctx2048_temp1
  key     single-agent model|num_gpu|num_ctx|temperature      e.g. llama3:8b|80|2048|1
          multi-agent  model|scenario                         e.g. llama3:8b|chimera_homo
  latest  per config x run_index only the highest attempt counts (rerun_flagged writes attempt N+1);
          the superseded attempts are kept on disk and counted apart
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # the spec imports this module: no pandas import on `trbench validate`
    import pandas as pd

SINGLE_CONFIG_COLUMNS = ["model", "num_gpu", "num_ctx", "temperature"]
MULTI_CONFIG_COLUMNS = ["model", "scenario"]

_LABEL = re.compile(r"^gpu(\d+)_ctx(\d+)_temp(.+)$")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _int_text(v: Any) -> str:
    return "null" if _missing(v) else str(int(v))


def _float_text(v: Any) -> str:
    return "null" if _missing(v) else f"{float(v):g}"


def config_label(num_gpu: Any, num_ctx: Any, temperature: Any) -> str:
    return f"gpu{_int_text(num_gpu)}_ctx{_int_text(num_ctx)}_temp{_float_text(temperature)}"


def parse_config_label(label: str) -> tuple[int, int, float] | None:
    """(num_gpu, num_ctx, temperature) of a label; None for anything else."""
    m = _LABEL.match(label) if isinstance(label, str) else None
    return (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else None


def single_key(model: str, num_gpu: Any, num_ctx: Any, temperature: Any) -> str:
    return f"{model}|{_int_text(num_gpu)}|{_int_text(num_ctx)}|{_float_text(temperature)}"


def multi_key(model: str, scenario: str) -> str:
    return f"{model}|{scenario}"


def latest_attempts(runs: pd.DataFrame, config: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counted, superseded): per config x run_index only the highest attempt counts."""
    if runs.empty:
        return runs, runs
    top = runs.groupby([*config, "run_index"], dropna=False)["attempt"].transform("max")
    return runs[runs["attempt"] == top], runs[runs["attempt"] != top]


class Cell(BaseModel):
    """One matrix cell: a model with one setting of each grid axis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    num_gpu: int
    num_ctx: int
    temperature: float

    @property
    def server_key(self) -> tuple[str, int, int]:
        """Settings that need a server (re)load; temperature is per request."""
        return (self.model, self.num_gpu, self.num_ctx)

    @property
    def label(self) -> str:
        return config_label(self.num_gpu, self.num_ctx, self.temperature)
