"""The GGUF header reader on the two bundled models and on hand-built files.

The bundled models' expected numbers come from llama.cpp itself: the `print_info:` and
`llama_kv_cache:` lines its server logs at verbosity 4 (recorded below, and checked live by
test_facts_agree_with_llama_cpp_log, which starts an xllamacpp server and reads its log).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trbench.engines import bundled, gguf

# llama.cpp (xllamacpp 2026.10.11549) print_info for SmolLM2-135M-Instruct.Q4_1.gguf:
#   file type = Q4_1; file size = 92.10 MiB (5.74 BPW); arch = llama; n_ctx_train = 8192;
#   n_embd = 576; n_layer = 30; n_head = 9; n_head_kv = 3; n_embd_head_k = 64; n_ff = 1536;
#   model params = 134.52 M
SMOLLM2 = {
    "architecture": "llama", "quantization": "Q4_1", "file_type": 3, "context_length": 8192,
    "embedding_length": 576, "block_count": 30, "head_count": 9, "head_count_kv": 3, "head_dim": 64,
    "key_length": None, "value_length": None, "feed_forward_length": 1536, "sliding_window": None,
    "size_label": "135M",
}
# ... for gemma-3-270m-q4_k_m.gguf: file type = Q4_K - Medium; file size = 235.16 MiB (7.36 BPW);
#   arch = gemma3; n_ctx_train = 32768; n_embd = 640; n_layer = 18; n_head = 4; n_head_kv = 1;
#   n_embd_head_k = 256 (not 640/4: key_length is explicit); n_swa = 512; n_ff = 2048;
#   model params = 268.10 M
GEMMA3 = {
    "architecture": "gemma3", "quantization": "Q4_K_M", "file_type": 15, "context_length": 32768,
    "embedding_length": 640, "block_count": 18, "head_count": 4, "head_count_kv": 1, "head_dim": 256,
    "key_length": 256, "value_length": 256, "feed_forward_length": 2048, "sliding_window": 512,
    "size_label": "270M",
}
LLAMA_CPP = {  # model params (M), BPW, file size (MiB)
    "smollm2:135m": (134.52, 5.74, 92.10),
    "gemma3:270m": (268.10, 7.36, 235.16),
}


@pytest.fixture(scope="module", params=["smollm2:135m", "gemma3:270m"])
def bundled_model(request) -> tuple[str, Path, dict]:
    try:
        path = bundled.resolve(request.param)
    except bundled.ModelNotFound as err:
        pytest.skip(str(err))
    return request.param, path, {"smollm2:135m": SMOLLM2, "gemma3:270m": GEMMA3}[request.param]


def test_bundled_model_facts(bundled_model):
    name, path, expected = bundled_model
    facts = gguf.model_facts(path)
    for key, value in expected.items():
        assert facts[key] == value, key
    params_m, bpw, size_mib = LLAMA_CPP[name]
    assert facts["parameter_count"] / 1e6 == pytest.approx(params_m, abs=0.005)
    assert facts["parameter_count_source"] == "tensor shapes"  # neither file has general.parameter_count
    assert facts["bits_per_weight"] == pytest.approx(bpw, abs=0.005)
    assert facts["tensor_data_bytes"] / 2**20 == pytest.approx(size_mib, abs=0.005)
    assert facts["quantization_source"] == "general.file_type"
    assert facts["gguf_version"] == 3 and facts["size_bytes"] == path.stat().st_size
    assert sum(facts["tensor_types"].values()) == facts["tensor_count"]


def test_bundled_metadata_summarises_the_vocabulary(bundled_model):
    name, path, _ = bundled_model
    meta = gguf.read_metadata(path)
    n_vocab = {"smollm2:135m": 49152, "gemma3:270m": 262144}[name]  # print_info: n_vocab
    assert meta["tokenizer.ggml.tokens"] == {"type": "array", "item_type": "string", "length": n_vocab}
    assert meta["tokenizer.ggml.token_type"] == {"type": "array", "item_type": "int32", "length": n_vocab}
    assert meta["GGUF.version"] == 3
    assert meta["GGUF.kv_count"] == len([k for k in meta if not k.startswith("GGUF.")])
    if name == "smollm2:135m":
        assert meta["tokenizer.ggml.merges"]["length"] == 48900  # print_info: n_merges
        assert meta["general.languages"] == ["en"]  # a small array is kept
        assert "<|im_start|>" in meta["tokenizer.chat_template"]
        assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)  # float32
        assert meta["tokenizer.ggml.add_bos_token"] is False  # bool
    else:
        assert meta["general.tags"] == ["gemma3", "gemma", "google", "text-generation"]
        assert meta["tokenizer.ggml.scores"]["item_type"] == "float32"


def test_header_only_is_fast(bundled_model):
    _, path, _ = bundled_model
    gguf.model_facts(path)  # page cache warm
    t0 = time.perf_counter()
    gguf.model_facts(path)
    assert time.perf_counter() - t0 < 1.0  # measured here: 16 ms (SmolLM2), 25 ms (Gemma 3)


_LOG_VALUE = re.compile(r"print_info: (\w[\w ]*?)\s+= (.+?)\s*$")
_SERVER = """
import os, sys, time, xllamacpp as xlc
p = xlc.CommonParams()
p.model.path = sys.argv[1]; p.n_ctx = int(sys.argv[2]); p.n_gpu_layers = 0; p.n_parallel = 1
p.cpuparams.n_threads = 1; p.cpuparams_batch.n_threads = 1
p.hostnames = ["127.0.0.1"]; p.port = int(sys.argv[3]); p.verbosity = 4
server = xlc.Server(p)  # returns once the model is loaded and the KV cache allocated
os._exit(0)
"""


def llama_cpp_log(path: Path, num_ctx: int, port: int) -> str:
    """What llama.cpp logs while loading the model at verbosity 4 (print_info, llama_kv_cache)."""
    done = subprocess.run([sys.executable, "-c", _SERVER, str(path), str(num_ctx), str(port)],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return done.stdout + done.stderr


def test_facts_agree_with_llama_cpp_log(bundled_model, free_ports):
    name, path, expected = bundled_model
    log = llama_cpp_log(path, 1024, free_ports(1)[0])
    info = {m.group(1).strip(): m.group(2) for line in log.splitlines() if (m := _LOG_VALUE.search(line))}
    assert info, log[-2000:]
    facts = gguf.model_facts(path)
    assert info["arch"] == facts["architecture"]
    assert int(info["n_layer"]) == facts["block_count"]
    assert int(info["n_head"]) == facts["head_count"]
    assert int(info["n_head_kv"]) == facts["head_count_kv"]
    assert int(info["n_embd"]) == facts["embedding_length"]
    assert int(info["n_embd_head_k"]) == facts["head_dim"]
    assert int(info["n_ctx_train"]) == facts["context_length"]
    assert int(info["n_vocab"]) == gguf.read_metadata(path)["tokenizer.ggml.tokens"]["length"]
    short = {"Q4_1": "Q4_1", "Q4_K - Medium": "Q4_K_M"}
    assert short[info["file type"]] == facts["quantization"]
    assert float(info["model params"].split()[0]) == pytest.approx(facts["parameter_count"] / 1e6, abs=0.005)


# ------------------------------------------------------------------ hand-built files

def _s(b: str, order: str = "<") -> bytes:
    raw = b.encode()
    return struct.pack(order + "Q", len(raw)) + raw


def _value(vtype: int, v, order: str) -> bytes:
    fmt = gguf._SCALAR_FORMATS.get(vtype)
    if fmt:
        return struct.pack(order + fmt, v)
    if vtype == gguf.T_STRING:
        return _s(v, order)
    itype, items = v
    return struct.pack(order + "IQ", itype, len(items)) + b"".join(_value(itype, x, order) for x in items)


def write_gguf(path: Path, kvs: list[tuple[str, int, object]], tensors=(), version: int = 3, order: str = "<",
               magic: bytes = b"GGUF", data: bytes = b"") -> Path:
    out = magic + struct.pack(order + "IQQ", version, len(tensors), len(kvs))
    for key, vtype, v in kvs:
        out += _s(key, order) + struct.pack(order + "I", vtype) + _value(vtype, v, order)
    for name, dims, ttype in tensors:
        out += _s(name, order) + struct.pack(order + "I", len(dims)) + b"".join(struct.pack(order + "Q", d) for d in dims)
        out += struct.pack(order + "IQ", ttype, 0)
    out += b"\0" * ((32 - len(out) % 32) % 32) + data
    path.write_bytes(out)
    return path


ALL_TYPES = [
    ("t.u8", gguf.T_UINT8, 255), ("t.i8", gguf.T_INT8, -128), ("t.u16", gguf.T_UINT16, 65535),
    ("t.i16", gguf.T_INT16, -32768), ("t.u32", gguf.T_UINT32, 2**32 - 1), ("t.i32", gguf.T_INT32, -(2**31)),
    ("t.f32", gguf.T_FLOAT32, 0.5), ("t.bool", gguf.T_BOOL, 1), ("t.str", gguf.T_STRING, "héllo"),
    ("t.u64", gguf.T_UINT64, 2**64 - 1), ("t.i64", gguf.T_INT64, -(2**63)), ("t.f64", gguf.T_FLOAT64, 1e-300),
    ("t.arr", gguf.T_ARRAY, (gguf.T_UINT32, [1, 2, 3])),
    ("t.nested", gguf.T_ARRAY, (gguf.T_ARRAY, [(gguf.T_STRING, ["a", "b"]), (gguf.T_INT8, [-1])])),
    ("t.big_nested", gguf.T_ARRAY, (gguf.T_ARRAY, [(gguf.T_STRING, ["x"])] * 100)),
    ("t.big_str", gguf.T_ARRAY, (gguf.T_STRING, [f"tok{i}" for i in range(1000)])),
    ("t.big_f32", gguf.T_ARRAY, (gguf.T_FLOAT32, [0.0] * 1000)),
    ("t.after", gguf.T_STRING, "still read"),
]


@pytest.mark.parametrize("version, order", [(3, "<"), (2, "<"), (3, ">")])
def test_every_value_type(tmp_path, version, order):
    meta = gguf.read_metadata(write_gguf(tmp_path / "m.gguf", ALL_TYPES, version=version, order=order))
    assert meta["GGUF.version"] == version
    assert meta.get("GGUF.byte_order", "little") == ("big" if order == ">" else "little")
    assert meta["t.u8"] == 255 and meta["t.i8"] == -128 and meta["t.u16"] == 65535 and meta["t.i16"] == -32768
    assert meta["t.u32"] == 2**32 - 1 and meta["t.i32"] == -(2**31)
    assert meta["t.u64"] == 2**64 - 1 and meta["t.i64"] == -(2**63)
    assert meta["t.f32"] == 0.5 and meta["t.f64"] == 1e-300
    assert meta["t.bool"] is True and meta["t.str"] == "héllo"
    assert meta["t.arr"] == [1, 2, 3]
    assert meta["t.nested"] == [["a", "b"], [-1]]
    assert meta["t.big_nested"] == {"type": "array", "item_type": "array", "length": 100}
    assert meta["t.big_str"] == {"type": "array", "item_type": "string", "length": 1000}
    assert meta["t.big_f32"] == {"type": "array", "item_type": "float32", "length": 1000}
    assert meta["t.after"] == "still read"  # the skipped arrays were skipped by exactly their size
    assert gguf.read_metadata(tmp_path / "m.gguf", max_array_items=2000)["t.big_str"][999] == "tok999"


def test_facts_without_file_type_or_with_parameter_count(tmp_path):
    kvs = [("general.architecture", gguf.T_STRING, "qwen2"), ("qwen2.block_count", gguf.T_UINT32, 2),
           ("qwen2.embedding_length", gguf.T_UINT32, 64), ("qwen2.attention.head_count", gguf.T_UINT32, 4)]
    tensors = [("token_embd.weight", [64, 100], 12), ("blk.0.attn_q.weight", [64, 64], 12),
               ("blk.0.attn_v.weight", [64, 64], 14), ("output_norm.weight", [64], 0)]
    facts = gguf.model_facts(write_gguf(tmp_path / "a.gguf", kvs, tensors, data=b"\0" * 4000))
    assert facts["quantization"] == "Q4_K" and facts["quantization_source"] == "tensor types"
    assert facts["parameter_count"] == 64 * 100 + 2 * 64 * 64 + 64
    assert facts["tensor_types"] == {"Q4_K": 2, "Q6_K": 1, "F32": 1}
    assert facts["tensor_data_bytes"] == 4000
    assert facts["head_count_kv"] == 4  # absent: no GQA
    assert facts["head_dim"] == 16  # embedding_length / head_count
    kvs += [("general.parameter_count", gguf.T_UINT64, 7_615_616_512), ("general.file_type", gguf.T_UINT32, 7)]
    facts = gguf.model_facts(write_gguf(tmp_path / "b.gguf", kvs, tensors))
    assert facts["parameter_count"] == 7_615_616_512 and facts["parameter_count_source"] == "general.parameter_count"
    assert facts["params_b"] == pytest.approx(7.615616512) and facts["quantization"] == "Q8_0"


@pytest.mark.parametrize("ftype, name", [(0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (7, "Q8_0"), (8, "Q5_0"),
                                         (10, "Q2_K"), (12, "Q3_K_M"), (15, "Q4_K_M"), (17, "Q5_K_M"), (18, "Q6_K"),
                                         (30, "IQ4_XS"), (32, "BF16"), (38, "MXFP4_MOE"), (999, "ftype999")])
def test_file_type_names_follow_llama_ftype(ftype, name):
    assert gguf.FILE_TYPE_NAMES.get(ftype, f"ftype{ftype}") == name


def test_size_labels():
    assert gguf.parse_size_label("135M") == pytest.approx(0.135)
    assert gguf.parse_size_label("7.6B") == pytest.approx(7.6)
    assert gguf.parse_size_label("8x7B") == pytest.approx(56)
    assert gguf.parse_size_label("3.8B-ContextLength4k") == pytest.approx(3.8)
    assert gguf.parse_size_label(None) is None and gguf.parse_size_label("big") is None


@pytest.mark.parametrize("case", ["magic", "version1", "truncated", "empty", "bad_type", "huge_count"])
def test_broken_files_raise_gguf_error(tmp_path, case):
    p = tmp_path / "bad.gguf"
    if case == "magic":
        write_gguf(p, ALL_TYPES[:2], magic=b"GGML")
    elif case == "version1":
        write_gguf(p, ALL_TYPES[:2], version=1)
    elif case == "truncated":
        p.write_bytes(write_gguf(p, ALL_TYPES).read_bytes()[:200])
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "bad_type":
        p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _s("k") + struct.pack("<I", 77) + b"\0" * 16)
    else:
        p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2**40) + b"\0" * 64)
    with pytest.raises(gguf.GGUFError, match=str(p.name)):
        gguf.model_facts(p)
