"""Cell identity, one definition each: the config label people read, the config key the checks and
flags match on, the columns that name a config, and which attempt of a run counts.

  label   gpu{num_gpu}_ctx{num_ctx}_temp{temperature:g}       e.g. gpu80_ctx2048_temp1
          [_<server settings>] when the grid sets any              e.g. gpu80_ctx2048_temp1_fa1_kvq8_0
  key     single-agent model|num_gpu|num_ctx|temperature      e.g. llama3:8b|80|2048|1
          [|<server settings>] when the grid sets any         e.g. llama3:8b|80|2048|1|fa1_kvq8_0
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
SINGLE_CONFIG_COLUMNS = ["model", "num_gpu", "num_ctx", "temperature", "harness", "server_settings"]
MULTI_CONFIG_COLUMNS = ["model", "scenario", "harness"]
Harness = Literal["python", "rust"]
HARNESSES: tuple[str, ...] = typing.get_args(Harness)
DEFAULT_HARNESS: Harness = "python"

_LABEL = re.compile(r"^gpu(\d+)_ctx(\d+)_temp([^_]+)(?:_(.+))?$")

KvCacheType = Literal["f16", "q8_0", "q4_0"]
KV_CACHE_TYPES: tuple[str, ...] = typing.get_args(KvCacheType)
# The server settings a grid may sweep beside GPU layers, context and temperature, in label order, with
# each one's label prefix. A setting the grid leaves out is the server's own default and is absent from
# the label, the key and the cell hash, so the cells of TRs from before these axes keep their identity.
SETTING_PREFIXES: dict[str, str] = {"flash_attention": "fa", "kv_cache_type": "kv", "batch_size": "b",
                                    "ubatch_size": "ub", "threads": "t", "slots": "s"}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _int_text(v: Any) -> str:
    return "null" if _missing(v) else str(int(v))


def _float_text(v: Any) -> str:
    return "null" if _missing(v) else f"{float(v):g}"


def settings_text(settings: dict[str, Any]) -> str:
    """The server settings a cell sets, as its label spells them ('fa1_kvq8_0_b256'); '' for none."""
    parts = []
    for name, prefix in SETTING_PREFIXES.items():
        v = settings.get(name)
        if _missing(v):
            continue
        parts.append(f"{prefix}{int(v) if isinstance(v, bool) else v}")
    return "_".join(parts)


def _settings_part(settings: Any) -> str:
    return "" if _missing(settings) or not settings else f"_{settings}"


def config_label(num_gpu: Any, num_ctx: Any, temperature: Any, settings: Any = None) -> str:
    """settings: settings_text of the cell's server settings ('' or null: none set)."""
    return f"gpu{_int_text(num_gpu)}_ctx{_int_text(num_ctx)}_temp{_float_text(temperature)}{_settings_part(settings)}"


def parse_config_label(label: str) -> tuple[int, int, float] | None:
    """(num_gpu, num_ctx, temperature) of a label without server settings; None for anything else."""
    m = _LABEL.match(label) if isinstance(label, str) else None
    return (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m and not m.group(4) else None


def parse_label_settings(label: str) -> tuple[int, int, float, str] | None:
    """(num_gpu, num_ctx, temperature, server settings ('' for none)) of any config label; None for anything else."""
    m = _LABEL.match(label) if isinstance(label, str) else None
    return (int(m.group(1)), int(m.group(2)), float(m.group(3)), m.group(4) or "") if m else None


def _harness_suffix(harness: Any) -> str:
    return "" if _missing(harness) or harness == DEFAULT_HARNESS else f"|{harness}"


def single_key(model: str, num_gpu: Any, num_ctx: Any, temperature: Any, harness: Any = DEFAULT_HARNESS,
               settings: Any = "") -> str:
    """In SINGLE_CONFIG_COLUMNS' order; settings: settings_text ('' or null: none, and no part in the key)."""
    return (f"{model}|{_int_text(num_gpu)}|{_int_text(num_ctx)}|{_float_text(temperature)}"
            f"{'' if _missing(settings) or not settings else f'|{settings}'}{_harness_suffix(harness)}")


def multi_key(model: str, scenario: str, harness: Any = DEFAULT_HARNESS) -> str:
    return f"{model}|{scenario}{_harness_suffix(harness)}"


def split_harness(key: str) -> tuple[str, str]:
    """(the key without its harness part, the harness) of a config key."""
    head, _, last = key.rpartition("|")
    return (head, last) if head and last in HARNESSES and last != DEFAULT_HARNESS else (key, DEFAULT_HARNESS)


def with_harness(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame with its harness and server_settings columns: frames built without them (before those
    axes) are python, with no server setting ('')."""
    if "harness" not in frame.columns:
        frame = frame.assign(harness=DEFAULT_HARNESS)
    if "server_settings" not in frame.columns:
        frame = frame.assign(server_settings="")
    elif frame["server_settings"].isna().any():
        frame = frame.assign(server_settings=frame["server_settings"].fillna(""))
    return frame


def latest_attempts(runs: pd.DataFrame, config: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counted, superseded): per config x run_index only the highest attempt counts."""
    if runs.empty:
        return runs, runs
    runs = with_harness(runs) if "harness" in config or "server_settings" in config else runs
    top = runs.groupby([*config, "run_index"], dropna=False)["attempt"].transform("max")
    return runs[runs["attempt"] == top], runs[runs["attempt"] != top]


class Cell(BaseModel):
    """One matrix cell: a model with one setting of each grid axis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    num_gpu: int
    num_ctx: int
    temperature: float
    # server settings; None: the server's own default (not sent, not in the label or the hash)
    flash_attention: bool | None = None
    kv_cache_type: KvCacheType | None = None  # the K and the V cache
    batch_size: int | None = None  # logical batch (llama.cpp n_batch, Ollama num_batch)
    ubatch_size: int | None = None  # physical micro-batch (llama.cpp n_ubatch)
    threads: int | None = None  # CPU threads (llama.cpp n_threads, Ollama num_thread)
    slots: int | None = None  # requests decoded at once (llama.cpp n_parallel, OLLAMA_NUM_PARALLEL)

    @property
    def settings(self) -> dict[str, Any]:
        """The server settings this cell sets (the others are the server's defaults)."""
        return {k: getattr(self, k) for k in SETTING_PREFIXES if getattr(self, k) is not None}

    @property
    def settings_text(self) -> str:
        return settings_text(self.settings)

    @property
    def server_key(self) -> tuple:
        """Settings that need a server (re)load; temperature is per request. Ollama takes batch size and
        threads per request, but reloads the model when they change, as llama.cpp restarts."""
        return (self.model, self.num_gpu, self.num_ctx, *sorted(self.settings.items()))

    @property
    def budget_key(self) -> tuple[str, int, int, str]:
        """What the VRAM budget decides on: the server_key, with its settings as the label spells them."""
        return (self.model, self.num_gpu, self.num_ctx, self.settings_text)

    @property
    def label(self) -> str:
        return config_label(self.num_gpu, self.num_ctx, self.temperature, self.settings_text)
