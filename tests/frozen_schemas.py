"""Frozen copy of the pyarrow schemas as store.py wrote them by hand before the row models
(git show 867daf5:trbench/data/store.py), with the changes made since, each stated where it is. The
derived schemas must stay exactly these: stored files and the report read them.

Changed types: error_kinds was a string (the sorted kinds joined by commas; "kind:count" pairs on load
steps) and is a list since; files of the old type are migrated on read (store.read_arrow), so the old
schemas are kept here too (OLD_*), to write such files in tests."""

import pyarrow as pa

_KEYS = [
    ("tr_id", pa.string()),
    ("run_id", pa.string()),
    ("attempt", pa.int32()),
    ("cell_hash", pa.string()),
    ("model", pa.string()),
    ("provider", pa.string()),
    ("backend", pa.string()),
    ("instance", pa.string()),
    ("instance_url", pa.string()),
    ("num_gpu", pa.int32()),
    ("num_ctx", pa.int32()),
    ("temperature", pa.float64()),
    ("ttft_mode", pa.string()),  # the spec's ttft: cold | cached | both
    ("prompt_style", pa.string()),  # chat | completion (base model)
    ("run_index", pa.int32()),
    # added with the harness axis: files written before lack it and read back as python
    ("harness", pa.string()),
    # added with the server-setting axes: files written before lack it and read back as ''
    ("server_settings", pa.string()),
]

REQUEST_SCHEMA = pa.schema(
    _KEYS
    + [
        ("request_index", pa.int32()),
        ("is_warmup", pa.bool_()),
        ("prompt_id", pa.string()),
        ("cache_target", pa.string()),  # what trbench asked for: cold | cached (null on warm-ups)
        ("cache_state", pa.string()),  # what the server's counts say: cold | partial | cached | unknown
        ("answer_check", pa.string()),  # ok | empty | template_tokens | echo (null on failed requests)
        ("sent_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("http_status", pa.int32()),
        ("finish_reason", pa.string()),
        ("ttft_ms", pa.float64()),
        ("ttfat_ms", pa.float64()),
        ("e2e_ms", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("decode_tps", pa.float64()),
        ("decode_tps_client", pa.float64()),
        ("prefill_ms", pa.float64()),
        ("load_ms", pa.float64()),
        ("tpot_ms", pa.float64()),
        ("itl_p50_ms", pa.float64()),
        ("itl_p95_ms", pa.float64()),
        ("itl_max_ms", pa.float64()),
        ("n_chunks", pa.int32()),
        # added with the reasoning split: older files read them as null
        ("reasoning_tokens", pa.int64()),
        ("answer_tokens", pa.int64()),
        ("decode_tps_reasoning", pa.float64()),
        ("decode_tps_answer", pa.float64()),
        # the raw observations every metric above is derived from
        ("server_decode_tokens", pa.int64()),
        ("server_decode_ms", pa.float64()),
        ("server_decode_tps_reported", pa.float64()),  # the server's own decode rate, where it reports one
        ("server_total_ms", pa.float64()),
        ("client_cpu_s", pa.float64()),  # added with the harness axis: older files read it as null
        ("chunk_offsets_ms", pa.list_(pa.float64())),
        ("chunk_kinds", pa.list_(pa.string())),
        ("output_text", pa.string()),
        ("reasoning_text", pa.string()),
        ("gpu_memory_at_error", pa.string()),
    ]
)

# energy and telemetry columns of both run tables (definitions: metrics.ENERGY_DEFINITIONS)
ENERGY_FIELDS = [
    ("energy_j", pa.float64()), ("energy_method", pa.string()), ("energy_window_s", pa.float64()),
    ("j_per_token", pa.float64()), ("tokens_per_j", pa.float64()), ("tokens_per_dollar", pa.float64()),
    ("cost_basis", pa.string()), ("gpu_power_w_mean", pa.float64()), ("gpu_mem_used_mib_max", pa.float64()),
    ("gpu_util_pct_mean", pa.float64()), ("cpu_pct_mean", pa.float64()), ("server_rss_mib_max", pa.float64()),
    ("telemetry_note", pa.string()),
]

RUN_SCHEMA = pa.schema(
    _KEYS
    + [
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("wall_s", pa.float64()),
        ("instance_load_ms", pa.float64()),
        ("n_requests", pa.int32()),
        ("n_warmup", pa.int32()),
        ("n_ok", pa.int32()),
        ("n_errors", pa.int32()),
        ("min_ok_requests", pa.int32()),
        ("valid", pa.bool_()),
        ("invalid_reason", pa.string()),
        # added: why a planned run was never measured, as a code; older files lack it (store.read_arrow
        # gives their not-run rows the code their reason says)
        ("not_run", pa.string()),
        # was pa.string() (comma-joined); files of the old type are migrated on read
        ("error_kinds", pa.list_(pa.string())),
        ("output_tokens_total", pa.int64()),
        ("cached_tokens_total", pa.int64()),
        ("answers_flagged", pa.int32()),
    ]
    + [
        (f"{m}_{s}", pa.float64())
        for m in ("decode_tps", "decode_tps_client", "e2e_ms", "tpot_ms")
        for s in ("mean", "p50", "p95", "p99")
    ]
    # added: prefill tok/s beside decode, server and client view; files written before lack them
    + [(f"{m}_{s}", pa.float64()) for m in ("prefill_tps", "prefill_tps_client") for s in ("mean", "p50")]
    + [  # TTFT per cache state (metrics.CACHE_STATES): never pooled across states; cold_asked and
        # cached_asked (a server without cache counts) were added later: files written before lack them
        field for state in ("cold", "partial", "cached", "cold_asked", "cached_asked", "unknown")
        for field in [(f"n_{state}", pa.int32()), (f"ttft_{state}_ms_mean", pa.float64()),
                      (f"ttft_{state}_ms_p50", pa.float64())]
    ]
    + [("decode_tps_cv_pct_within_run", pa.float64()), ("manifest_digest", pa.string()),
       ("gpu_memory_at_error", pa.string()), ("fallback_from", pa.string())]
    + ENERGY_FIELDS
)


MA_REQUEST_SCHEMA = pa.schema(
    list(REQUEST_SCHEMA)
    + [("scenario", pa.string()), ("agent", pa.string()), ("phase", pa.string()), ("call", pa.string())]
)

_AGENT_FIGURES = [("decode_tps", pa.float64()), ("ttft_ms", pa.float64()), ("wall_s", pa.float64()),
                  ("output_tokens", pa.int64())]
MA_RUN_SCHEMA = pa.schema(
    [
        ("tr_id", pa.string()), ("run_id", pa.string()), ("attempt", pa.int32()), ("cell_hash", pa.string()),
        ("model", pa.string()), ("scenario", pa.string()), ("provider", pa.string()), ("backend", pa.string()),
        ("run_index", pa.int32()), ("harness", pa.string()),  # harness: added with the axis, as in _KEYS
        ("started_at", pa.timestamp("us", tz="UTC")), ("phase_order", pa.string()),
        ("n_agents", pa.int32()), ("concurrent_wall_s", pa.float64()), ("sequential_wall_s", pa.float64()),
        ("speedup", pa.float64()), ("efficiency_pct", pa.float64()), ("n_requests", pa.int32()),
        ("n_errors", pa.int32()),
        ("error_kinds", pa.list_(pa.string())),  # was pa.string(): files of the old type are migrated on read
        ("valid", pa.bool_()), ("invalid_reason", pa.string()),
        ("not_run", pa.string()),  # added, as in RUN_SCHEMA
        ("contention", pa.bool_()), ("contention_rule", pa.string()), ("delta_decode_tps", pa.float64()),
        ("delta_ttft_ms", pa.float64()), ("manifest_digest", pa.string()),
    ]
    + [
        field
        for role in ("collector", "insight")
        for field in [(f"{role}_instance", pa.string()), (f"{role}_options", pa.string()), (f"{role}_contended", pa.bool_())]
        + [(f"{role}_{phase}_{name}", t) for phase in ("concurrent", "solo") for name, t in _AGENT_FIGURES]
    ]
    + ENERGY_FIELDS
)

# The telemetry table: long ("tidy") by source. Each sample tick is one row per sampled GPU
# (gpu_index set; power_w, energy_mj, util_pct, mem_used_mib, temp_c filled; host columns null)
# plus one host row (gpu_index null; cpu_pct, server_rss_mib, server_cpu_pct filled; GPU columns
# null); the rows of one tick share `sample`. t: wall clock (UTC) of the read; t_rel_s: monotonic
# seconds since the sampler started; phase: idle | warmup | measured (single-agent) or idle |
# warmup | concurrent | solo (multi-agent). Field meanings: trbench/measure/telemetry.py.
TELEMETRY_SCHEMA = pa.schema([
    ("tr_id", pa.string()), ("run_id", pa.string()), ("attempt", pa.int32()), ("model", pa.string()),
    ("kind", pa.string()), ("sample", pa.int32()), ("phase", pa.string()), ("gpu_index", pa.int32()),
    ("gpu_name", pa.string()), ("t", pa.timestamp("us", tz="UTC")), ("t_rel_s", pa.float64()),
    ("power_w", pa.float64()), ("energy_mj", pa.int64()), ("util_pct", pa.float64()), ("mem_used_mib", pa.float64()),
    ("temp_c", pa.float64()), ("cpu_pct", pa.float64()), ("server_rss_mib", pa.float64()),
    ("server_cpu_pct", pa.float64()),
    ("harness", pa.string()),  # added with the harness axis: older files read it as python
])


def _before_lists(schema: pa.Schema) -> pa.Schema:
    """A schema as files were written before error_kinds was a list and not_run existed."""
    schema = schema.remove(schema.get_field_index("not_run"))
    return schema.set(schema.get_field_index("error_kinds"), pa.field("error_kinds", pa.string()))


OLD_RUN_SCHEMA = _before_lists(RUN_SCHEMA)
OLD_MA_RUN_SCHEMA = _before_lists(MA_RUN_SCHEMA)

# The multi-turn workload's tables (added with it): one row per turn, one per conversation (its ledger entry).
_CONVERSATION_KEYS = [
    ("tr_id", pa.string()), ("run_id", pa.string()), ("attempt", pa.int32()), ("model", pa.string()),
    ("provider", pa.string()), ("backend", pa.string()), ("instance", pa.string()), ("instance_url", pa.string()),
    ("num_gpu", pa.int32()), ("num_ctx", pa.int32()), ("temperature", pa.float64()), ("prompt_style", pa.string()),
    ("conversation_index", pa.int32()), ("dialogue_id", pa.string()), ("source", pa.string()),
    ("dialogues_digest", pa.string()), ("concurrency", pa.int32()), ("max_tokens", pa.int32()),
]
_REQUEST_MEASURES = REQUEST_SCHEMA.names[REQUEST_SCHEMA.get_field_index("status"):]  # status .. gpu_memory_at_error
MT_TURN_SCHEMA = pa.schema(
    _CONVERSATION_KEYS
    + [("turn_index", pa.int32()), ("history_messages", pa.int32()), ("is_warmup", pa.bool_()),
       ("sent_at", pa.timestamp("us", tz="UTC")),
       ("cache_state", pa.string()), ("answer_check", pa.string())]
    + [REQUEST_SCHEMA.field(n) for n in _REQUEST_MEASURES if n != "client_cpu_s"]
)
MT_CONVERSATION_SCHEMA = pa.schema(
    _CONVERSATION_KEYS
    + [("started_at", pa.timestamp("us", tz="UTC")), ("wall_s", pa.float64()), ("n_turns", pa.int32()),
       ("n_sent", pa.int32()), ("n_ok", pa.int32()), ("n_errors", pa.int32()), ("error_kinds", pa.list_(pa.string())),
       ("prompt_tokens_last", pa.int64()), ("cached_tokens_total", pa.int64()), ("valid", pa.bool_()),
       ("invalid_reason", pa.string()), ("manifest_digest", pa.string())]
)
