"""The VRAM API in one place: the estimate of what a model needs (vram_estimate), what the GPUs
have free (nvml) and the run/downgrade/skip decision (vram_budget). Each lives in its own module;
this one only names them, so callers (and tests that replace gpu_free_mib) see one surface."""

from trbench.measure.nvml import GpuMemory, gpu_free_mib, gpu_memory_snapshot
from trbench.measure.vram_budget import BudgetDecision, budget_decision, default_ladder
from trbench.measure.vram_estimate import (
    GIB,
    KV_BYTES_PER_ELEMENT,
    OVERHEAD_GIB,
    QUANT_BYTES_PER_PARAM,
    VramEstimate,
    arch_numbers,
    estimate_from_facts,
    estimate_vram,
    inputs_from_gguf,
    inputs_from_ollama,
    normalize_quant,
    parse_parameter_size,
)

__all__ = [
    "GIB", "KV_BYTES_PER_ELEMENT", "OVERHEAD_GIB", "QUANT_BYTES_PER_PARAM", "BudgetDecision", "GpuMemory", "VramEstimate",
    "arch_numbers", "budget_decision", "default_ladder", "estimate_from_facts", "estimate_vram", "gpu_free_mib",
    "gpu_memory_snapshot", "inputs_from_gguf", "inputs_from_ollama", "normalize_quant", "parse_parameter_size",
]
