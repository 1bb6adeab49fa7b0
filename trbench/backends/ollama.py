"""Ollama's native streaming chat (/api/chat) and raw generation (/api/generate, raw: true), NDJSON; durations
in its final chunk are nanoseconds."""

from __future__ import annotations

from trbench.backends.base import ChatRequest, RawExchange
from trbench.backends.http import HttpClient
from trbench.backends.streaming import StreamError, stamp, stream_exchange

_NS_PER_MS = 1e6
JSON_MODE = {"format": "json"}  # /api/chat and /api/generate alike


class OllamaClient(HttpClient):
    backend = "ollama"

    @staticmethod
    def body(req: ChatRequest) -> dict:
        if req.prompt_ids is not None:
            raise ValueError("Ollama takes a prompt as text only: it has no token-id prompt; send prompt text")
        options: dict = {"num_predict": req.max_tokens}
        if req.temperature is not None:
            options["temperature"] = req.temperature
        if req.num_ctx is not None:
            options["num_ctx"] = req.num_ctx
        if req.num_gpu is not None:
            options["num_gpu"] = req.num_gpu
        if req.num_batch is not None:
            options["num_batch"] = req.num_batch
        if req.num_thread is not None:
            options["num_thread"] = req.num_thread
        if req.seed is not None:
            options["seed"] = req.seed
        fmt = JSON_MODE if req.json_mode else {}
        if req.prompt is not None:  # raw: Ollama applies no template to the text
            return {"model": req.model, "prompt": req.prompt, "raw": True, "stream": True, "options": options, **fmt}
        return {"model": req.model, "messages": req.messages, "stream": True, "options": options, **fmt}

    @staticmethod
    def path(req: ChatRequest) -> str:
        return "/api/generate" if req.prompt is not None else "/api/chat"

    def chat(self, req: ChatRequest) -> RawExchange:
        return stream_exchange(self._http, self.backend, f"{self.base_url}{self.path(req)}", req.model, self.body(req),
                               read_ndjson_chunk, timeout_s=self.timeout_s, stall_timeout_s=self.stall_timeout_s)


def read_ndjson_chunk(data: dict, t_ns: int, ex: RawExchange) -> bool:
    if "error" in data:
        raise StreamError(str(data["error"]))
    message = data.get("message") or {}  # /api/chat; /api/generate carries response and thinking at the top
    stamp(ex, t_ns, message.get("content", data.get("response")), message.get("thinking", data.get("thinking")))
    if not data.get("done"):
        return False
    ex.finish_reason = data.get("done_reason")
    ex.prompt_tokens = data.get("prompt_eval_count")  # the whole prompt, its cached part included
    # newer Ollama only (ollama/ollama PR #17943); older ones do not say, and the state stays unknown
    ex.cached_tokens = data.get("prompt_eval_cached_count")
    ex.output_tokens = data.get("eval_count")
    ex.server_decode_tokens = data.get("eval_count")
    ex.server_prefill_ms = _ms(data.get("prompt_eval_duration"))
    ex.server_decode_ms = _ms(data.get("eval_duration"))
    ex.server_load_ms = _ms(data.get("load_duration"))
    ex.server_total_ms = _ms(data.get("total_duration"))
    return True


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / _NS_PER_MS
