"""GPU memory: an honest estimate of what a model needs (what the GPUs have free is measure/nvml.py,
the run/downgrade/skip decision measure/vram_budget.py).

The estimate is the usual rule of thumb (weights + context buffer + 0.5 GB overhead) with its
context buffer replaced by the real KV cache:

    weights  = params x bytes/param       (or the model file's tensor bytes, when known)
    kv_cache = n_layers x num_ctx x n_kv_heads x (key_length + value_length) x bytes/element
             = 2 (K and V) x n_layers x num_ctx x n_kv_heads x head_dim x 2 B   (f16, K = V)
    total    = (weights + kv_cache) x fraction of layers on the GPU + 0.5 GiB overhead

The rule of thumb's `ctx_size x 2 bytes` counts one byte pair per token, where a Llama-3-8B-like model
keeps 128 KiB per token (2 x 32 x 8 x 128 x 2 B): it undercounts by 65536x. It is used only
when the architecture facts are missing, and the estimate's `formula` says so. All sizes are
GiB (2^30 bytes); `formula` spells every factor out so a report can print it as is.

The KV cache is counted at its element types, K and V apart (q8_0 and q4_0 store 32 values in 34 and
18 bytes: 8.5 and 4.5 bits against f16's 16). Flash attention off: llama.cpp's compute buffer also
holds the attention scores of a micro-batch, head_count x context x ubatch x 4 B (f32), counted as
its own term; on, the scores are never materialised. Unknown (the server's default): not counted.

Known limits (all named in `formula` where they apply): the quantisation table is nominal
(bits/8: real K-quant files run 10-25% larger, so the file-size path is preferred); layers
with a sliding window (Gemma 3) are counted at full context, an upper bound; the compute
buffer and CUDA context are the flat 0.5 GiB overhead.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from trbench.data.model_facts import ModelFacts, OllamaDetails
from trbench.engines.gguf import parse_size_label as parse_parameter_size  # Ollama's details.parameter_size

GIB = 1024**3
OVERHEAD_GIB = 0.5
DEFAULT_UBATCH = 512  # llama.cpp's n_ubatch default
DEFAULT_BYTES_PER_PARAM = 0.50  # a quantisation the table does not know counts as 4-bit

# Bytes per parameter, nominal: Q2_K, Q3_K_M, Q4_K_M, Q8_0 and F16 as the rule of thumb has them; the
# others follow its convention, nominal bits / 8, so quantisations compare on one scale.
QUANT_BYTES_PER_PARAM: dict[str, float] = {
    "Q2_K": 0.25, "Q2_K_S": 0.25,
    "Q3_K_S": 0.35, "Q3_K_M": 0.35, "Q3_K_L": 0.35,
    "Q4_0": 0.50, "Q4_1": 0.50, "Q4_K_S": 0.50, "Q4_K_M": 0.50, "IQ4_NL": 0.50, "IQ4_XS": 0.50,
    "Q5_0": 0.625, "Q5_1": 0.625, "Q5_K_S": 0.625, "Q5_K_M": 0.625,
    "Q6_K": 0.75,
    "Q8_0": 1.0,
    "F16": 2.0, "BF16": 2.0,
    "F32": 4.0,
}
# Bytes per KV cache element by cache type (llama.cpp --cache-type-k/-v, OLLAMA_KV_CACHE_TYPE):
# q8_0 and q4_0 store 32 values in 34 and 18 bytes.
KV_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "bf16": 2.0, "f32": 4.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_ARCH_KEYS = ("block_count", "head_count", "head_count_kv", "key_length", "value_length",
              "embedding_length", "context_length", "sliding_window")


class VramEstimate(BaseModel):
    """GPU memory one model instance needs, with the formula that produced it."""

    model_config = ConfigDict(frozen=True)

    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float
    total_gib: float
    formula: str
    fraction_offloaded: float
    # where the two big terms came from
    weights_source: Literal["file size", "quant table", "default multiplier"]
    kv_source: Literal["architecture", "seed-000 fallback"]
    bytes_per_param: float | None
    # the inputs, so that a ladder rung can be estimated again (see at())
    params_b: float | None
    quant: str
    num_ctx: int
    num_gpu: int | None
    block_count: int | None
    arch: dict[str, Any] | None = None
    weights_bytes: int | None = None
    kv_type: str = "f16"
    kv_type_v: str | None = None  # None: as kv_type
    flash_attention: bool | None = None
    ubatch: int | None = None
    attention_gib: float = 0.0
    sequences: int = 1

    @property
    def total_mib(self) -> float:
        return self.total_gib * 1024

    def at(self, num_gpu: int | None, num_ctx: int) -> VramEstimate:
        """The same model estimated with other GPU layers and context size."""
        return estimate_vram(self.params_b, self.quant, num_ctx, self.arch, num_gpu, self.block_count,
                             weights_bytes=self.weights_bytes, kv_type=self.kv_type, sequences=self.sequences,
                             kv_type_v=self.kv_type_v, flash_attention=self.flash_attention, ubatch=self.ubatch)


def normalize_quant(quant: str | None) -> str:
    """'q4_k_m', 'Q4_K - Medium', 'MOSTLY_Q4_K_M' -> 'Q4_K_M'."""
    q = (quant or "").strip().upper().removeprefix("MOSTLY_").removeprefix("LLAMA_FTYPE_MOSTLY_")
    q = re.sub(r"\s*-\s*(SMALL|MEDIUM|LARGE)$", lambda m: "_" + m.group(1)[0], q)
    return q.replace("-", "_").replace(" ", "_")


def arch_numbers(arch: dict[str, Any] | None) -> dict[str, Any]:
    """The architecture numbers a KV estimate needs, from any of the shapes trbench meets:
    gguf.model_facts (flat: head_count_kv), ollama_api.model_facts' `architecture`
    (attention.head_count_kv) or raw metadata/model_info (llama.attention.head_count_kv)."""
    if not arch:
        return {}
    prefix = f"{arch['general.architecture']}." if isinstance(arch.get("general.architecture"), str) else ""
    out: dict[str, Any] = {}
    for key in _ARCH_KEYS:
        for candidate in (key, f"attention.{key}"):
            v = arch.get(prefix + candidate)
            if v is not None:
                out[key] = v
                break
    if "head_count_kv" not in out and "head_count" in out:
        out["head_count_kv"] = out["head_count"]  # GGUF spec: absent head_count_kv means no GQA
    return out


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _kv_per_token(nums: dict[str, Any], n_layers: int | None) -> tuple[tuple[int, int], str] | None:
    """(K, V) cache elements per token of context over all layers, and how it was computed."""
    hd = _int(nums.get("embedding_length")) and _int(nums.get("head_count")) and (
        nums["embedding_length"] // nums["head_count"])
    k_len = _int(nums.get("key_length")) or hd
    v_len = _int(nums.get("value_length")) or k_len
    if not k_len or not v_len:
        return None
    hkv = nums.get("head_count_kv")
    if isinstance(hkv, list) and hkv and all(isinstance(h, int) for h in hkv):  # per-layer kv heads
        total_heads = sum(hkv)
        layers_text = f"sum of per-layer kv heads {total_heads} ({len(hkv)} layers)"
    elif (kv_heads := _int(hkv)) and n_layers:
        total_heads = n_layers * kv_heads
        layers_text = f"{n_layers} layers x {kv_heads} kv heads"
    else:
        return None
    if k_len == v_len:
        return (total_heads * k_len, total_heads * v_len), f"2 (K,V) x {layers_text} x {k_len} head dim"
    return (total_heads * k_len, total_heads * v_len), f"{layers_text} x ({k_len} key + {v_len} value dims)"


def estimate_vram(params_b: float | None, quant: str, num_ctx: int, arch: dict | None = None,
                  num_gpu: int | None = None, block_count: int | None = None, *,
                  weights_bytes: int | None = None, kv_type: str = "f16", sequences: int = 1,
                  kv_type_v: str | None = None, flash_attention: bool | None = None,
                  ubatch: int | None = None) -> VramEstimate:
    """GPU memory for one model instance at one context size and GPU layer count.

    params_b: parameters in billions (may be None when weights_bytes is given).
    quant: quantisation name (Q4_K_M, Q8_0, F16...); looked up in QUANT_BYTES_PER_PARAM.
    arch: architecture facts (see arch_numbers); block_count overrides arch's.
    num_gpu: layers on the GPU (Ollama num_gpu, llama.cpp -ngl); None or negative = all.
    weights_bytes: the model file's tensor bytes, when known: used instead of the quant table.
    kv_type: KV cache element type of K, and of V unless kv_type_v is given (f16 unless the server is told otherwise).
    flash_attention: False adds the attention scores of one micro-batch (ubatch, default 512 tokens).
    sequences: requests the server holds at once (llama.cpp slots, OLLAMA_NUM_PARALLEL), each with a
      whole num_ctx of KV cache: both allocate num_ctx x sequences.
    """
    if sequences < 1:
        raise ValueError(f"sequences must be at least 1, got {sequences}")
    if num_ctx <= 0:
        raise ValueError(f"num_ctx must be positive, got {num_ctx}")
    k_el = KV_BYTES_PER_ELEMENT.get(kv_type.lower())
    v_el = KV_BYTES_PER_ELEMENT.get((kv_type_v or kv_type).lower())
    if k_el is None or v_el is None:
        raise ValueError(f"unknown KV cache type {kv_type!r}/{kv_type_v!r}; known: {sorted(KV_BYTES_PER_ELEMENT)}")
    nums = arch_numbers(arch)
    n_layers = _int(block_count) or _int(nums.get("block_count"))
    qname = normalize_quant(quant)
    parts: list[str] = []

    # weights
    if weights_bytes and weights_bytes > 0:
        w_bytes = float(weights_bytes)
        bpp = w_bytes / (params_b * 1e9) if params_b else None
        w_source = "file size"
        per = f" = {bpp:.3f} B/param over {params_b:.3g}B params" if bpp else ""
        parts.append(f"weights {w_bytes / GIB:.3f} GiB from the model file's {int(w_bytes)} bytes{per} ({qname or '?'})")
    else:
        if not params_b or params_b <= 0:
            raise ValueError("estimate_vram needs params_b > 0 or weights_bytes")
        if qname in QUANT_BYTES_PER_PARAM:
            bpp, w_source = QUANT_BYTES_PER_PARAM[qname], "quant table"
            why = "seed-000 nominal table, bits/8; real files run 10-25% larger"
        else:
            bpp, w_source = DEFAULT_BYTES_PER_PARAM, "default multiplier"
            why = f"unknown quantisation {quant!r}: seed-000 default"
        w_bytes = params_b * 1e9 * bpp
        parts.append(f"weights {params_b:g}B params x {bpp:g} B/param ({qname}, {why}) = {w_bytes / GIB:.3f} GiB")

    # KV cache
    kv = _kv_per_token(nums, n_layers)
    if kv is not None:
        per_token, how = kv
        kv_source = "architecture"
        kv_bytes = num_ctx * sequences * per_token[0] * k_el + num_ctx * sequences * per_token[1] * v_el
        types = kv_type if (kv_type_v or kv_type) == kv_type else f"K {kv_type} {k_el:g} B, V {kv_type_v} {v_el:g} B"
        kv_text = (f"KV cache {how} x {num_ctx} ctx{_times(sequences)} x {_el_text(k_el, v_el)} ({types}) "
                   f"= {kv_bytes / GIB:.4g} GiB")
        if _int(nums.get("sliding_window")):
            kv_text += (f" (sliding_window={nums['sliding_window']} layers counted at full ctx: an upper "
                        "bound, llama.cpp and Ollama keep smaller caches for them)")
    else:
        kv_bytes = num_ctx * sequences * 2.0
        kv_source = "seed-000 fallback"
        missing = [k for k, ok in (("block_count", n_layers), ("head_count_kv", nums.get("head_count_kv")),
                                   ("head dim (key_length or embedding_length/head_count)",
                                    nums.get("key_length") or (nums.get("embedding_length") and nums.get("head_count"))))
                   if not ok]
        kv_text = (f"KV cache seed-000 fallback {num_ctx} ctx{_times(sequences)} x 2 B = {kv_bytes / GIB:.3g} GiB "
                   f"(architecture facts missing: {', '.join(missing) or 'unusable values'}; "
                   "undercounts a real KV cache by orders of magnitude)")
    parts.append(kv_text)

    # offload fraction
    if num_gpu is None or num_gpu < 0:
        fraction, off_text = 1.0, "all layers on GPU (num_gpu unset)"
    elif n_layers:
        fraction = min(num_gpu / n_layers, 1.0)
        off_text = f"num_gpu {num_gpu} / {n_layers} layers = {fraction:.3g} on GPU" + (" (capped at 1)" if num_gpu > n_layers else "")
    else:
        fraction, off_text = 1.0, f"num_gpu {num_gpu} but layer count unknown: all assumed on GPU"
    weights_gib = w_bytes / GIB * fraction
    kv_gib = kv_bytes / GIB * fraction
    attention_gib = 0.0
    heads = _int(nums.get("head_count"))
    if flash_attention is False and heads:
        ub = min(ubatch or DEFAULT_UBATCH, num_ctx)
        attention_gib = heads * num_ctx * sequences * ub * 4 / GIB
        parts.append(f"attention scores without flash attention {heads} heads x {num_ctx * sequences} ctx x {ub} "
                     f"ubatch x 4 B = {attention_gib:.4g} GiB")
    total = weights_gib + kv_gib + attention_gib + OVERHEAD_GIB
    scores = " + attention scores" if attention_gib else ""
    parts.append(f"(weights + KV) x {fraction:.3g} [{off_text}]{scores} + overhead {OVERHEAD_GIB} GiB = {total:.3f} GiB")
    return VramEstimate(
        weights_gib=weights_gib, kv_cache_gib=kv_gib, overhead_gib=OVERHEAD_GIB, total_gib=total,
        formula="; ".join(parts), fraction_offloaded=fraction, weights_source=w_source, kv_source=kv_source,
        bytes_per_param=bpp, params_b=params_b, quant=qname, num_ctx=num_ctx, num_gpu=num_gpu,
        block_count=n_layers, arch=nums or None, weights_bytes=int(weights_bytes) if weights_bytes else None,
        kv_type=kv_type, sequences=sequences, kv_type_v=kv_type_v, flash_attention=flash_attention, ubatch=ubatch,
        attention_gib=attention_gib,
    )


def _el_text(k_el: float, v_el: float) -> str:
    return f"{k_el:g} B" if k_el == v_el else f"({k_el:g} B K, {v_el:g} B V)"


def _times(sequences: int) -> str:
    return f" x {sequences} parallel sequences" if sequences > 1 else ""


# ---------------------------------------------------------------- model facts -> estimate inputs

class EstimateInputs(BaseModel):
    """estimate_vram's model inputs, read from a model's facts."""

    params_b: float | None
    quant: str
    arch: dict[str, Any] | None  # arch_numbers' keys
    block_count: int | None
    weights_bytes: int | None


def inputs_from_ollama(facts: ModelFacts) -> EstimateInputs:
    """estimate_vram's model inputs from ollama_api.model_facts(): params_b from
    details.parameter_size, quant from details.quantization_level, arch from `architecture`,
    weights_bytes from the model's size on the server (/api/tags `size`)."""
    details = facts.details or OllamaDetails()
    arch = dict(facts.architecture) if isinstance(facts.architecture, dict) else {}
    if facts.context_length is not None:
        arch.setdefault("context_length", facts.context_length)
    nums = arch_numbers(arch)
    return EstimateInputs(params_b=parse_parameter_size(details.parameter_size),
                          quant=details.quantization_level or "", arch=nums or None,
                          block_count=_int(nums.get("block_count")), weights_bytes=_int(facts.size_bytes))


def inputs_from_gguf(facts: ModelFacts) -> EstimateInputs:
    """estimate_vram's model inputs from gguf.model_facts(): the exact parameter count and the
    file's tensor bytes."""
    nums = arch_numbers(facts.recorded())  # the architecture numbers are flat in a GGUF's facts
    return EstimateInputs(params_b=facts.params_b, quant=facts.quantization or "", arch=nums or None,
                          block_count=_int(facts.block_count), weights_bytes=_int(facts.tensor_data_bytes))


def estimate_from_facts(facts: ModelFacts, num_ctx: int, num_gpu: int | None = None, kv_type: str = "f16",
                        sequences: int = 1, kv_type_v: str | None = None, flash_attention: bool | None = None,
                        ubatch: int | None = None) -> VramEstimate:
    """estimate_vram for a model described by gguf.model_facts() or ollama_api.model_facts()."""
    inputs = inputs_from_gguf(facts) if facts.from_gguf else inputs_from_ollama(facts)
    return estimate_vram(inputs.params_b, inputs.quant, num_ctx, inputs.arch, num_gpu,
                         inputs.block_count, weights_bytes=inputs.weights_bytes, kv_type=kv_type,
                         sequences=sequences, kv_type_v=kv_type_v, flash_attention=flash_attention, ubatch=ubatch)
