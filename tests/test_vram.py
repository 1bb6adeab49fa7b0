"""VRAM estimate, NVML free memory and the budget decision.

Hand-computed reference (GiB = 2^30 bytes):
  7B Q4_K_M weights: 7e9 x 0.50 B = 3.5e9 B = 3.2596290 GiB (the nominal 4-bit multiplier)
  Llama-3-8B-like KV: 2 (K,V) x 32 layers x 8 kv heads x 128 head dim x 2 B = 131072 B per token
    ctx 1024 -> 134217728 B = 0.125 GiB;  ctx 8192 -> 1073741824 B = 1.0 GiB
  totals (+0.5 GiB overhead): ctx 1024 -> 3.8846290 GiB;  ctx 8192 -> 4.7596290 GiB (4873.86 MiB)
  seed-000 fallback KV at ctx 8192: 8192 x 2 B = 16384 B = 1.52588e-5 GiB
  num_gpu 16 of 32 layers: (3.2596290 + 1.0) x 0.5 + 0.5 = 2.6298145 GiB (2692.93 MiB)
  num_gpu 24 of 32 layers: (3.2596290 + 1.0) x 0.75 + 0.5 = 3.6947218 GiB (3783.40 MiB)
"""

from __future__ import annotations

import re
import sys
import types

import pytest

from trbench.measure import vram
from trbench.data.model_facts import ModelFacts
from trbench.engines import bundled, gguf

WEIGHTS_7B_Q4KM = 7e9 * 0.5 / 2**30  # 3.2596290...
LLAMA3_8B_ARCH = {"block_count": 32, "attention.head_count": 32, "attention.head_count_kv": 8,
                  "embedding_length": 4096, "context_length": 8192}  # ollama_api.model_facts' shape


def est(num_ctx=8192, arch=LLAMA3_8B_ARCH, num_gpu=None, block_count=None, **kw):
    return vram.estimate_vram(7.0, "Q4_K_M", num_ctx, arch, num_gpu, block_count, **kw)


# ------------------------------------------------------------------ the estimate

@pytest.mark.parametrize("num_ctx, kv_gib, total_gib", [(1024, 0.125, 3.8846290), (8192, 1.0, 4.7596290)])
def test_7b_q4_k_m_with_llama3_facts(num_ctx, kv_gib, total_gib):
    e = est(num_ctx)
    assert e.weights_gib == pytest.approx(WEIGHTS_7B_Q4KM) == pytest.approx(3.2596290)
    assert e.kv_cache_gib == pytest.approx(kv_gib, rel=1e-12)
    assert e.overhead_gib == 0.5
    assert e.total_gib == pytest.approx(total_gib, abs=1e-7)
    assert e.fraction_offloaded == 1.0
    assert (e.weights_source, e.kv_source, e.bytes_per_param) == ("quant table", "architecture", 0.5)
    assert f"2 (K,V) x 32 layers x 8 kv heads x 128 head dim x {num_ctx} ctx x 2 B (f16)" in e.formula
    assert "seed-000 nominal table" in e.formula


def test_head_dim_from_key_length_beats_embedding_over_heads():
    # Gemma-3-like: 640 / 4 heads would say 160, key_length says 256
    arch = {"block_count": 18, "head_count": 4, "head_count_kv": 1, "embedding_length": 640,
            "key_length": 256, "value_length": 256}
    e = vram.estimate_vram(0.27, "Q4_K_M", 1024, arch, None, None)
    assert e.kv_cache_gib * 1024 == pytest.approx(18.0)  # 2 x 18 x 1024 x 1 x 256 x 2 B = 18 MiB


def test_unequal_key_and_value_lengths_and_per_layer_kv_heads():
    e = vram.estimate_vram(1.0, "F16", 100, {"block_count": 2, "head_count_kv": 2, "key_length": 192,
                                             "value_length": 128}, None, None)
    assert e.kv_cache_gib * 2**30 == 2 * 100 * 2 * (192 + 128) * 2
    e = vram.estimate_vram(1.0, "F16", 100, {"block_count": 3, "head_count_kv": [1, 2, 4], "key_length": 64}, None, None)
    assert e.kv_cache_gib * 2**30 == 2 * 100 * (1 + 2 + 4) * 64 * 2


def test_seed_000_fallback_when_facts_are_missing():
    for arch in (None, {}, {"block_count": 32}, {"attention.head_count_kv": 8, "embedding_length": 4096}):
        e = est(8192, arch=arch)
        assert e.kv_source == "seed-000 fallback"
        assert e.kv_cache_gib == pytest.approx(16384 / 2**30)
        assert e.total_gib == pytest.approx(WEIGHTS_7B_Q4KM + 16384 / 2**30 + 0.5)
        assert "seed-000 fallback" in e.formula and "architecture facts missing" in e.formula
    assert "block_count" in est(arch=None).formula
    # block_count given separately completes the facts
    e = est(8192, arch={"attention.head_count_kv": 8, "attention.head_count": 32, "embedding_length": 4096}, block_count=32)
    assert e.kv_source == "architecture" and e.kv_cache_gib == pytest.approx(1.0)


def test_the_fallback_undercounts_by_orders_of_magnitude():
    assert est(8192).kv_cache_gib / est(8192, arch=None).kv_cache_gib == 65536


@pytest.mark.parametrize("num_gpu, fraction, total", [
    (16, 0.5, 2.6298145), (24, 0.75, 3.6947218), (32, 1.0, 4.7596290), (80, 1.0, 4.7596290),
    (0, 0.0, 0.5), (None, 1.0, 4.7596290), (-1, 1.0, 4.7596290)])
def test_partial_offload_scales_weights_and_kv(num_gpu, fraction, total):
    e = est(8192, num_gpu=num_gpu)
    assert e.fraction_offloaded == fraction
    assert e.weights_gib == pytest.approx(WEIGHTS_7B_Q4KM * fraction)
    assert e.kv_cache_gib == pytest.approx(1.0 * fraction)
    assert e.total_gib == pytest.approx(total, abs=1e-7)
    if num_gpu == 80:
        assert "capped at 1" in e.formula  # TR116's num_gpu 80 on a 32-layer model


def test_num_gpu_without_a_layer_count_assumes_all_layers():
    e = est(8192, arch=None, num_gpu=16)
    assert e.fraction_offloaded == 1.0 and "layer count unknown" in e.formula


def test_quant_table_keeps_seed_000_values_and_names_unknown_ones():
    for q, m in {"Q2_K": 0.25, "Q3_K_M": 0.35, "Q4_K_M": 0.50, "Q8_0": 1.0, "F16": 2.0}.items():
        assert vram.QUANT_BYTES_PER_PARAM[q] == m
    for q in ("Q4_0", "Q4_1", "Q5_0", "Q5_K_M", "Q6_K"):
        assert q in vram.QUANT_BYTES_PER_PARAM
    e = vram.estimate_vram(8.0, "IQ9_WEIRD", 512, None, None, None)
    assert e.weights_source == "default multiplier" and e.bytes_per_param == 0.5
    assert "unknown quantisation 'IQ9_WEIRD'" in e.formula
    assert vram.estimate_vram(8.0, "q8_0", 512).bytes_per_param == 1.0
    assert vram.normalize_quant("Q4_K - Medium") == "Q4_K_M"
    assert vram.normalize_quant("LLAMA_FTYPE_MOSTLY_Q5_K_S") == "Q5_K_S"


def test_file_size_beats_the_table():
    e = est(1024, weights_bytes=4_920_000_000)  # a real Llama-3-8B Q4_K_M blob
    assert e.weights_source == "file size"
    assert e.weights_gib == pytest.approx(4.92e9 / 2**30)
    assert e.bytes_per_param == pytest.approx(4.92e9 / 7e9)
    assert "from the model file" in e.formula
    assert vram.estimate_vram(None, "Q4_K_M", 1024, None, None, None, weights_bytes=2**30).weights_gib == 1.0


def test_kv_cache_types():
    assert est(8192, kv_type="q8_0").kv_cache_gib == pytest.approx(0.5 * 34 / 32)
    with pytest.raises(ValueError, match="unknown KV cache type"):
        est(kv_type="q3")


def test_bad_inputs():
    with pytest.raises(ValueError):
        vram.estimate_vram(7.0, "Q4_K_M", 0)
    with pytest.raises(ValueError, match="params_b"):
        vram.estimate_vram(None, "Q4_K_M", 1024)


def test_estimate_matches_llama_cpp_kv_cache_for_bundled_models():
    """llama.cpp logs `llama_kv_cache: size = 22.50 MiB (1024 cells, 30 layers...)` for SmolLM2 at ctx
    1024, and 3.00 + 15.00 MiB (non-SWA + SWA caches) for Gemma 3 270M; at ctx 4096 Gemma's SWA cache
    stays 1024 cells (12.00 + 15.00 MiB), so the estimate is an upper bound there."""
    try:
        smol, gemma = (ModelFacts.model_validate(gguf.model_facts(bundled.resolve(m)))
                       for m in ("smollm2:135m", "gemma3:270m"))
    except bundled.ModelNotFound as err:
        pytest.skip(str(err))
    e = vram.estimate_from_facts(smol, 1024)
    assert e.kv_cache_gib * 1024 == pytest.approx(22.50)
    assert e.weights_gib * 1024 == pytest.approx(92.10, abs=0.005)  # print_info: file size = 92.10 MiB
    assert e.weights_source == "file size"
    assert vram.estimate_from_facts(gemma, 1024).kv_cache_gib * 1024 == pytest.approx(3.00 + 15.00)
    g4096 = vram.estimate_from_facts(gemma, 4096)
    assert g4096.kv_cache_gib * 1024 == pytest.approx(72.0)  # 2 x 18 x 4096 x 1 x 256 x 2 B
    assert g4096.kv_cache_gib * 1024 > 12.00 + 15.00
    assert "sliding_window=512" in g4096.formula


def test_parallel_sequences_each_hold_a_whole_context():
    """llama.cpp with slots=2 at num_ctx 1024 logs `n_slots = 2, n_ctx_slot = 1024, kv_unified = 'false'`:
    2048 KV cells, twice SmolLM2's 22.50 MiB at one slot. OLLAMA_NUM_PARALLEL allocates the same way."""
    one, two = est(4096), est(4096, sequences=2)
    assert two.kv_cache_gib == pytest.approx(2 * one.kv_cache_gib)
    assert two.weights_gib == pytest.approx(one.weights_gib)
    assert "x 2 parallel sequences" in two.formula and "parallel" not in one.formula
    assert two.at(16, 2048).sequences == 2  # a ladder rung keeps the server's slots
    with pytest.raises(ValueError, match="sequences"):
        est(sequences=0)


def test_each_provider_says_how_many_sequences_its_servers_hold():
    from trbench.config.servers import EmbeddedServer, ExternalServer, OllamaDockerServer, OllamaProcessServer

    assert EmbeddedServer(slots=3).parallel_sequences == 3
    assert OllamaDockerServer(num_parallel=4).parallel_sequences == 4
    assert OllamaProcessServer().parallel_sequences == 1
    assert ExternalServer(urls=["http://127.0.0.1:8080"]).parallel_sequences == 1


# ------------------------------------------------------------------ Ollama facts

OLLAMA_QWEN = {  # ollama_api.model_facts() for qwen2.5:7b, shaped as /api/tags + /api/show answer
    "model": "qwen2.5:7b", "source": "http://127.0.0.1:11434", "digest": "845dbda0ea48",
    "size_bytes": 4_683_087_332,
    "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"},
    "context_length": 32768,
    "architecture": {"block_count": 28, "context_length": 32768, "embedding_length": 3584,
                     "feed_forward_length": 18944, "attention.head_count": 28, "attention.head_count_kv": 4,
                     "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": 1000000.0},
}


def test_inputs_from_ollama_facts():
    qwen = ModelFacts.model_validate(OLLAMA_QWEN)
    inputs = vram.inputs_from_ollama(qwen)
    assert inputs.params_b == pytest.approx(7.6)
    assert inputs.quant == "Q4_K_M" and inputs.block_count == 28
    assert inputs.weights_bytes == 4_683_087_332
    assert inputs.arch is not None and inputs.arch["head_count_kv"] == 4 and inputs.arch["head_count"] == 28
    e = vram.estimate_from_facts(qwen, num_ctx=1024, num_gpu=80)  # TR116: gpu80 ctx1024
    # 2 x 28 layers x 4 kv heads x (3584/28 = 128) x 1024 x 2 B = 56 MiB
    assert e.kv_cache_gib * 1024 == pytest.approx(56.0)
    assert e.weights_gib == pytest.approx(4_683_087_332 / 2**30)
    assert e.fraction_offloaded == 1.0
    # without size or architecture, the table and the fallback, each said
    bare = ModelFacts.model_validate({"model": "x", "details": {"parameter_size": "8.0B", "quantization_level": "Q4_0"}})
    e = vram.estimate_from_facts(bare, num_ctx=2048)
    assert (e.weights_source, e.kv_source) == ("quant table", "seed-000 fallback")
    assert e.weights_gib == pytest.approx(8e9 * 0.5 / 2**30)


def test_parameter_sizes():
    assert vram.parse_parameter_size("7.6B") == pytest.approx(7.6)
    assert vram.parse_parameter_size("270M") == pytest.approx(0.27)
    assert vram.parse_parameter_size("8x7B") == pytest.approx(56)
    assert vram.parse_parameter_size("") is None and vram.parse_parameter_size(None) is None


def test_arch_numbers_read_raw_metadata_too():
    raw = {"general.architecture": "llama", "llama.block_count": 30, "llama.attention.head_count": 9,
           "llama.attention.head_count_kv": 3, "llama.embedding_length": 576}
    assert vram.arch_numbers(raw) == {"block_count": 30, "head_count": 9, "head_count_kv": 3, "embedding_length": 576}


# ------------------------------------------------------------------ NVML

class FakeNVML(types.ModuleType):
    """pynvml as NVML documents it: nvmlInit, then nvmlDeviceGetCount, handles by index,
    nvmlDeviceGetMemoryInfo -> (total, free, used) in bytes, nvmlDeviceGetName, nvmlShutdown."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[tuple[str, int, int]] | None = None, init_error: bool = False,
                 bytes_names: bool = False, broken_index: int | None = None):
        super().__init__("pynvml")
        self.gpus = gpus or []
        self.init_error = init_error
        self.bytes_names = bytes_names
        self.broken_index = broken_index
        self.initialised = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError("Driver Not Loaded")
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        assert self.initialised > 0
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.gpus):
            raise self.NVMLError("Invalid Argument")
        if i == self.broken_index:
            raise self.NVMLError("GPU is lost")
        return ("handle", i)

    def nvmlDeviceGetMemoryInfo(self, handle):
        name, total, used = self.gpus[handle[1]]
        return types.SimpleNamespace(total=total, free=total - used, used=used)

    def nvmlDeviceGetName(self, handle):
        name = self.gpus[handle[1]][0]
        return name.encode() if self.bytes_names else name


MIB = 2**20
RTX_12GB = ("NVIDIA GeForce RTX 4070 Ti", 12282 * MIB, 1282 * MIB)  # a 12 GB card with 11000 MiB free


def use_nvml(monkeypatch, fake: FakeNVML | None) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # None: `import pynvml` raises ImportError


def test_gpu_free_mib_through_nvml(monkeypatch):
    fake = FakeNVML([RTX_12GB, ("NVIDIA A100-SXM4-80GB", 81920 * MIB, 0)])
    use_nvml(monkeypatch, fake)
    gpus = vram.gpu_free_mib()
    assert [g.model_dump() for g in gpus or []] == [
        {"index": 0, "name": "NVIDIA GeForce RTX 4070 Ti", "total_mib": 12282.0, "free_mib": 11000.0, "used_mib": 1282.0},
        {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "total_mib": 81920.0, "free_mib": 81920.0, "used_mib": 0.0},
    ]
    assert fake.initialised == 0  # shut down again


def test_gpu_free_mib_never_raises(monkeypatch):
    use_nvml(monkeypatch, None)
    assert vram.gpu_free_mib() is None  # no pynvml
    use_nvml(monkeypatch, FakeNVML(init_error=True))
    assert vram.gpu_free_mib() is None  # no driver
    use_nvml(monkeypatch, FakeNVML([]))
    assert vram.gpu_free_mib() is None  # no GPU
    use_nvml(monkeypatch, FakeNVML([RTX_12GB, RTX_12GB], broken_index=0, bytes_names=True))
    assert [(g.index, g.name) for g in vram.gpu_free_mib() or []] == [(1, "NVIDIA GeForce RTX 4070 Ti")]


def test_gpu_free_mib_with_the_real_pynvml_here():
    pytest.importorskip("pynvml")
    gpus = vram.gpu_free_mib()  # no GPU on the development machines: None; on a GPU machine, the list
    assert gpus is None or all(g.free_mib <= g.total_mib for g in gpus)


# ------------------------------------------------------------------ the decision

def test_fits_runs_as_asked(monkeypatch):
    use_nvml(monkeypatch, FakeNVML([RTX_12GB]))
    d = vram.budget_decision(est(8192, num_gpu=80), vram.gpu_free_mib())
    assert (d.action, d.num_gpu, d.num_ctx) == ("run", 80, 8192)
    assert "4.76 GiB" in d.reason and "11000 MiB free on GPU 0 (NVIDIA GeForce RTX 4070 Ti)" in d.reason
    assert d.free_mib == 11000.0


def test_first_fitting_rung_is_taken():
    ladder = [(24, 8192), (16, 8192), (32, 1024), (8, 8192)]  # 3783 MiB, 2693 MiB, ...
    d = vram.budget_decision(est(8192, num_gpu=32), 3000, ladder)
    assert (d.action, d.num_gpu, d.num_ctx) == ("downgrade", 16, 8192)
    assert d.estimate.total_gib == pytest.approx(2.6298145)
    assert "4.76 GiB" in d.reason and "3000 MiB free" in d.reason and "num_gpu=16, num_ctx=8192" in d.reason


def test_ctx_rung_when_gpu_rungs_do_not_fit():
    d = vram.budget_decision(est(8192, num_gpu=32), 3900, [(32, 4096), (32, 1024)])
    # (32, 4096): 3.2596 + 0.5 + 0.5 = 4.2596 GiB = 4362 MiB > 3900; (32, 1024): 3.8846 GiB = 3978 MiB > 3900
    assert d.action == "skip"
    d = vram.budget_decision(est(8192, num_gpu=32), 4000, [(32, 4096), (32, 1024)])
    assert (d.action, d.num_gpu, d.num_ctx) == ("downgrade", 32, 1024)


def test_nothing_fits_skips_with_the_numbers():
    d = vram.budget_decision(est(8192, num_gpu=32), 400, [(16, 8192), (8, 1024)])
    assert (d.action, d.num_gpu, d.num_ctx) == ("skip", 32, 8192)
    assert re.search(r"estimate 4\.76 GiB \(4874 MiB.*exceeds 400 MiB free", d.reason)
    assert "none of 2 ladder rungs fits" in d.reason
    d = vram.budget_decision(est(8192), 400, [])
    assert d.action == "skip" and "no ladder rung" in d.reason


def test_no_gpu_runs_unchecked(monkeypatch):
    use_nvml(monkeypatch, FakeNVML(init_error=True))
    d = vram.budget_decision(est(8192, num_gpu=80), vram.gpu_free_mib())
    assert (d.action, d.reason, d.num_gpu, d.num_ctx) == ("run", "no GPU visible: budget not checked", 80, 8192)


def test_default_ladder_lowers_gpu_layers_then_context():
    e = est(8192, num_gpu=80)
    assert vram.default_ladder(e) == [(24, 8192), (16, 8192), (8, 8192), (80, 4096), (80, 2048), (80, 1024), (80, 512)]
    d = vram.budget_decision(e, 3000)
    assert (d.action, d.num_gpu, d.num_ctx) == ("downgrade", 16, 8192)
    assert vram.default_ladder(est(2048, arch=None, num_gpu=999)) == [(999, 1024), (999, 512)]


def test_gpu_choice(monkeypatch):
    use_nvml(monkeypatch, FakeNVML([("small", 4096 * MIB, 0), RTX_12GB]))
    gpus = vram.gpu_free_mib()
    assert vram.budget_decision(est(8192), gpus).gpu == "GPU 1 (NVIDIA GeForce RTX 4070 Ti)"  # most free
    d = vram.budget_decision(est(8192), gpus, [], gpu=0)
    assert d.action == "skip" and "4096 MiB free on GPU 0 (small)" in d.reason
