"""What a wire client sends and the raw record it keeps of each request.

The raw record holds only observations (client clock readings and what the server said);
every metric is derived from it in trbench.measure.metrics, in one place.
"""

from __future__ import annotations

import re
from typing import Literal, Protocol

from pydantic import BaseModel, Field

# stall: the stream sent no byte for stall_timeout_s; timeout: the whole request took over timeout_s
ErrorKind = Literal["timeout", "stall", "connect", "http_4xx", "http_5xx", "oom", "bad_response", "cancelled"]
TokenKind = Literal["content", "reasoning"]

# Out of memory, as Ollama itself recognises it: llm/status.go outOfMemorySubstrings (ollama/ollama,
# 2026), compared lower-case as its IsOutOfMemoryMessage does. Ollama returns these as HTTP 500
# {"error"} before any stream (server/routes.go handleScheduleError), so the message decides.
_OLLAMA_OOM_SUBSTRINGS = ("out of memory", "out of device memory", "cudamalloc failed", "hipmalloc failed",
                          "failed to allocate", "allocation failed", "not enough memory", "insufficient memory",
                          "vk_error_out_of_device_memory", "erroroutofmemory")
# ...and the messages that list misses because they arrive without the OOM line before them:
_OOM_MARKERS = _OLLAMA_OOM_SUBSTRINGS + (
    "memory layout cannot be allocated",  # llm/server.go v0.12.x: no GPU layout fits (with num_gpu = N)
    "requires more system memory",  # server/sched.go through v0.9: the estimate does not fit in RAM
)
# llama.cpp's model loader, through Ollama's runner: "error loading model: unable to allocate CUDA0
# buffer" / "... backend buffer" (llm/status.go keeps only that last error line on older Ollama)
_OOM_PATTERN = re.compile(r"unable to allocate \S+ buffer")


class ChatRequest(BaseModel):
    """One generation request. With `prompt` set it is a plain-text completion (a base model without a
    chat template: OpenAI /v1/completions, Ollama /api/generate raw); else a chat of `messages`."""

    model: str
    messages: list[dict[str, str]]
    prompt: str | None = None
    temperature: float | None = None  # None: the server's default
    max_tokens: int
    num_ctx: int | None = None
    num_gpu: int | None = None
    num_batch: int | None = None  # Ollama's per-request batch size; None: the server's
    num_thread: int | None = None  # Ollama's per-request CPU threads; None: the server's
    seed: int | None = None
    cache_prompt: bool = True
    json_mode: bool = False  # ask the server for one JSON value (OpenAI response_format, Ollama format)
    # the prompt as token ids (OpenAI-compatible completions; llama.cpp counts them exactly, adding no BOS)
    prompt_ids: list[int] | None = None
    ignore_eos: bool = False  # generate max_tokens whatever the model samples (llama.cpp; Ollama has no such option)


class RawExchange(BaseModel):
    """One request as observed. Times are time.perf_counter_ns() readings of this process."""

    backend: str
    url: str
    model: str
    sent_at_unix: float
    t_send_ns: int
    t_end_ns: int
    token_times_ns: list[int] = Field(default_factory=list, description="arrival of each chunk carrying text")
    token_kinds: list[TokenKind] = Field(default_factory=list)
    text: str = ""
    reasoning_text: str = ""
    finish_reason: str | None = None
    http_status: int | None = None
    # the server's own counts and durations, None where it did not say
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    server_decode_tokens: int | None = None
    server_prefill_ms: float | None = None
    server_decode_ms: float | None = None
    server_decode_tps_reported: float | None = None  # the server's own rate (llama.cpp timings.predicted_per_second)
    server_prefill_tps_reported: float | None = None  # likewise for the prompt (llama.cpp timings.prompt_per_second)
    server_load_ms: float | None = None
    server_total_ms: float | None = None
    status: Literal["ok", "error"] = "ok"
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    # CPU the harness spent on this request, send to last byte: the Python client's thread CPU time
    # (the process's other threads are trbench's, not the harness's), an external runner's process
    # CPU time as it reports it (cpu_ns, docs/runner-contract.md); None where not measured
    client_cpu_ns: int | None = None


class WireClient(Protocol):
    backend: str

    def chat(self, request: ChatRequest) -> RawExchange: ...

    def close(self) -> None: ...


def classify_http_error(status: int, message: str) -> ErrorKind:
    if is_oom(message):
        return "oom"
    return "http_4xx" if status < 500 else "http_5xx"


def is_oom(message: str) -> bool:
    low = message.lower()
    return any(m in low for m in _OOM_MARKERS) or _OOM_PATTERN.search(low) is not None


def error_text(body: bytes | str) -> str:
    """The server's error message from a JSON body {"error": "..."} or {"error": {"message": ...}}, with
    any API key it echoes redacted (it is stored and shown)."""
    import json

    from trbench.backends.auth import redact

    text = redact(body.decode(errors="replace") if isinstance(body, bytes) else body)
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:2000]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        err = err.get("message", err)
    return str(err)[:2000]
