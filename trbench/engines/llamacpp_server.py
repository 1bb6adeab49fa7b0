"""One llama.cpp HTTP server (xllamacpp) as its own OS process.

Run as `python -m trbench.engines.llamacpp_server ...` by EmbeddedInstance. It exits when told
(SIGTERM/SIGINT) and also when its parent disappears, so a kill -9 of the flow process never
leaves a server behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llamacpp_server")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ctx", type=int, required=True)
    p.add_argument("--ngl", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--slots", type=int, default=1, help="parallel sequences (n_parallel); --ctx is per slot")
    p.add_argument("--flash-attn", choices=["on", "off"], default=None, help="default: llama.cpp's auto")
    p.add_argument("--cache-type-k", choices=["f16", "q8_0", "q4_0"], default=None, help="default: f16")
    p.add_argument("--cache-type-v", choices=["f16", "q8_0", "q4_0"], default=None, help="default: f16")
    p.add_argument("--batch", type=int, default=None, help="logical batch (n_batch); default: llama.cpp's")
    p.add_argument("--ubatch", type=int, default=None, help="physical micro-batch (n_ubatch); default: llama.cpp's")
    p.add_argument("--embedding", action="store_true", help="serve /v1/embeddings (mean pooling), not generation")
    p.add_argument("--parent-pid", type=int, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}  # a set of names: a plain string would be read as its characters
    # --ctx is the context of one request: llama.cpp splits n_ctx across the slots (kv_unified off:
    # each sequence gets n_ctx / n_parallel), so the server gets ctx x slots and every slot holds a
    # whole num_ctx, as Ollama allocates num_ctx x OLLAMA_NUM_PARALLEL. Slots 1 (the default): a
    # request is timed alone, as one agent on one Ollama instance.
    params.n_ctx = args.ctx * args.slots
    params.n_parallel = args.slots
    params.kv_unified = False
    params.n_gpu_layers = args.ngl
    if args.embedding:
        params.embedding = True
        params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        # a pooled embedding needs the whole input in one micro-batch: let it be one slot's context
        params.n_batch = params.n_ubatch = args.ctx
    _tune(xlc, params, args)
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [args.host]
    params.port = args.port
    params.endpoint_metrics = True
    # info level: llama.cpp then logs its buffer sizes ("llama_kv_cache: size = ... K (f16): ... V (f16): ..."),
    # which the KV estimate is checked against (embedded.kv_cache_log)
    params.verbosity = 4
    server = xlc.Server(params)  # noqa: F841 - the HTTP server lives as long as this object
    print(f"trbench-llamacpp ready {args.host}:{args.port}", flush=True)
    while True:
        time.sleep(0.5)
        if os.getppid() != args.parent_pid:
            os._exit(0)


_GGML_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0", "q4_0": "GGML_TYPE_Q4_0"}


def _tune(xlc, params, args: argparse.Namespace) -> None:
    """The grid's server settings; one left out keeps llama.cpp's default."""
    if args.flash_attn is not None:
        fa = xlc.llama_flash_attn_type
        params.flash_attn_type = fa.LLAMA_FLASH_ATTN_TYPE_ENABLED if args.flash_attn == "on" else fa.LLAMA_FLASH_ATTN_TYPE_DISABLED
    if args.cache_type_k is not None:
        params.cache_type_k = getattr(xlc.ggml_type, _GGML_TYPES[args.cache_type_k])
    if args.cache_type_v is not None:
        params.cache_type_v = getattr(xlc.ggml_type, _GGML_TYPES[args.cache_type_v])
    if args.batch is not None:
        params.n_batch = args.batch
    if args.ubatch is not None:
        params.n_ubatch = args.ubatch


if __name__ == "__main__":
    main()
