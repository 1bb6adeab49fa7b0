"""Cell identity, one definition each: the config label people read, the config key the checks and
flags match on, the columns that name a config, and which attempt of a run counts.

  label   gpu{num_gpu}_ctx{num_ctx}_temp{temperature:g}       e.g. gpu80_ctx2048_temp1
  key     single-agent model|num_gpu|num_ctx|temperature      e.g. llama3:8b|80|2048|1
          multi-agent  model|scenario                         e.g. llama3:8b|chimera_homo
          a harness other than python adds |<harness>         e.g. llama3:8b|chimera_homo|rust
          (so the keys of TR runs from before the harness axis, all python, stay as they were)
  latest  per config x run_index only the highest attempt counts (rerun_flagged writes attempt N+1);
          the superseded attempts are kept on disk and counted apart
"""

from __future__ import annotations

import math
import re
import typing
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # the spec imports this module: no pandas import on `trbench validate`
    import pandas as pd

# the harness is part of a config: a cell measured by two harnesses is two configs, never pooled
SINGLE_CONFIG_COLUMNS = ["model", "num_gpu", "num_ctx", "temperature", "harness"]
MULTI_CONFIG_COLUMNS = ["model", "scenario", "harness"]
Harness = Literal["python", "rust"]
HARNESSES: tuple[str, ...] = typing.get_args(Harness)
DEFAULT_HARNESS: Harness = "python"

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


def _harness_suffix(harness: Any) -> str:
    return "" if _missing(harness) or harness == DEFAULT_HARNESS else f"|{harness}"


def single_key(model: str, num_gpu: Any, num_ctx: Any, temperature: Any, harness: Any = DEFAULT_HARNESS) -> str:
    return f"{model}|{_int_text(num_gpu)}|{_int_text(num_ctx)}|{_float_text(temperature)}{_harness_suffix(harness)}"


def multi_key(model: str, scenario: str, harness: Any = DEFAULT_HARNESS) -> str:
    return f"{model}|{scenario}{_harness_suffix(harness)}"


def split_harness(key: str) -> tuple[str, str]:
    """(the key without its harness part, the harness) of a config key."""
    head, _, last = key.rpartition("|")
    return (head, last) if head and last in HARNESSES and last != DEFAULT_HARNESS else (key, DEFAULT_HARNESS)


def with_harness(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame with its harness column: frames built without one (before the axis) are python."""
    return frame if "harness" in frame.columns else frame.assign(harness=DEFAULT_HARNESS)


def latest_attempts(runs: pd.DataFrame, config: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counted, superseded): per config x run_index only the highest attempt counts."""
    if runs.empty:
        return runs, runs
    runs = with_harness(runs) if "harness" in config else runs
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
