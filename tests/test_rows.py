"""The row models (trbench/data/rows.py) and the pyarrow schemas derived from them.

The derived schemas must be exactly the ones stored files were written with: names, types and
order, compared with a frozen copy of the hand-written schemas (tests/frozen_schemas.py)."""

import datetime as dt

import pyarrow as pa
import pytest
from pydantic import ValidationError

import tests.frozen_schemas as frozen
from trbench.config.agents import ROLES
from trbench.data import rows, store
from trbench.measure import metrics


@pytest.mark.parametrize("name", ["REQUEST_SCHEMA", "RUN_SCHEMA", "MA_REQUEST_SCHEMA", "MA_RUN_SCHEMA",
                                  "TELEMETRY_SCHEMA"])
def test_derived_schema_is_the_stored_one(name):
    derived, pinned = getattr(store, name), getattr(frozen, name)
    assert derived.names == pinned.names
    assert [(f.name, f.type) for f in derived] == [(f.name, f.type) for f in pinned]
    assert derived.equals(pinned)


def test_energy_fields_close_both_run_tables():
    energy = [f.name for f in store.ENERGY_FIELDS]
    assert energy == [name for name, _ in frozen.ENERGY_FIELDS]
    assert store.RUN_SCHEMA.names[-len(energy):] == energy == store.MA_RUN_SCHEMA.names[-len(energy):]


def test_generated_families_follow_the_code_that_fills_them():
    assert rows.CACHE_STATES == metrics.CACHE_STATES
    assert rows.AGENT_ROLES == ROLES


@pytest.mark.parametrize(("annotation", "expected"), [
    (int, pa.int32()), (rows.Int64, pa.int64()), (rows.I64, pa.int64()), (float | None, pa.float64()),
    (str, pa.string()), (bool, pa.bool_()), (dt.datetime, pa.timestamp("us", tz="UTC")),
    (list[float], pa.list_(pa.float64())), (list[str], pa.list_(pa.string())),
])
def test_annotation_mapping(annotation, expected):
    assert rows.arrow_type(annotation) == expected


def test_unmapped_annotation_is_refused():
    with pytest.raises(KeyError):
        rows.arrow_type(dict)


def _keys() -> dict:
    return {"tr_id": "TR", "run_id": "m_r00_a1", "attempt": 1, "cell_hash": "h", "model": "m", "provider": "p",
            "backend": "openai", "instance": "i0", "instance_url": "http://x", "num_gpu": 99, "num_ctx": 2048,
            "temperature": 0.0, "ttft_mode": "cold", "prompt_style": "chat", "run_index": 0}


def test_request_row_checks_types_as_it_is_built():
    sent = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    row = rows.RequestRow(**_keys(), request_index=0, is_warmup=False, prompt_id="p0", cache_state="cold",
                          sent_at=sent, status="ok", output_tokens=3_000_000_000, chunk_offsets_ms=[1.0, 2.5])
    dumped = row.model_dump()
    assert list(dumped) == store.REQUEST_SCHEMA.names
    table = pa.Table.from_pylist([dumped], schema=store.REQUEST_SCHEMA)  # int64 holds what int32 cannot
    assert table.column("output_tokens").to_pylist() == [3_000_000_000]
    with pytest.raises(ValidationError, match="num_ctx"):
        rows.RequestRow(**{**_keys(), "num_ctx": "many"}, request_index=0, is_warmup=False, prompt_id="p0",
                        cache_state="cold", sent_at=sent, status="ok")
    with pytest.raises(ValidationError, match="status"):
        rows.RequestRow(**_keys(), request_index=0, is_warmup=False, prompt_id="p0", cache_state="cold", sent_at=sent)


def test_suite_tables_are_new_tables_with_their_own_schema():
    """The suite tables are added; the pinned ones above are unchanged. The suite rows keep the types the
    report and the ensemble read back: counts int64, checks nullable bools, ref ids a string list."""
    s = store.SUITE_REQUEST_SCHEMA
    assert s.names[:3] == ["tr_id", "run_id", "model"] and s.names[-1] == "manifest_digest"
    assert s.field("prompt_tokens").type == pa.int64() and s.field("json_ok").type == pa.bool_()
    assert s.field("ref_id").type == pa.list_(pa.string()) and s.field("sent_at").type == pa.timestamp("us", tz="UTC")
    assert store.table_schema(store.SUITE_TABLE) is s
    assert store.ENSEMBLE_SCHEMA.names[:4] == ["tr_id", "ensemble", "models", "question_id"]
    row = rows.SuiteRequestRow(tr_id="t", run_id="r", model="m", provider="mock", backend="openai", instance="i",
                               instance_url="u", prompt_style="chat", suite="qa", kind="qa", suite_digest="d",
                               json_mode=True, max_tokens=8, run_index=0, request_index=0, item_id="q01",
                               sent_at=dt.datetime.now(dt.timezone.utc), status="ok", prompt_tokens=2**40,
                               ref_id=["a"], manifest_digest="x")
    assert pa.Table.from_pylist([row.model_dump()], schema=s).num_rows == 1
