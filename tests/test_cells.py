"""Cell identity (trbench.data.cells): one label, one key, one latest-attempt rule for every module."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from trbench.measure import outliers
from trbench.validation import validate as validation
from trbench.data.cells import (
    SINGLE_CONFIG_COLUMNS,
    config_label,
    latest_attempts,
    multi_key,
    parse_config_label,
    single_key,
)
from trbench.config.spec import Cell


@pytest.mark.parametrize(("g", "c", "t", "label"), [
    (80, 2048, 1.0, "gpu80_ctx2048_temp1"), (0, 512, 0.8, "gpu0_ctx512_temp0.8"), (999, 128, 0.25, "gpu999_ctx128_temp0.25"),
])
def test_label_round_trips_and_the_spec_cell_uses_it(g, c, t, label) -> None:
    assert config_label(g, c, t) == label
    assert parse_config_label(label) == (g, c, t)
    assert Cell(model="m", num_gpu=g, num_ctx=c, temperature=t).label == label


def test_label_of_numpy_and_missing_values() -> None:
    assert config_label(80.0, 2048.0, 1) == "gpu80_ctx2048_temp1"  # as read back from Parquet by pandas
    assert config_label(None, math.nan, 0.8) == "gpunull_ctxnull_temp0.8"
    assert parse_config_label("gpu80_ctx2048") is None and parse_config_label(None) is None


def test_keys_are_the_same_everywhere() -> None:
    row = {"model": "llama3:8b", "num_gpu": 80.0, "num_ctx": 2048, "temperature": 1.0, "scenario": "chimera_homo"}
    assert single_key("llama3:8b", 80, 2048, 1.0) == "llama3:8b|80|2048|1"
    assert outliers.config_key("single", row) == "llama3:8b|80|2048|1"
    assert outliers.config_key("multi", row) == multi_key("llama3:8b", "chimera_homo") == "llama3:8b|chimera_homo"
    assert validation.single_key is single_key and validation.multi_key is multi_key


def test_only_the_latest_attempt_counts() -> None:
    runs = pd.DataFrame([
        {"model": "m", "num_gpu": 0, "num_ctx": 512, "temperature": 0.8, "run_index": 0, "attempt": 1},
        {"model": "m", "num_gpu": 0, "num_ctx": 512, "temperature": 0.8, "run_index": 0, "attempt": 2},
        {"model": "m", "num_gpu": 0, "num_ctx": 512, "temperature": 0.8, "run_index": 1, "attempt": 1},
        {"model": "m", "num_gpu": 0, "num_ctx": 1024, "temperature": 0.8, "run_index": 0, "attempt": 3},
    ])
    counted, superseded = latest_attempts(runs, SINGLE_CONFIG_COLUMNS)
    assert sorted(zip(counted["num_ctx"], counted["run_index"], counted["attempt"])) == [
        (512, 0, 2), (512, 1, 1), (1024, 0, 3)]
    assert list(superseded["attempt"]) == [1] and list(superseded["run_index"]) == [0]
    empty = runs.iloc[0:0]
    assert latest_attempts(empty, SINGLE_CONFIG_COLUMNS)[0].empty


def test_server_settings_join_the_label_key_and_hash_only_when_the_grid_sets_them() -> None:
    from trbench.config.spec import parse_spec

    plain = parse_spec({"tr_id": "x", "models": ["smollm2:135m"]})
    # the hash of a cell without server settings, as trbench computed it before they existed
    assert plain.cell_hash(plain.cells()[0], "d") == "43df59b755a75f7e"
    spec = parse_spec({"tr_id": "t", "models": ["m"], "grid": {
        "flash_attention": [False, True], "kv_cache_type": ["q8_0"], "batch_size": [256], "ubatch_size": [128],
        "threads": [2], "slots": [4], "temperature": [0.1, 0.2]}})
    cells = spec.cells()
    assert [c.label for c in cells] == [f"gpu0_ctx512_temp{t}_fa{f}_kvq8_0_b256_ub128_t2_s4"
                                        for f in (0, 1) for t in (0.1, 0.2)]
    assert parse_config_label(cells[0].label) is None  # a label with settings is not the three axes alone
    # temperature is per request: the two server configurations stay two groups, in order
    assert [c.server_key for c in cells][0] == cells[1].server_key != cells[2].server_key
    assert len({spec.cell_hash(c, "d") for c in cells}) == 4
    assert single_key("m", 0, 512, 0.1, settings="fa1") == "m|0|512|0.1|fa1"
    assert single_key("m", 0, 512, 0.1, "rust", "fa1") == "m|0|512|0.1|fa1|rust"
