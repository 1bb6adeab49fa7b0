"""The embeddings workload of load mode: its spec sub-model and its texts.

The load spec holds it as `load.embeddings`:

    load:
      embeddings:
        model: smollm2:135m        # default: the spec's first model
        batch_sizes: [1, 8]        # texts per request; one step per batch size
        requests: 20               # measured requests per step (warm-up not counted)
        warmup: 2                  # requests per step before the measured ones, left out of every figure
        concurrency: 1             # requests in flight at once (closed loop)
        slo_ms: 100                # the objective: an embedding in under 100 ms
        texts: datasets/embeddings/passages_v1.yaml

What it measures is the serving path of an embeddings endpoint (texts/s, tokens/s, latency per
batch size), never the quality of the vectors.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trbench.config.suite_files import content_digest, read_suite
from trbench.config.servers import unique

DEFAULT_TEXTS = "datasets/embeddings/passages_v1.yaml"


class EmbeddingsLoad(BaseModel):
    """One embeddings workload: a step per batch size, on every instance of the spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str | None = Field(default=None, description="model to embed with; default: the spec's first model")
    batch_sizes: list[int] = Field(default=[1, 8], min_length=1, description="texts per request, one step each")
    requests: int = Field(default=20, ge=1, le=100_000, description="measured requests per step")
    warmup: int = Field(default=2, ge=0, le=1000, description="warm-up requests per step, left out of the figures")
    concurrency: int = Field(default=1, ge=1, le=1024, description="requests in flight at once (closed loop)")
    slo_ms: float = Field(default=100.0, gt=0, le=3_600_000, description="latency objective per request "
                          "(default: an embedding in under 100 ms)")
    num_ctx: int = Field(default=512, ge=64, le=131072, description="context of one text: the embedding server's "
                         "batch must hold the longest text")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="bound of one request")
    texts: str = Field(default=DEFAULT_TEXTS, description="YAML file of texts (datasets/embeddings/)")

    @field_validator("batch_sizes")
    @classmethod
    def _batch_sizes(cls, v: list[int]) -> list[int]:
        for b in v:
            if not 1 <= b <= 2048:
                raise ValueError(f"a batch size must be 1..2048 texts, got {b}")
        return unique(v)


class EmbeddingText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    text: str = Field(min_length=1)


class EmbeddingTexts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    texts: list[EmbeddingText] = Field(min_length=1)
    digest: str = ""

    def batch(self, request_index: int, batch_size: int) -> list[EmbeddingText]:
        """The texts of request number `request_index`: the next batch_size, cycling through the file."""
        start = request_index * batch_size
        return [self.texts[(start + j) % len(self.texts)] for j in range(batch_size)]


class EmbeddingTextsError(ValueError):
    pass


def load_texts(path: str | Path) -> EmbeddingTexts:
    """The texts file, with its content digest; EmbeddingTextsError in one line naming the spec field."""
    suite, raw = read_suite(Path(path), EmbeddingTexts, EmbeddingTextsError, "load.embeddings.texts",
                            f"point it at a texts file such as {DEFAULT_TEXTS}", DEFAULT_TEXTS, detail_lines=3)
    return suite.model_copy(update={"digest": content_digest(raw)})
