"""The grid's server settings on a REAL llama.cpp server (xllamacpp, bundled SmolLM2, one thread): a
kv_cache_type x flash_attention grid gives four cells, each started with its own settings, and the KV
cache llama.cpp allocates (its own log line) is what the VRAM estimate counts, within 10 %."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from trbench.backends.base import ChatRequest
from trbench.backends.openai import OpenAIClient
from trbench.config.spec import parse_spec
from trbench.engines import tuning
from trbench.engines.embedded import EmbeddedInstance, kv_cache_log
from trbench.measure import vram

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"


def test_kv_type_by_flash_attention_grid_starts_each_cell_with_its_settings_and_its_kv_cache_is_estimated(tmp_path):
    spec = parse_spec({"tr_id": "axes", "models": [MODEL], "grid": {
        "num_ctx": [1024], "kv_cache_type": ["f16", "q8_0"], "flash_attention": [False, True]}})
    cells = spec.cells()
    assert [c.label for c in cells] == ["gpu0_ctx1024_temp0.8_fa0_kvf16", "gpu0_ctx1024_temp0.8_fa0_kvq8_0",
                                        "gpu0_ctx1024_temp0.8_fa1_kvf16", "gpu0_ctx1024_temp0.8_fa1_kvq8_0"]
    assert len({spec.cell_hash(c, "p") for c in cells}) == 4
    inst = EmbeddedInstance("test-axes", "127.0.0.1", free_port(), threads=1, log_dir=tmp_path, load_timeout_s=120)
    facts = inst.model_facts(MODEL)
    log = tmp_path / "test-axes.log"
    seen = []
    try:
        for cell in cells:
            offset = log.stat().st_size if log.exists() else 0
            assert inst.prepare(cell) is not None  # every cell changes a server setting: a restart each
            client = OpenAIClient(inst.url, timeout_s=60.0)
            try:
                ex = client.chat(ChatRequest(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                             temperature=0.0, max_tokens=4, seed=1))
            finally:
                client.close()
            assert ex.status == "ok", ex.error_message
            (kv,) = kv_cache_log(log, offset)
            k, v = tuning.kv_types(cell, "embedded")
            # the whole cache (num_gpu None): here it is on the CPU; on a GPU the estimate takes its offloaded share
            est = vram.estimate_from_facts(facts, cell.num_ctx, None, kv_type=k, kv_type_v=v,
                                           flash_attention=cell.flash_attention)
            seen.append((cell.label, kv["k_type"], kv["v_type"], kv["mib"], est.kv_cache_gib * 1024))
    finally:
        inst.stop()
    print(seen)
    # q8_0 with flash attention off quantizes K only (llama.cpp cannot quantize V without it)
    assert [(k, v) for _, k, v, _, _ in seen] == [("f16", "f16"), ("q8_0", "f16"), ("f16", "f16"), ("q8_0", "q8_0")]
    for label, _, _, logged, estimated in seen:
        assert estimated == pytest.approx(logged, rel=0.10), label
    f16, q8_k, _, q8_kv = (mib for *_, mib, _ in seen)
    assert q8_kv == pytest.approx(f16 * 34 / 64, rel=0.02)  # q8_0: 34 bytes per 32 values against 64
    assert f16 > q8_k > q8_kv


def test_a_tr_over_the_grid_records_each_cell_with_its_settings_and_labels_them(prefect_api, tmp_path, free_ports):
    import pyarrow.dataset as ds

    from flows.tr import tr
    from trbench.report.build import build_report

    (port,) = free_ports(1)
    spec = {"tr_id": "axestr", "models": [MODEL], "ports": [port], "grid": {
        "num_ctx": [512], "kv_cache_type": ["f16", "q8_0"], "flash_attention": [False, True]},
        "runs": 1, "requests_per_run": 1, "warmup_requests": 0, "max_tokens": 4, "seed": 1, "ttft": "cold",
        "server": {"threads": 1}, "telemetry": {"enabled": False}}
    state = tr(spec=spec, output_dir=str(tmp_path), return_state=True)
    assert state.is_completed(), state.message
    runs = ds.dataset(tmp_path / "axestr" / "runs", partitioning="hive").to_table().to_pandas()
    assert sorted(runs["server_settings"]) == ["fa0_kvf16", "fa0_kvq8_0", "fa1_kvf16", "fa1_kvq8_0"]
    assert runs["valid"].all() and runs["cell_hash"].nunique() == 4
    labels = sorted(c.config.label for c in build_report(tmp_path / "axestr").cells)
    assert labels == [f"gpu0_ctx512_temp0.8_{s}" for s in ("fa0_kvf16", "fa0_kvq8_0", "fa1_kvf16", "fa1_kvq8_0")]
    log = (tmp_path / "axestr" / "logs").rglob("embedded-0.log")
    kv = [(k["k_type"], k["v_type"]) for path in log for k in kv_cache_log(path)]
    assert kv == [("f16", "f16"), ("q8_0", "f16"), ("f16", "f16"), ("q8_0", "q8_0")]  # one start per cell
