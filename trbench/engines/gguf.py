"""A small reader of GGUF model files: the header only (metadata key/values and tensor infos).

Layout (ggml docs/gguf.md, versions 2 and 3): magic b"GGUF", uint32 version, uint64
tensor_count, uint64 kv_count, then kv_count pairs (GGUF string key, uint32 value type,
value), then tensor_count tensor infos (name, n_dims, dims, ggml type, offset), padding to
`general.alignment` (default 32), then the tensor data. Little-endian unless the version
only reads right byte-swapped (a big-endian file). Strings are a uint64 length and UTF-8
bytes; arrays are a uint32 item type, a uint64 count and the items.

Nothing past the tensor infos is read: the file is memory-mapped and only the pages of the
header are touched, so a multi-GB model answers in milliseconds (the vocabulary arrays are
walked, not decoded: a 262k-token vocabulary costs ~0.1 s).
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from trbench.engines.model_kind import kind_facts

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Arrays longer than this (tokenizer.ggml.tokens, .scores, .merges, .token_type) are summarised.
MAX_ARRAY_ITEMS = 64

# gguf_metadata_value_type
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL = range(8)
T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(8, 13)

_SCALAR_FORMATS = {
    T_UINT8: "B", T_INT8: "b", T_UINT16: "H", T_INT16: "h", T_UINT32: "I", T_INT32: "i",
    T_FLOAT32: "f", T_BOOL: "B", T_UINT64: "Q", T_INT64: "q", T_FLOAT64: "d",
}
VALUE_TYPE_NAMES = {
    T_UINT8: "uint8", T_INT8: "int8", T_UINT16: "uint16", T_INT16: "int16", T_UINT32: "uint32",
    T_INT32: "int32", T_FLOAT32: "float32", T_BOOL: "bool", T_STRING: "string", T_ARRAY: "array",
    T_UINT64: "uint64", T_INT64: "int64", T_FLOAT64: "float64",
}

# llama.cpp's enum llama_ftype (include/llama.h), the value of general.file_type, by the short
# names Ollama reports as details.quantization_level and llama-quantize accepts.
FILE_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}

# ggml's enum ggml_type (the type of one tensor), for the tensor-type census.
GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
    34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

# GGUF general.size_label and Ollama details.parameter_size alike: "135M", "7.6B", "8x7B", "8 x 7B"
_SIZE_LABEL = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*([KMBTQ])", re.IGNORECASE)
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "Q": 1e15}


class GGUFError(ValueError):
    """Not a GGUF file, an unsupported version, or a header cut short; the message names the file."""


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes, path: Path):
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.path = path
        self.order = "<"

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise GGUFError(f"{self.path}: GGUF header truncated or corrupt at byte {self.pos} "
                            f"(wants {n} bytes of {self.end - self.pos} left)")

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self._need(size)
        (v,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self) -> int:
        return self.scalar("I")

    def u64(self) -> int:
        return self.scalar("Q")

    def string(self) -> str:
        n = self.u64()
        self._need(n)
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def skip_string(self) -> None:
        n = self.u64()
        self._need(n)
        self.pos += n

    def value(self, vtype: int, max_items: int) -> Any:
        if vtype == T_STRING:
            return self.string()
        if vtype == T_ARRAY:
            return self.array(max_items)
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise GGUFError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos - 4}")
        v = self.scalar(fmt)
        return bool(v) if vtype == T_BOOL else v

    def skip_value(self, vtype: int) -> None:
        if vtype == T_STRING:
            self.skip_string()
        elif vtype == T_ARRAY:
            itype, n = self.u32(), self.u64()
            self._skip_items(itype, n)
        else:
            fmt = _SCALAR_FORMATS.get(vtype)
            if fmt is None:
                raise GGUFError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos - 4}")
            self._need(struct.calcsize(fmt))
            self.pos += struct.calcsize(fmt)

    def _skip_items(self, itype: int, n: int) -> None:
        fmt = _SCALAR_FORMATS.get(itype)
        if fmt is not None:
            size = struct.calcsize(fmt) * n
            self._need(size)
            self.pos += size
        elif itype == T_STRING:
            unpack, order, buf = struct.unpack_from, self.order + "Q", self.buf
            pos, end = self.pos, self.end
            for _ in range(n):  # the hot loop for a vocabulary: lengths only
                if pos + 8 > end:
                    self.pos = pos
                    self._need(8)
                pos += 8 + unpack(order, buf, pos)[0]
            self.pos = pos
            self._need(0)
        else:
            for _ in range(n):
                self.skip_value(itype)

    def array(self, max_items: int) -> Any:
        itype, n = self.u32(), self.u64()
        if n > max_items:
            self._skip_items(itype, n)
            return {"type": "array", "item_type": VALUE_TYPE_NAMES.get(itype, str(itype)), "length": n}
        return [self.value(itype, max_items) for _ in range(n)]


def _open(path: Path) -> tuple[Any, mmap.mmap]:
    f = path.open("rb")
    try:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError as err:  # an empty file cannot be mapped
        f.close()
        raise GGUFError(f"{path}: not a GGUF file ({err})") from err
    return f, mm


def _parse(path: str | Path, max_array_items: int, tensors: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    f, mm = _open(path)
    try:
        r = _Reader(mm, path)
        r._need(4)
        magic = bytes(mm[:4])
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
        r.pos = 4
        version = r.u32()
        if version not in (2, 3):
            swapped = struct.unpack(">I", struct.pack("<I", version))[0]
            if swapped in (2, 3):
                r.order, version = ">", swapped
            else:
                raise GGUFError(f"{path}: GGUF version {version} is not supported (2 and 3 are; "
                                "version 1 used 32-bit lengths and is obsolete)")
        tensor_count, kv_count = r.u64(), r.u64()
        # every KV pair takes at least 8 (key length) + 4 (type) + 1 bytes; guard a corrupt count
        if kv_count * 13 > r.end or tensor_count * 24 > r.end:
            raise GGUFError(f"{path}: implausible counts (tensors {tensor_count}, kv {kv_count}) for a "
                            f"{r.end}-byte file")
        meta: dict[str, Any] = {"GGUF.version": version, "GGUF.tensor_count": tensor_count,
                                "GGUF.kv_count": kv_count}
        if r.order == ">":
            meta["GGUF.byte_order"] = "big"
        for _ in range(kv_count):
            key = r.string()
            meta[key] = r.value(r.u32(), max_array_items)
        info: dict[str, Any] = {}
        if tensors:
            info = _tensor_infos(r, tensor_count, meta.get("general.alignment", DEFAULT_ALIGNMENT))
        return meta, info
    finally:
        mm.close()
        f.close()


def _tensor_infos(r: _Reader, tensor_count: int, alignment: Any) -> dict[str, Any]:
    """Parameter count and tensor types from the tensor infos, and where the tensor data starts."""
    n_params = 0
    by_type_count: Counter[str] = Counter()
    by_type_params: Counter[str] = Counter()
    for _ in range(tensor_count):
        r.skip_string()  # name
        n_dims = r.u32()
        if n_dims > 8:
            raise GGUFError(f"{r.path}: tensor with {n_dims} dimensions at byte {r.pos}: corrupt header")
        dims = [r.u64() for _ in range(n_dims)]
        ttype = r.u32()
        r.u64()  # offset within the tensor data
        n = math.prod(dims)
        name = GGML_TYPE_NAMES.get(ttype, f"type{ttype}")
        n_params += n
        by_type_count[name] += 1
        by_type_params[name] += n
    align = alignment if isinstance(alignment, int) and alignment > 0 else DEFAULT_ALIGNMENT
    data_offset = r.pos + (align - r.pos % align) % align
    return {"parameter_count": n_params, "tensor_types": dict(by_type_count.most_common()),
            "tensor_type_params": dict(by_type_params.most_common()), "data_offset": data_offset}


def read_metadata(path: str | Path, max_array_items: int = MAX_ARRAY_ITEMS) -> dict[str, Any]:
    """The metadata key/values of a GGUF file, plus GGUF.version, GGUF.tensor_count, GGUF.kv_count.

    Arrays of more than `max_array_items` items (the tokenizer's tokens, scores, merges) come
    back as {"type": "array", "item_type": ..., "length": n}: their length only.
    Raises GGUFError for a file that is not GGUF v2/v3 or whose header is cut short.
    """
    return _parse(path, max_array_items, tensors=False)[0]


def parse_size_label(label: str | None) -> float | None:
    """Parameters in billions from a size label such as '135M', '7.6B', '8x7B' (None if unreadable): a
    GGUF's general.size_label or Ollama's details.parameter_size."""
    if not label:
        return None
    m = _SIZE_LABEL.match(label.strip())
    if not m:
        return None
    experts = int(m.group(1) or 1)
    return experts * float(m.group(2)) * _SCALE[m.group(3).upper()] / 1e9


def model_facts(path: str | Path) -> dict[str, Any]:
    """What a benchmark report and a VRAM estimate need to know about a GGUF model.

    Keys: path, file, size_bytes, gguf_version, tensor_count, architecture, name, size_label,
    parameter_count (+ parameter_count_source: 'general.parameter_count' or 'tensor shapes'),
    params_b, file_type (llama_ftype int), quantization (its name, e.g. 'Q4_K_M'; + source),
    quantization_version, tensor_types (ggml type -> tensor count), tensor_data_bytes,
    bits_per_weight, context_length, block_count, embedding_length, feed_forward_length,
    head_count, head_count_kv, key_length, value_length, head_dim, sliding_window, expert_count,
    chat_template (tokenizer.chat_template present), model_kind (instruct | base), prompt_style.
    A key whose metadata is absent is None.
    """
    path = Path(path)
    meta, tinfo = _parse(path, MAX_ARRAY_ITEMS, tensors=True)
    arch = meta.get("general.architecture")

    def a(key: str) -> Any:
        return meta.get(f"{arch}.{key}") if arch else None

    size = path.stat().st_size
    if isinstance(meta.get("general.parameter_count"), int):
        n_params, n_source = meta["general.parameter_count"], "general.parameter_count"
    else:
        n_params, n_source = tinfo["parameter_count"], "tensor shapes"
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int):
        quant = FILE_TYPE_NAMES.get(file_type, f"ftype{file_type}")
        quant_source = "general.file_type"
    else:  # optional key: the type holding most of the 2-D weights' parameters stands in
        typed = {t: n for t, n in tinfo["tensor_type_params"].items() if t != "F32"}
        quant = max(typed, key=lambda t: typed[t]) if typed else "F32"
        quant_source = "tensor types"
    head_count, head_count_kv = a("attention.head_count"), a("attention.head_count_kv")
    if head_count_kv is None and head_count is not None:
        head_count_kv = head_count  # spec: absent head_count_kv means no GQA
    key_length, value_length = a("attention.key_length"), a("attention.value_length")
    embd = a("embedding_length")
    head_dim = key_length
    if head_dim is None and isinstance(embd, int) and isinstance(head_count, int) and head_count:
        head_dim = embd // head_count  # spec: key_length defaults to n_embd / n_head
    data_bytes = size - tinfo["data_offset"]
    return {
        "path": str(path),
        "file": path.name,
        "size_bytes": size,
        "gguf_version": meta["GGUF.version"],
        "tensor_count": meta["GGUF.tensor_count"],
        "architecture": arch,
        "name": meta.get("general.name"),
        "size_label": meta.get("general.size_label"),
        "parameter_count": n_params,
        "parameter_count_source": n_source,
        "params_b": n_params / 1e9 if n_params else parse_size_label(meta.get("general.size_label")),
        "file_type": file_type,
        "quantization": quant,
        "quantization_source": quant_source,
        "quantization_version": meta.get("general.quantization_version"),
        "tensor_types": tinfo["tensor_types"],
        "tensor_data_bytes": data_bytes,
        "bits_per_weight": round(data_bytes * 8 / n_params, 3) if n_params else None,
        "context_length": a("context_length"),
        "block_count": a("block_count"),
        "embedding_length": embd,
        "feed_forward_length": a("feed_forward_length"),
        "head_count": head_count,
        "head_count_kv": head_count_kv,
        "key_length": key_length,
        "value_length": value_length,
        "head_dim": head_dim,
        "sliding_window": a("attention.sliding_window"),
        "expert_count": a("expert_count"),
        **kind_facts("tokenizer.chat_template" in meta).model_dump(),
    }
