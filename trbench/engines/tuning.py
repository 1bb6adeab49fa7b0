"""How a cell's server settings (flash attention, KV cache type, batch sizes, threads, slots) reach
each server, in one place: llama.cpp's parameters, Ollama's server environment and request options.

A setting the cell leaves out (None) is not sent: the server keeps its own default.

The KV cache type applies to K and V, except where the server cannot quantize V:
  llama.cpp  a quantized V cache needs flash attention; with flash attention off only K is
             quantized (V stays f16), so a kv_cache_type x flash_attention grid runs every cell
  Ollama     applies OLLAMA_KV_CACHE_TYPE only with flash attention on; otherwise K and V are f16
             (its server logs that it ignores the setting)
"""

from __future__ import annotations

from trbench.data.cells import Cell

F16 = "f16"
# the settings Ollama takes when its server starts; the others go with each request
OLLAMA_SERVER_SETTINGS = ("flash_attention", "kv_cache_type", "slots")


def kv_types(cell: Cell, provider: str) -> tuple[str, str]:
    """(K, V) cache element types the server allocates for this cell."""
    kv = cell.kv_cache_type or F16
    if provider.startswith("ollama"):
        return (kv, kv) if cell.flash_attention else (F16, F16)
    return (kv, F16) if cell.flash_attention is False else (kv, kv)


def llamacpp_args(cell: Cell) -> list[str]:
    """trbench.engines.llamacpp_server's arguments for the cell's settings (threads and slots, which the
    instance always gives, are its own)."""
    args: list[str] = []
    if cell.flash_attention is not None:
        args += ["--flash-attn", "on" if cell.flash_attention else "off"]
    if cell.kv_cache_type is not None:
        k, v = kv_types(cell, "embedded")
        args += ["--cache-type-k", k, "--cache-type-v", v]
    if cell.batch_size is not None:
        args += ["--batch", str(cell.batch_size)]
    if cell.ubatch_size is not None:
        args += ["--ubatch", str(cell.ubatch_size)]
    return args


def ollama_environment(cell: Cell) -> dict[str, str]:
    """The server environment an Ollama instance needs for this cell (OLLAMA_FLASH_ATTENTION,
    OLLAMA_KV_CACHE_TYPE, OLLAMA_NUM_PARALLEL); a change means a restart."""
    env: dict[str, str] = {}
    if cell.flash_attention is not None:
        env["OLLAMA_FLASH_ATTENTION"] = "1" if cell.flash_attention else "0"
    if cell.kv_cache_type is not None:
        env["OLLAMA_KV_CACHE_TYPE"] = cell.kv_cache_type
    if cell.slots is not None:
        env["OLLAMA_NUM_PARALLEL"] = str(cell.slots)
    return env


def ollama_options(cell: Cell) -> dict[str, int]:
    """The request options for this cell's per-request settings (num_batch, num_thread)."""
    opts: dict[str, int] = {}
    if cell.batch_size is not None:
        opts["num_batch"] = cell.batch_size
    if cell.threads is not None:
        opts["num_thread"] = cell.threads
    return opts
