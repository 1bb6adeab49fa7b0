"""The `synthetic:` section of a spec: exact-length prompts and outputs, llama-bench's view.

Every point of prompt_tokens x output_tokens x depth is measured `runs` times, `requests` requests a
run, one request at a time: a prompt of exactly prompt_tokens tokens (by the server's own count) after
`depth` tokens of context already in the sequence (a shared prefix, held in the server's prompt cache),
and an output of exactly output_tokens tokens where the server can be made to ignore end-of-sequence.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from trbench.config.errors import FieldRule
from trbench.config.sections import _Strict, _each_within

MAX_TOKENS = 131_072


class SyntheticSpec(_Strict):
    """Exact-length synthetic requests, one point per prompt_tokens x output_tokens x depth."""

    prompt_tokens: list[int] = Field(min_length=1, description="prompt lengths in tokens (llama-bench's pp), "
                                     "each measured as asked by the server's own count")
    output_tokens: list[int] = Field(min_length=1, description="output lengths in tokens (llama-bench's tg); "
                                     "forced on llama.cpp (ignore_eos), capped on Ollama (early stops counted)")
    depth: list[int] = Field(default=[0], min_length=1, description="tokens of context already in the sequence "
                             "before the measured prompt (llama-bench's -d): a shared prefix, cached by the server")
    runs: int = Field(default=3, ge=1, le=100, description="runs per point: mean and stddev are over runs")
    requests: int = Field(default=3, ge=1, le=10_000, description="measured requests per point and run")
    warmup_requests: int = Field(default=1, ge=0, le=100, description="requests per model before the first point: "
                                 "stored, left out of every statistic")
    models: list[str] | None = Field(default=None, description="models to measure; default: the spec's models")

    @field_validator("prompt_tokens", "output_tokens")
    @classmethod
    def _lengths(cls, v: list[int]) -> list[int]:
        return _each_within(v, 1, MAX_TOKENS, f"lengths must be 1..{MAX_TOKENS} tokens; fix: e.g. [128, 512]")

    @field_validator("depth")
    @classmethod
    def _depth(cls, v: list[int]) -> list[int]:
        return _each_within(v, 0, MAX_TOKENS, f"depth must be 0..{MAX_TOKENS} tokens; fix: e.g. [0, 4096]")

    @model_validator(mode="after")
    def _fits(self) -> SyntheticSpec:
        longest = max(self.depth) + max(self.prompt_tokens) + max(self.output_tokens)
        if longest > MAX_TOKENS:
            raise FieldRule("depth", f"depth + prompt_tokens + output_tokens reach {longest} tokens, over "
                            f"{MAX_TOKENS}; fix: shorten the longest of them")
        return self

    def longest(self) -> int:
        """The most tokens one sequence holds: what num_ctx must fit."""
        return max(self.depth) + max(self.prompt_tokens) + max(self.output_tokens)
