"""OpenAI-compatible streaming chat (/v1/chat/completions) and completion (/v1/completions), SSE, with
llama.cpp's timings."""

from __future__ import annotations

from trbench.backends.base import ChatRequest, RawExchange
from trbench.backends.http import HttpClient
from trbench.backends.streaming import StreamError, stamp, stream_exchange


SSE_PREFIX = "data:"
# what asks an OpenAI-compatible server (llama.cpp included: a JSON grammar) for one JSON object
JSON_MODE = {"response_format": {"type": "json_object"}}
# llama.cpp's /completion(s) reads a JSON Schema into its grammar (tools/server, params_from_json_cmpl)
COMPLETION_JSON_MODE = {"json_schema": {"type": "object"}}


def _completion(req: ChatRequest) -> bool:
    """A plain-text or token-id prompt goes to /v1/completions, messages to /v1/chat/completions."""
    return req.prompt is not None or req.prompt_ids is not None


class OpenAIClient(HttpClient):
    backend = "openai"

    @staticmethod
    def body(req: ChatRequest) -> dict:
        body: dict = {
            "model": req.model,
            **({"prompt": req.prompt_ids if req.prompt_ids is not None else req.prompt} if _completion(req)
               else {"messages": req.messages}),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": req.max_tokens,
        }
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.seed is not None:
            body["seed"] = req.seed
        if req.ignore_eos:
            body["ignore_eos"] = True  # llama.cpp extension: the output is max_tokens long
        if not req.cache_prompt:
            body["cache_prompt"] = False  # llama.cpp extension; reuse of the KV cache off
        if req.json_mode:
            body.update({k: dict(v) for k, v in JSON_MODE.items()})  # a copy: the caller may change it
            if _completion(req):  # /v1/completions has no response_format: llama.cpp's own field
                body.update({k: dict(v) for k, v in COMPLETION_JSON_MODE.items()})
        return body

    @staticmethod
    def path(req: ChatRequest) -> str:
        return "/v1/completions" if _completion(req) else "/v1/chat/completions"

    def chat(self, req: ChatRequest) -> RawExchange:
        return stream_exchange(
            self._http, self.backend, f"{self.base_url}{self.path(req)}", req.model,
            self.body(req), read_sse_chunk, strip_prefix=SSE_PREFIX, timeout_s=self.timeout_s,
            stall_timeout_s=self.stall_timeout_s,
        )


def read_sse_chunk(data: dict, t_ns: int, ex: RawExchange) -> bool:
    if "error" in data:
        err = data["error"]
        raise StreamError(str(err.get("message", err) if isinstance(err, dict) else err))
    for choice in data.get("choices") or []:
        delta = choice.get("delta") or {}
        content = delta.get("content") if "delta" in choice else choice.get("text")  # chat / completion
        stamp(ex, t_ns, content, delta.get("reasoning_content") or delta.get("reasoning"))
        if choice.get("finish_reason"):
            ex.finish_reason = choice["finish_reason"]
    usage = data.get("usage")
    if usage:
        ex.prompt_tokens = usage.get("prompt_tokens")
        ex.output_tokens = usage.get("completion_tokens")
        details = usage.get("prompt_tokens_details") or {}
        if details.get("cached_tokens") is not None:
            ex.cached_tokens = details["cached_tokens"]
    timings = data.get("timings")
    if timings:  # llama.cpp server: its own view of prefill and decode
        ex.cached_tokens = timings.get("cache_n", ex.cached_tokens)
        ex.server_prefill_ms = timings.get("prompt_ms")
        ex.server_decode_ms = timings.get("predicted_ms")
        ex.server_decode_tokens = timings.get("predicted_n")
        ex.server_decode_tps_reported = timings.get("predicted_per_second")
        ex.server_prefill_tps_reported = timings.get("prompt_per_second")
        if ex.server_prefill_ms is not None and ex.server_decode_ms is not None:
            ex.server_total_ms = ex.server_prefill_ms + ex.server_decode_ms
    return False
