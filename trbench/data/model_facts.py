"""What a server (or a model file) says about a model, as the manifest records it: digest, source,
size, quantization, context, architecture, and whether it is an instruction-tuned (chat) model.

Which keys are there depends on where the facts came from:
  a GGUF file (embedded engine)   the header: file, tensor counts and bytes, parameter count,
                                  quantization, and the architecture numbers flat (block_count,
                                  head_count_kv, ...); `architecture` is the architecture's name
  an Ollama server                /api/tags and /api/show: size_bytes, details, parameters,
                                  modelfile, context_length; `architecture` holds the model_info
                                  numbers (attention.head_count_kv, ...)
  a server that does not say      model, digest None, source, and the chat/base facts (mock,
                                  OpenAI-compatible servers)
A fact the source does not give is left out (see trbench.data.recorded), never written as null."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from trbench.data.recorded import Recorded

PromptStyle = Literal["chat", "completion"]
ModelKind = Literal["instruct", "base", "unknown"]


class ChatFacts(BaseModel):
    """Whether a model has a chat template, and so how it is prompted (engines.model_kind decides)."""

    chat_template: bool | None
    model_kind: ModelKind
    prompt_style: PromptStyle


class OllamaDetails(Recorded):
    """/api/show's (or /api/tags') `details` of a model."""

    parent_model: str | None = None
    format: str | None = None
    family: str | None = None
    families: list[str] | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None


class ModelFacts(Recorded):
    """One model's facts (the module doc says which keys each source gives)."""

    model: str | None = None
    source: str | None = None
    digest: str | None = None
    error: str | None = None  # an Ollama model /api/tags does not list
    chat_template: bool | None = None
    model_kind: ModelKind = "unknown"
    prompt_style: PromptStyle = "chat"
    size_bytes: int | None = None
    context_length: int | None = None
    # the architecture's name (GGUF), or its numbers by model_info key less the architecture prefix (Ollama)
    architecture: str | dict[str, Any] | None = None
    # Ollama
    details: OllamaDetails | None = None
    parameters: str | None = None
    modelfile: str | None = None
    # GGUF header (engines.gguf.model_facts says what each is)
    path: str | None = None
    file: str | None = None
    gguf_version: int | None = None
    tensor_count: int | None = None
    name: str | None = None
    size_label: str | None = None
    parameter_count: int | None = None
    parameter_count_source: str | None = None
    params_b: float | None = None
    file_type: int | None = None
    quantization: str | None = None
    quantization_source: str | None = None
    quantization_version: int | None = None
    tensor_types: dict[str, int] | None = None
    tensor_data_bytes: int | None = None
    bits_per_weight: float | None = None
    block_count: int | None = None
    embedding_length: int | None = None
    feed_forward_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | list[int] | None = None  # a list: per-layer kv heads
    key_length: int | None = None
    value_length: int | None = None
    head_dim: int | None = None
    sliding_window: int | None = None
    expert_count: int | None = None

    @property
    def from_gguf(self) -> bool:
        """Read from a GGUF file's header (its tensor bytes are known), not from a server's answer."""
        return "tensor_data_bytes" in self.model_fields_set

    def value(self, key: str) -> Any:
        """A fact by its recorded key (a declared field or one this version does not declare), None when absent."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return (self.model_extra or {}).get(key)
