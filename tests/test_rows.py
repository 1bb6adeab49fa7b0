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
                                  "TELEMETRY_SCHEMA", "MT_TURN_SCHEMA", "MT_CONVERSATION_SCHEMA"])
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


# --- the column families are written out in rows.py (and report/models.py) so an editor and mypy see
# them; each must stay exactly the family its tuples name, in order and with its type and default.


def _family(model, expected: list[tuple[str, object, object]]) -> None:
    """expected: (name, annotation, default) in column order; they must be a contiguous run of model's fields."""
    names = list(model.model_fields)
    start = names.index(expected[0][0])
    assert names[start:start + len(expected)] == [n for n, _, _ in expected]
    for name, annotation, default in expected:
        f = model.model_fields[name]
        assert (f.annotation, f.default) == (annotation, default), name


def test_run_row_families_follow_their_tuples():
    _family(rows.RunRow, [(f"{m}_{s}", rows.F, None) for m in rows.SUMMARIZED for s in rows.STATS]
            + [(f"{m}_{s}", rows.F, None) for m in rows.PREFILL_SUMMARIZED for s in rows.PREFILL_STATS]
            + [(n, t, None) for st in rows.CACHE_STATES
               for n, t in ((f"n_{st}", rows.I), (f"ttft_{st}_ms_mean", rows.F), (f"ttft_{st}_ms_p50", rows.F))])
    assert {rows.ttft_state(n) for n in rows.RunRow.model_fields} - {None} == set(rows.CACHE_STATES)


def test_ma_run_row_agent_families_follow_their_tuples():
    _family(rows.MaRunRow, [
        (n, t, None) for role in rows.AGENT_ROLES for n, t in
        [(f"{role}_instance", rows.S), (f"{role}_options", rows.S), (f"{role}_contended", bool | None)]
        + [(f"{role}_{phase}_{k}", f.annotation) for phase in rows.AGENT_PHASES
           for k, f in rows.AgentFigures.model_fields.items()]])


def test_load_figures_latency_family_follows_its_tuples():
    _family(rows.LoadFigures, [(f"{m}_ms_p{p}", rows.F, None) for m in rows.LOAD_LATENCIES for p in rows.LOAD_PCTS])
    assert list(rows.LoadFigures.model_fields)[-len(rows.LOAD_LATENCIES) * len(rows.LOAD_PCTS):] == [
        f"{m}_ms_p{p}" for m in rows.LOAD_LATENCIES for p in rows.LOAD_PCTS]


def test_telemetry_row_holds_the_gpu_then_host_columns():
    names = rows.TelemetryRow.model_fields
    head = list(rows._TelemetryHead.model_fields)
    assert list(names) == head + [*rows.GPU_FIELDS, *rows.HOST_FIELDS, "harness"]


def test_load_request_row_has_the_run_request_measurement_columns():
    """A load step's request: its keys, its own start columns, then every RequestRow column past the run keys
    and the request's start, but client_cpu_s (one thread's CPU is shared among all the load client's streams),
    each with RequestRow's type and default."""
    own = ["request_index", "is_warmup", "prompt_id", "sent_at", "scheduled_offset_ms", "sent_offset_ms", "queue_ms"]
    skipped = set(rows.RunKeys.model_fields) | {"request_index", "is_warmup", "prompt_id", "cache_target", "sent_at",
                                                "client_cpu_s"}
    shared = [n for n in rows.RequestRow.model_fields if n not in skipped]
    assert list(rows.LoadRequestRow.model_fields) == list(rows.LoadKeys.model_fields) + own + shared
    for n in shared:
        f, g = rows.LoadRequestRow.model_fields[n], rows.RequestRow.model_fields[n]
        assert (f.annotation, f.default, f.metadata) == (g.annotation, g.default, g.metadata), n


def test_report_ttft_fields_follow_the_cache_states():
    from trbench.report.models import CellResult, _TtftByState

    expected = [(f"ttft_{st}_{name}", kind, default) for st in rows.CACHE_STATES
                for name, kind, default in (("n", int, 0), ("p50_ms", float | None, None),
                                            ("p95_ms", float | None, None),
                                            ("p50_ci", tuple[float, float] | None, None))]
    assert list(_TtftByState.model_fields) == [n for n, _, _ in expected]
    _family(CellResult, expected)
